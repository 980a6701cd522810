"""Per-origin evidence for the champion decision: paired scores and the tests that judge them.

A backtest summary says which model had the lowest *mean* score; over a handful of origins that
is mostly noise. :class:`Evidence` keeps, for every model of one backtest, its score at each
origin, so that :mod:`pipeline.evaluation.champion` can ask whether one model is better than
another *with confidence*: a one-sided Diebold-Mariano test
(:func:`pipeline.evaluation.scoring.diebold_mariano`, HAC variance and the
Harvey-Leybourne-Newbold correction) on the per-origin score differences.

Scores per origin (lower is better)
    * ``wis`` -- the weighted interval score over the forecast's median and its central intervals,
      averaged over the horizon and divided by the origin's naive scale (the in-sample one-step
      naive MAE, as in MASE), so that origins at very different price levels weigh alike;
    * ``mase`` -- the origin's MASE: the point accuracy alone.

Consecutive origins are dependent when their forecast windows overlap: the test's lag parameter
is the number of origins one forecast window spans (:attr:`Evidence.overlap`; 1 when the origins
are at least a horizon apart, as in the default daily protocol).

A model whose point forecast equals the naive one at every origin (naive, garch, gjr_garch,
conformal_naive, aci_naive, band_average: the random-walk median with their own band) is listed in
:attr:`Evidence.random_walk_median`; it is found from the forecasts themselves, not from a list.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.evaluation.scoring import DMResult, diebold_mariano, weighted_interval_score
from pipeline.series import freq_offset

if TYPE_CHECKING:
    from pipeline.evaluation.backtest import BacktestResult

#: The per-origin scores :class:`Evidence` holds.
SCORE_KEYS = ("wis", "mase")
#: Relative difference under which a model's point forecast counts as the naive one.
MEDIAN_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Evidence:
    """Every model's score at every origin of one backtest (``nan`` where it failed)."""

    origins: tuple[pd.Timestamp, ...]
    #: model -> score key (:data:`SCORE_KEYS`) -> one value per origin
    scores: Mapping[str, Mapping[str, np.ndarray]]
    #: Origins one forecast window spans: the Diebold-Mariano lag parameter.
    overlap: int = 1
    #: Models whose point forecast is the naive one at every origin.
    random_walk_median: frozenset[str] = frozenset()

    @classmethod
    def from_backtest(cls, result: BacktestResult, baseline: str = "naive") -> Evidence:
        """The per-origin scores of ``result`` (see the module docstring)."""
        origins = tuple(sorted(result.origins))
        wis = per_origin_wis(result.folds, result.protocol.levels)
        fm = result.fold_metrics
        ok = fm[fm["error"].isna()] if len(fm) else fm
        scores: dict[str, dict[str, np.ndarray]] = {}
        for model in result.models:
            part = ok[ok["model"] == model].set_index("origin") if len(ok) else ok
            mase = part["mase"] if "mase" in part else pd.Series(dtype=float)
            own = wis[wis["model"] == model].set_index("origin")["wis"]
            scores[model] = {
                "wis": own.reindex(list(origins)).to_numpy(float),
                "mase": mase.reindex(list(origins)).to_numpy(float),
            }
        span = result.protocol.horizon * freq_offset(result.protocol.freq)
        overlap = max(1, math.ceil(span / result.protocol.step))
        return cls(origins, scores, overlap, random_walk_models(result.folds, baseline))

    def restrict(self, models: Collection[str]) -> Evidence:
        """The evidence of ``models`` only (e.g. the ones that were trained)."""
        return Evidence(
            self.origins,
            {m: s for m, s in self.scores.items() if m in models},
            self.overlap,
            frozenset(self.random_walk_median & set(models)),
        )

    def has(self, model: str) -> bool:
        return model in self.scores

    def compare(self, challenger: str, reference: str, key: str) -> DMResult:
        """Diebold-Mariano of ``challenger``'s ``key`` score against ``reference``'s, paired
        by origin (``p_better`` small: the challenger is better with confidence)."""
        return diebold_mariano(
            self.scores[challenger][key], self.scores[reference][key], horizon=self.overlap
        )


def per_origin_wis(folds: pd.DataFrame, levels: Collection[int]) -> pd.DataFrame:
    """``origin, model, wis``: each fold's WIS averaged over its steps, over its naive scale."""
    if folds.empty:
        return pd.DataFrame({"origin": [], "model": [], "wis": []})
    intervals = {int(level): (folds[f"lower_{level}"], folds[f"upper_{level}"]) for level in levels}
    points = weighted_interval_score(folds["actual"], folds["mean"], intervals)
    frame = pd.DataFrame(
        {
            "origin": folds["origin"],
            "model": folds["model"],
            "wis": points / folds["scale"].to_numpy(float),
        }
    )
    return frame.groupby(["origin", "model"], sort=True)["wis"].mean().reset_index()


