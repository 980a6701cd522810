"""Updating a conformal model's calibration with the errors that matured after its fit.

Split conformal keeps its factors through an update (only the base model moves). Adaptive
conformal inference (Gibbs & Candès 2021) is an online method: its level should keep adapting
to the errors of the forecasts the model actually issued. On every update the model therefore

1. issues the base forecast for the calibrated horizon ``H`` from every origin the update walks
   through (the old origin and each new price but the last) and keeps it *pending*;
2. appends each new log price to the pending forecasts; a forecast whose ``H`` steps have all
   been observed has *matured*: its normalised scores become a new calibration row (a new
   origin, in time order after the fit's), the ACI recursion continues over the new rows from
   the stored per-step levels, and the factors are the score quantiles at the new levels.

The result is the calibration a fit would compute if its origins were the fit's followed by
the matured update origins, scored against the base forecasts issued there. Pending forecasts
(at most ``H``) are saved with the model, so updates in several batches give the same result
as one update with all the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.forecasters.base import Forecaster
from pipeline.forecasters.composite import RollingForecasts
from pipeline.forecasters.conformal_scores import (
    aci_alphas,
    aci_factors,
    normalised_scores,
    raw_coverage,
    read_scores,
    stored_scores,
)

#: One pending forecast: origin (ISO), log mean / bounds for steps 1..H, actuals seen so far.
Pending = dict[str, Any]


def issue(base: Forecaster, horizon: int, levels: Sequence[int]) -> Pending:
    """The base model's forecast from its current origin, in log units, awaiting actuals."""
    fc = base.predict(horizon, list(levels))
    return {
        "origin": base.last_ds_.isoformat(),
        "mean": np.log(fc["mean"].to_numpy()).tolist(),
        "lower": {str(lv): np.log(fc[f"lower_{lv}"].to_numpy()).tolist() for lv in levels},
        "upper": {str(lv): np.log(fc[f"upper_{lv}"].to_numpy()).tolist() for lv in levels},
        "actual": [],
    }


def walk(
    base: Forecaster, y_new: pd.Series, pending: list[Pending], horizon: int, levels: Sequence[int]
) -> tuple[list[Pending], list[Pending]]:
    """Update ``base`` price by price through ``y_new``, issuing a forecast before each price.

    Returns the forecasts still pending and those that matured, both oldest first.
    """
    pending = [dict(p, actual=list(p["actual"])) for p in pending]
    matured: list[Pending] = []
    for i in range(len(y_new)):
        pending.append(issue(base, horizon, levels))
        base.update(y_new.iloc[i : i + 1])
        log_price = float(np.log(y_new.iloc[i]))
        for p in pending:
            p["actual"].append(log_price)
        matured += [p for p in pending if len(p["actual"]) >= horizon]
        pending = [p for p in pending if len(p["actual"]) < horizon]
    return pending, matured


def matured_forecasts(matured: list[Pending], levels: Sequence[int]) -> RollingForecasts:
    """Matured forecasts as rolling forecasts (arrays ``(n, H)``, log units)."""
    return RollingForecasts(
        origins=[pd.Timestamp(p["origin"]) for p in matured],
        actual=np.array([p["actual"] for p in matured], dtype=float),
        mean=np.array([p["mean"] for p in matured], dtype=float),
        lower={lv: np.array([p["lower"][str(lv)] for p in matured], float) for lv in levels},
        upper={lv: np.array([p["upper"][str(lv)] for p in matured], float) for lv in levels},
    )


def absorb(
    calibration: dict[str, Any],
    matured: list[Pending],
    *,
    levels: Sequence[int],
    pool_steps: int,
    gamma: float,
    warmup: int,
) -> dict[str, Any]:
    """A new adaptive calibration record with the matured forecasts as new origins."""
    if not matured:
        return calibration
    rf = matured_forecasts(matured, levels)
    n_old = int(calibration["n_origins"])
    out = {
        **calibration,
        "n_origins": n_old + len(matured),
        "origins": [*calibration["origins"], *(p["origin"] for p in matured)],
        "factors": dict(calibration["factors"]),
        "effective_level": dict(calibration["effective_level"]),
        "raw_coverage": dict(calibration["raw_coverage"]),
        "scores": dict(calibration["scores"]),
        "alpha": dict(calibration.get("alpha", {})),
    }
    for level in levels:
        key = str(level)
        old = read_scores(calibration["scores"][key])
        alpha = calibration.get("alpha", {}).get(key)
        if alpha is None:  # saved before the levels were kept: replay them from the scores
            start = np.full(old.shape[1], 1.0 - level / 100.0)
            alpha = aci_alphas(old, level, pool_steps, gamma, min(warmup, n_old - 1), start)
        rows = stored_scores(normalised_scores(rf, level))
        scores = np.vstack([old, read_scores(rows)])
        alphas = aci_alphas(scores, level, pool_steps, gamma, n_old, np.asarray(alpha, float))
        factors, used = aci_factors(scores, alphas, pool_steps)
        out["factors"][key] = [float(f) for f in factors]
        out["effective_level"][key] = [round(float(u), 6) for u in used]
        out["raw_coverage"][key] = raw_coverage(scores)
        out["scores"][key] = [*calibration["scores"][key], *rows]
        out["alpha"][key] = [float(a) for a in alphas]
    return out
