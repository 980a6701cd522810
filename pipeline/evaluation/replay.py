"""Replay of the served system: what the nightly decision would have served, and how it scored.

At each decision origin ``t`` of a long history the replay runs the real nightly decision of
:mod:`pipeline.evaluation.champion` -- the selection backtest's summary and per-origin scores,
the champion rule, the quality gate, not-worse-than-serving and the first-champion bootstrap
(:func:`~pipeline.evaluation.champion.decide`, :func:`~pipeline.evaluation.champion.bootstrap`)
-- serves what it picked, and scores that model's forecast from ``t`` against the prices that
followed, next to naive and every fixed model on the same origins.

It stays affordable because the selection backtest at ``t`` consists of forecasts at earlier
origins: every model is forecast *once* at every origin of a grid (one
:func:`~pipeline.evaluation.backtest.run_backtest`), and each decision reads the
``selection_origins`` latest grid origins whose whole horizon has been observed before ``t``
(:func:`matured`): no decision sees a price at or after its origin. The served forecast at ``t``
is the chosen model's grid forecast at ``t`` (fitted on the same sliding window as the
selection backtest's fits).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pandas as pd

from pipeline.errors import UsageError
from pipeline.evaluation.champion import BASELINE_MODEL, SELECTION_RULE, bootstrap, decide
from pipeline.evaluation.evidence import Evidence
from pipeline.series import SeriesId, freq_offset

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.evaluation.backtest import BacktestResult

logger = logging.getLogger(__name__)

#: Per-origin scores the replay tables report (``ratio`` columns are relative to naive).
TABLE_KEYS = ("mase", "wis", "winkler_95", "coverage_80", "coverage_95")


@dataclass(frozen=True)
class ReplayStep:
    """One nightly decision: what was served from ``origin`` on, and why."""

    origin: pd.Timestamp
    served: str
    candidate: str
    passed: bool
    reason: str
    #: The served model had no forecast at this origin: naive's was scored instead.
    fallback: bool = False


@dataclass
class ReplayResult:
    """The decisions of one replay and the grid they were made from."""

    series: str
    rule: str
    selection_origins: int
    grid: BacktestResult
    steps: list[ReplayStep] = field(default_factory=list)

    @property
    def origins(self) -> list[pd.Timestamp]:
        return [s.origin for s in self.steps]

    def changes(self) -> int:
        """How many times the served model changed (the first choice is not a change)."""
        return count_changes([s.served for s in self.steps])

    def served_scores(self) -> pd.DataFrame:
        """Per decision origin: the served model and its own per-origin scores."""
        scores = origin_scores(self.grid)
        rows = []
        for step in self.steps:
            model = BASELINE_MODEL if step.fallback else step.served
            rows.append({"origin": step.origin, "model": model, **scores.loc[(step.origin, model)]})
        return pd.DataFrame(rows).set_index("origin")

    def table(self) -> pd.DataFrame:
        """Served vs naive vs each fixed model on the decision origins: mean scores, ratios to
        naive's mean on the same origins, and the number of champion changes."""
        scores = origin_scores(self.grid)
        origins = self.origins
        naive = scores.xs(BASELINE_MODEL, level="model").reindex(origins)
        frames = {"served": self.served_scores()[list(TABLE_KEYS)]}
        for model in self.grid.models:
            own = scores.xs(model, level="model") if model in scores.index.levels[1] else None
            frames[model] = (
                own.reindex(origins)[list(TABLE_KEYS)]
                if own is not None
                else pd.DataFrame(index=origins, columns=list(TABLE_KEYS), dtype=float)
            )
        rows = []
        for name, frame in frames.items():
            ok = frame["mase"].notna()
            row: dict[str, float | str] = {"model": name, "origins": float(ok.sum())}
            for key in ("mase", "wis", "winkler_95"):
                row[f"{key}_ratio"] = float(frame[key][ok].mean() / naive[key][ok].mean())
            for key in ("coverage_80", "coverage_95"):
                row[key] = float(frame[key][ok].mean())
            row["changes"] = float(self.changes()) if name == "served" else 0.0
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")

    def served_counts(self) -> dict[str, int]:
        """How many decisions served each model."""
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.served] = counts.get(step.served, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def count_changes(served: Sequence[str]) -> int:
    """Changes of the served model along ``served`` (one name per decision)."""
    return sum(1 for a, b in zip(served, served[1:], strict=False) if a != b)


def origin_scores(grid: BacktestResult) -> pd.DataFrame:
    """Per (origin, model) scores of the grid's successful folds, :data:`TABLE_KEYS` columns."""
    fm = grid.fold_metrics
    ok = fm[fm["error"].isna()]
    return ok.set_index(["origin", "model"])[list(TABLE_KEYS)].astype(float)


def matured(
    origins: Sequence[pd.Timestamp], when: pd.Timestamp, horizon: int, freq: str
) -> list[pd.Timestamp]:
    """The ``origins`` whose whole horizon lies strictly before ``when`` (known at ``when``)."""
    span = horizon * freq_offset(freq)
    return [o for o in origins if o + span <= when]


def subset(grid: BacktestResult, origins: Sequence[pd.Timestamp]) -> BacktestResult:
    """The grid restricted to ``origins``: the selection backtest a decision would have run."""
    keep = set(origins)
    fm = grid.fold_metrics
    return replace(
        grid,
        folds=grid.folds[grid.folds["origin"].isin(keep)],
        fold_metrics=fm[fm["origin"].isin(keep)].reset_index(drop=True),
        failures={},
        origins=sorted(keep),
    )


def replay(
    grid: BacktestResult,
    series: SeriesId,
    settings: Settings,
    *,
    selection_origins: int,
    decide_every: int = 1,
    start: pd.Timestamp | None = None,
    rule: str = SELECTION_RULE,
) -> ReplayResult:
    """Replay the nightly decision over ``grid`` (a backtest of every model on every origin).

    Decisions are made at every ``decide_every``-th grid origin from ``start`` on that has at
    least ``selection_origins`` matured origins before it; each reads those latest matured
    origins only.
    """
    if selection_origins < 1 or decide_every < 1:
        raise UsageError("selection_origins and decide_every must be >= 1")
    if BASELINE_MODEL not in grid.models:
        raise UsageError("the replay needs the naive baseline among the grid's models")
    horizon, freq = grid.protocol.horizon, grid.protocol.freq
    all_origins = sorted(grid.origins)
    candidates = [
        t
        for t in all_origins
        if (start is None or t >= start)
        and len(matured(all_origins, t, horizon, freq)) >= selection_origins
    ][::decide_every]
    if not candidates:
        raise UsageError(
            f"no decision origin: the grid's {len(all_origins)} origins leave none with "
            f"{selection_origins} matured origins before it"
        )
    scores = origin_scores(grid)
    result = ReplayResult(series.name, rule, selection_origins, grid)
    serving: str | None = None
    for t in candidates:
        window = matured(all_origins, t, horizon, freq)[-selection_origins:]
        selection = subset(grid, window)
        summary = selection.summary()
        evidence = Evidence.from_backtest(selection)
        decision = decide(series, summary, settings, serving, evidence=evidence, rule=rule)
        if decision.passed:
            serving = decision.candidate
        elif (first := bootstrap(decision, serving, grid.models)) is not None:
            serving = first.candidate
        served = serving or BASELINE_MODEL
        fallback = (t, served) not in scores.index
        result.steps.append(
            ReplayStep(t, served, decision.candidate, decision.passed, decision.reason, fallback)
        )
        logger.debug("%s %s: serving %s (%s)", series.name, t, served, decision.reason)
    return result


def summary_lines(result: ReplayResult) -> list[str]:
    """A few plain lines: decisions, changes, which models were served how often."""
    counts = ", ".join(f"{m} {n}" for m, n in result.served_counts().items())
    fallbacks = sum(s.fallback for s in result.steps)
    lines = [
        f"{result.series}: {len(result.steps)} decisions ({result.rule} rule, "
        f"{result.selection_origins} selection origins), {result.changes()} champion changes",
        f"served: {counts}",
    ]
    if fallbacks:
        lines.append(f"{fallbacks} decision(s) served a model without a forecast: naive scored")
    return lines


def ratio_table(result: ReplayResult) -> pd.DataFrame:
    """:meth:`ReplayResult.table`, rounded for a report."""
    return result.table().round(3).astype({"origins": int, "changes": int})


__all__ = [
    "TABLE_KEYS",
    "ReplayResult",
    "ReplayStep",
    "count_changes",
    "matured",
    "origin_scores",
    "ratio_table",
    "replay",
    "subset",
    "summary_lines",
]
