"""The call the stages make after they write issues: record them and score what matured.

:func:`record_and_score` never raises for a ledger problem: the stage that called it has done
its work (the issues are safe in the artifact store), so a database outage is logged and
reported as ``False``, and the next call catches up on everything that was missed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from pipeline.ledger.db import LedgerError, open_ledger
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)


def record_and_score(settings: Settings, series: Sequence[SeriesId] | None = None) -> bool:
    """Sync the store's issues of ``series`` (default: every configured series) into the
    ledger, then score them; ``False`` when the ledger could not be used (logged as an error)."""
    from pipeline.ledger.record import sync
    from pipeline.ledger.score import score

    chosen = list(series) if series is not None else settings.series()
    try:
        ledger = open_ledger(settings)
        try:
            sync(ledger, ArtifactStore(settings.models_dir), chosen)
            score(ledger, settings, chosen)
        finally:
            ledger.close()
    except LedgerError as exc:
        logger.error("forecast ledger not updated (the next run catches up): %s", exc)
        return False
    return True
