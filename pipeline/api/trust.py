"""The ``trust`` block of every v1 predict answer, from an in-process cache of the ledger.

A request never queries the ledger. :class:`TrustCache` keeps, per (series, model), the JSON of
its trust summary (:func:`pipeline.ledger.read.trust_summaries`: live 95% coverage and its count
over ``TRUST_WINDOW``, WIS ratio to naive, status) serialised once by
:class:`~pipeline.api.trust_schemas.TrustInfo` with the two ages left open; a request fills in
the issue age and the data age from the served model's timestamps and the answer's time, and
the bytes are spliced into the precomputed answer (:meth:`ServedModel.predict_json`).

The cache is refreshed in the background: when the app starts (start-up waits for the first
read at most :data:`STARTUP_WAIT_SECONDS`), every ``TRUST_REFRESH_SECONDS`` and after every
registry swap (new issues usually come with new scores). Each refresh opens the ledger, reads
the aggregates and closes it again, so a replaced or removed SQLite file is seen at once; a
missing SQLite file is never created here. When the ledger cannot be read, every block says
``unknown``, the refresh is counted in ``ledger_read_failures_total``, the outage is logged once
(and its end once), and the next refresh tries again; predictions keep being served.

Answers of a fallback path the ledger never recorded (a timeframe derived from a finer one, the
naive random walk from processed data) say ``unknown``; other fallbacks (the champion, a
previous version) carry the trust of the model that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import CollectorRegistry, Counter

from pipeline.api.trust_schemas import TrustInfo
from pipeline.api.wire import JsonTemplate
from pipeline.config import Settings
from pipeline.ledger.db import LedgerError, ledger_url, open_ledger
from pipeline.ledger.read import TrustSummary, trust_status, trust_summaries

if TYPE_CHECKING:
    from pipeline.api.fallback_schemas import FallbackInfo
    from pipeline.api.served import ServedModel

logger = logging.getLogger(__name__)

#: How long the app's start-up waits for the first read of the ledger (then it goes on reading
#: in the background, and the answers say ``unknown`` until it is done).
STARTUP_WAIT_SECONDS = 5.0
#: The open fields of a block, filled per request.
_AGES = ("issue_age_seconds", "data_age_seconds")
#: Fallback strategies whose path the ledger never recorded.
_UNRECORDED = {
    "derived_timeframe": "a path derived from a finer timeframe answered; the ledger scores "
    "only the paths it recorded",
    "naive_random_walk": "a naive random walk from the processed data answered; the ledger "
    "scores only the paths it recorded",
}


def _template(window: str, status: str, reason: str, **figures: Any) -> JsonTemplate:
    return JsonTemplate(TrustInfo, _AGES, status=status, reason=reason, window=window, **figures)


def _of_summary(summary: TrustSummary) -> JsonTemplate:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return _template(
        summary.window,
        summary.status,
        summary.reason,
        coverage_95=rounded(summary.coverage_95),
        matured_points=summary.n,
        wis_ratio=rounded(summary.wis_ratio),
    )


def read_summaries(settings: Settings) -> list[TrustSummary]:
    """Every trust summary of the configured ledger (opened for this read, then closed).

    Raises :class:`LedgerError` when it cannot be read, also for a missing SQLite file (which
    opening would create).
    """
    url = ledger_url(settings)
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            raise LedgerError(
                f"ledger {path}: no such file (the pipeline creates it when it first records "
                "forecasts: `python -m pipeline ledger sync`)"
            )
    ledger = open_ledger(settings)
    try:
        return trust_summaries(ledger, settings)
    finally:
        ledger.close()


class TrustCache:
    """The trust blocks of one API worker; see the module docstring."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter(
            "ledger_read_failures",
            "Background reads of the forecast ledger's trust summaries that failed (the "
            "predict answers then say trust status unknown)",
            registry=registry,
        )
        self.enabled = True
        self.interval = 60.0
        self.window = "30d"
        self._settings: Settings | None = None
        self._templates: dict[tuple[str, str], JsonTemplate] = {}
        self._default = _template(self.window, "unknown", "the ledger has not been read yet")
        self._fallbacks: dict[str, JsonTemplate] = {}
        self._outage: str | None = None
        self._lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def configure(self, settings: Settings) -> None:
        self._settings = settings
        self.enabled = settings.trust_in_predictions
        self.interval = settings.trust_refresh_seconds
        self.window = settings.trust_window
        self._templates = {}
        self._default = _template(self.window, "unknown", "the ledger has not been read yet")
        self._fallbacks = {
            strategy: _template(self.window, "unknown", reason)
            for strategy, reason in _UNRECORDED.items()
        }

    # -- per request -----------------------------------------------------------------------------
    def block(
        self, served: ServedModel, now: datetime, fallback: FallbackInfo | None = None
    ) -> bytes:
        """The JSON of the answer's ``trust`` field (``null`` when TRUST_IN_PREDICTIONS is off)."""
        if not self.enabled:
            return b"null"
        template = None
        if fallback is not None and fallback.strategy is not None:
            template = self._fallbacks.get(fallback.strategy)
        if template is None:
            template = self._templates.get((served.series.name, served.model), self._default)
        at = int(now.timestamp())
        issue_age = max(0, at - int(served.issued_at.timestamp()))
        data_age = max(0, at - int(served.origin.timestamp()))
        return template.fill(b"%d" % issue_age, b"%d" % data_age)

    # -- refresh ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read every summary into the cache (blocking: the app runs it in a worker thread).

        Returns False when the ledger could not be read (then every block says ``unknown``).
        """
        settings = self._settings
        if settings is None or not self.enabled:
            return False
        with self._lock:
            try:
                summaries = read_summaries(settings)
            except LedgerError as exc:
                self._failed(exc)
                return False
            self._templates = {(s.series, s.model): _of_summary(s) for s in summaries}
            self._default = _template(self.window, *trust_status(None, 0, None, settings))
            if self._outage is not None:
                logger.info("the forecast ledger is readable again: trust blocks are live")
                self._outage = None
            return True

    def _failed(self, exc: LedgerError) -> None:
        self.failures.inc()
        self._templates = {}
        retry = f"retried every {self.interval:g} s" if self.interval else "retried on reload"
        self._default = _template(
            self.window, "unknown", f"the forecast ledger cannot be read now ({retry})"
        )
        if self._outage is None:
            logger.warning(
                "cannot read the forecast ledger for the trust blocks: %s; predictions are "
                "served with trust status unknown until it can be read (%s)",
                exc,
                retry,
            )
        self._outage = str(exc)

    # -- background ------------------------------------------------------------------------------
    def registry_changed(self, _old: object, _new: object) -> None:
        """A reload listener: read the ledger again soon (new issues bring new scores)."""
        if self._wake is not None:
            self._wake.set()

    async def start(self, wait: float = STARTUP_WAIT_SECONDS) -> None:
        """Start the background refreshes; wait for the first at most ``wait`` seconds."""
        if not self.enabled or self._settings is None:
            return
        self._wake = asyncio.Event()
        first = asyncio.Event()
        self._task = asyncio.create_task(self._run(first))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), wait)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, first: asyncio.Event) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            wake.clear()
            try:
                await anyio.to_thread.run_sync(self.refresh, abandon_on_cancel=True)
            except Exception:  # noqa: BLE001 - the refreshes must survive anything
                logger.exception("refreshing the trust blocks failed; will retry")
            first.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.interval or None)
