"""The scheduler's and the pipeline's call into the forecast ledger, after issues are written.

:func:`update_ledger` records and scores the issues of some series
(:func:`pipeline.ledger.hooks.record_and_score`) and never raises: the stage that called it has
done its work, so any ledger problem is logged and reported as ``False`` (kept in the run
history as ``ledger_recorded`` and counted by ``ledger_update_failures_total``); the next call
catches up on what was missed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipeline.config import Settings
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)


def update_ledger(settings: Settings, series: Sequence[SeriesId]) -> bool:
    """Record and score the issues of ``series``; ``False`` (logged) when that failed."""
    from pipeline.ledger.hooks import record_and_score

    if not series:
        return True
    try:
        return record_and_score(settings, series)
    except Exception:  # noqa: BLE001 - the ledger must never fail the stage that called it
        logger.exception("forecast ledger not updated (the next run catches up)")
        return False
