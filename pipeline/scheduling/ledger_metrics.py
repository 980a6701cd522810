"""The forecast ledger's metric families, collected with the scheduler's
(:mod:`pipeline.scheduling.metrics`): live accuracy per series and model over
``TRUST_WINDOW`` (default ``30d``), read from the ledger's precomputed aggregates
(:func:`pipeline.ledger.read.leaderboard`) each time they are collected, so they follow every
scoring.

=============================================== ======= ======================================
``ledger_update_failures_total``                counter cycles and refreshes whose issues the
                                                        ledger could not record or score
``ledger_coverage_95{series,model}``            gauge   live share of matured actuals inside
                                                        the 95% band
``ledger_wis_ratio{series,model}``              gauge   live WIS over naive's on the same
                                                        points (below 1 is better)
``ledger_matured_points{series,model}``         gauge   matured (scored) points in the window
``ledger_coverage_95_low{series,model}``        gauge   1 when the 95% coverage is significantly
                                                        below nominal: at least
                                                        ``TRUST_MIN_POINTS`` points and the upper
                                                        end of its Wilson interval under 95%
``ledger_champion{series,model}``               gauge   1 for the model serving the newest issue
=============================================== ======= ======================================

The counter appears once a cycle or refresh has tried the ledger; the per-model gauges are
absent when the ledger cannot be read (logged as a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pipeline.config import Settings
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

_LABELS = ["series", "model"]
_GAUGES: tuple[tuple[str, str], ...] = (
    ("ledger_coverage_95", "Live share of matured actuals inside the 95% band."),
    ("ledger_wis_ratio", "Live WIS over naive's on the same points."),
    ("ledger_matured_points", "Matured (scored) forecast points in the window."),
    ("ledger_coverage_95_low", "1 when live 95% coverage is significantly below nominal."),
    ("ledger_champion", "1 for the series' serving champion."),
)


def failures_families(history: list[dict[str, Any]]) -> Iterator[Metric]:
    """``ledger_update_failures_total`` from the run history (cycles and refreshes), once one
    of them tried the ledger."""
    tried = [rec["ledger_recorded"] for rec in history if rec.get("ledger_recorded") is not None]
    if tried:
        family = CounterMetricFamily(
            "ledger_update_failures",
            "Cycles and refreshes whose issues the forecast ledger could not record or score.",
        )
        family.add_metric([], sum(1 for ok in tried if ok is False))
        yield family


def live_values(settings: Settings) -> dict[str, dict[tuple[str, str], float]]:
    """Gauge name -> (series, model) -> value; empty when the ledger cannot be read."""
    from pipeline.ledger.db import open_ledger
    from pipeline.ledger.read import leaderboard

    values: dict[str, dict[tuple[str, str], float]] = {name: {} for name, _ in _GAUGES}
    try:
        ledger = open_ledger(settings)
        try:
            boards = [
                leaderboard(ledger, s.name, window=settings.trust_window) for s in settings.series()
            ]
        finally:
            ledger.close()
    except PipelineError as exc:
        logger.warning("forecast ledger metrics skipped: %s", exc)
        return {}
    for board in boards:
        for row in board.rows:
            key = (board.series, row.model)
            figures = row.figures
            n = int(figures["n"] or 0)
            high = figures["coverage_95_high"]
            low = n >= settings.trust_min_points and high is not None and high < 0.95
            for name, value in (
                ("ledger_coverage_95", figures["coverage_95"]),
                ("ledger_wis_ratio", figures["wis_ratio"]),
                ("ledger_matured_points", n),
                ("ledger_coverage_95_low", int(low)),
                ("ledger_champion", int(row.champion)),
            ):
                if value is not None:
                    values[name][key] = float(value)
    return values


def ledger_families(settings: Settings, history: list[dict[str, Any]]) -> Iterator[Metric]:
    """Every ledger family (see the module docstring)."""
    yield from failures_families(history)
    values = live_values(settings)
    for name, doc in _GAUGES:
        samples = values.get(name)
        if not samples:
            continue
        family = GaugeMetricFamily(name, doc, labels=_LABELS)
        for (series, model), value in sorted(samples.items()):
            family.add_metric([series, model], value)
        yield family