def random_walk_models(folds: pd.DataFrame, baseline: str = "naive") -> frozenset[str]:
    """Models whose point forecast equals ``baseline``'s at every step of every shared fold."""
    if folds.empty or baseline not in set(folds["model"]):
        return frozenset()
    keyed = folds.set_index(["origin", "step"])
    reference = keyed[keyed["model"] == baseline]["mean"]
    same = {baseline}
    for model in set(folds["model"]) - {baseline}:
        own = keyed[keyed["model"] == model]["mean"]
        ref = reference.reindex(own.index)
        if own.empty or ref.isna().any():
            continue
        gap = np.abs(own.to_numpy(float) - ref.to_numpy(float)) / np.abs(ref.to_numpy(float))
        if bool(np.all(gap <= MEDIAN_TOLERANCE)):
            same.add(model)
    return frozenset(same)


def judge(
    evidence: Evidence,
    ranked: list[str],
    *,
    baseline: str,
    incumbent: str | None,
    alpha: float,
    anchor: str | None = None,
) -> tuple[str, list[str]]:
    """(winner, what the tests said) among the eligible models ``ranked`` best score first.

    1. A model whose point forecast is not the random walk's competes only with a significant
       point-accuracy gain over ``baseline`` (one-sided DM on per-origin MASE, p < ``alpha``).
    2. When the ``anchor`` competes (eligible, with scores) it is the reference: the best
       remaining model wins only when its WIS is lower than the anchor's with confidence
       (one-sided DM on per-origin scaled WIS, p < ``alpha``), else the anchor wins. A serving
       ``incumbent`` that still beats the anchor with confidence stays unless the best model
       also beats the incumbent with confidence.
    3. Without the anchor, the best remaining model replaces a still-eligible ``incumbent``
       only when its WIS is lower with confidence; otherwise the incumbent stays.
    With nothing left, ``baseline`` wins.
    """
    notes: list[str] = []
    allowed: list[str] = []
    blocked: list[str] = []
    for model in ranked:
        if model == baseline or model in evidence.random_walk_median:
            allowed.append(model)
        elif not evidence.has(model):
            blocked.append(f"{model} (no per-origin scores)")
        elif (p := evidence.compare(model, baseline, "mase").p_better) < alpha:
            allowed.append(model)
            notes.append(f"{model}'s point forecast beats naive's with confidence (DM p={p:.3f})")
        else:
            blocked.append(f"{model} p={p:.2f}")
    if blocked:
        notes.append(
            "point forecast unlike the random walk's without a significant MASE gain over "
            f"naive (one-sided DM p < {alpha:g} needed): {', '.join(blocked)}"
        )
    if not allowed:
        return baseline, notes
    if anchor is not None and anchor in allowed and evidence.has(anchor):
        return _against_anchor(evidence, allowed, anchor, incumbent, alpha, notes)
    best = allowed[0]
    if incumbent is None or incumbent == best:
        return best, notes
    if incumbent not in allowed:
        notes.append(f"the serving {incumbent} is not eligible any more")
        return best, notes
    p = evidence.compare(best, incumbent, "wis").p_better
    if p < alpha:
        notes.append(f"{best} beats the serving {incumbent} with confidence (WIS DM p={p:.3f})")
        return best, notes
    notes.append(
        f"the serving {incumbent} stays: {best} scores lower but not with confidence "
        f"(WIS DM p={p:.2f}, {alpha:g} needed)"
    )
    return incumbent, notes


def _against_anchor(
    evidence: Evidence,
    allowed: list[str],
    anchor: str,
    incumbent: str | None,
    alpha: float,
    notes: list[str],
) -> tuple[str, list[str]]:
    """Step 2 of :func:`judge`: the anchor unless a challenger is better with confidence."""
    best = allowed[0]
    if best == anchor:
        return anchor, notes
    p = evidence.compare(best, anchor, "wis").p_better
    if p >= alpha:
        notes.append(
            f"{anchor} (the anchor) is served: {best} scores lower but not with confidence "
            f"(WIS DM p={p:.2f}, {alpha:g} needed)"
        )
        return anchor, notes
    notes.append(f"{best} beats the anchor {anchor} with confidence (WIS DM p={p:.3f})")
    if incumbent is None or incumbent in (anchor, best) or incumbent not in allowed:
        return best, notes
    holds = evidence.compare(incumbent, anchor, "wis").p_better < alpha
    p_inc = evidence.compare(best, incumbent, "wis").p_better
    if holds and p_inc >= alpha:
        notes.append(
            f"the serving {incumbent} stays: it still beats the anchor with confidence and "
            f"{best} does not beat it with confidence (WIS DM p={p_inc:.2f})"
        )
        return incumbent, notes
    return best, notes


__all__ = [
    "MEDIAN_TOLERANCE",
    "SCORE_KEYS",
    "Evidence",
    "judge",
    "per_origin_wis",
    "random_walk_models",
]
