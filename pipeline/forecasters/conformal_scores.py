"""The maths of conformal calibration: normalised scores, the finite-sample quantile, factors.

A score ``s <= 1`` means the base interval covered the actual (see
:mod:`pipeline.forecasters.conformal`); the calibrated interval scales the base's log
half-widths by a factor per step and level: split conformal takes a fixed quantile of the
scores, adaptive conformal inference (Gibbs & Candès 2021) moves the level along the origins.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.forecasters.composite import RollingForecasts

#: Smallest half-width (log units) a score is divided by.
_TINY = 1e-12


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score (the largest when that rank exceeds n)."""
    s = np.sort(scores[np.isfinite(scores)])
    if s.size == 0:
        return 1.0
    if level >= 1.0:
        return float(s[-1])
    rank = math.ceil((s.size + 1) * max(level, 0.0))
    return float(s[min(max(rank, 1), s.size) - 1])


def normalised_scores(rf: RollingForecasts, level: int) -> np.ndarray:
    """``(n_origins, horizon)`` scores: <= 1 where the base ``level`` interval covered."""
    up = rf.actual >= rf.mean
    hw_up = np.maximum(rf.upper[level] - rf.mean, _TINY)
    hw_lo = np.maximum(rf.mean - rf.lower[level], _TINY)
    return np.where(up, (rf.actual - rf.mean) / hw_up, (rf.mean - rf.actual) / hw_lo)


def pooled(scores: np.ndarray, k: int, width: int) -> np.ndarray:
    """Scores of step ``k`` and its ``width`` neighbours on each side: ``(n_origins, m)``."""
    return scores[:, max(0, k - width) : k + width + 1]


def split_factors(scores: np.ndarray, level: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step split-conformal factors and the levels used (nominal)."""
    h = scores.shape[1]
    factors = np.array(
        [conformal_quantile(pooled(scores, k, width).ravel(), level / 100) for k in range(h)]
    )
    return factors, np.full(h, level / 100)


def aci_alphas(
    scores: np.ndarray,
    level: int,
    width: int,
    gamma: float,
    start: int,
    alphas: np.ndarray,
) -> np.ndarray:
    """Per-step ACI miscoverage levels after the rows ``start..`` of ``scores``, starting from
    ``alphas``: for each row in time order ``a <- a + gamma (target - miss)``, where ``miss``
    is the share of the row's pooled scores above the conformal quantile of the rows before."""
    target = 1.0 - level / 100.0
    out = np.array(alphas, dtype=float)
    for k in range(scores.shape[1]):
        block = pooled(scores, k, width)
        alpha = float(out[k])
        for i in range(start, block.shape[0]):
            q = conformal_quantile(block[:i].ravel(), 1.0 - alpha)
            row = block[i][np.isfinite(block[i])]
            if row.size == 0:  # that origin's calibration fit failed
                continue
            miss = float(np.mean(row > q))
            alpha += gamma * (target - miss)
        out[k] = alpha
    return out


def aci_factors(
    scores: np.ndarray, alphas: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step factors at the ACI levels ``1 - alphas`` (clipped to [0, 1]), and those levels."""
    levels = np.clip(1.0 - np.asarray(alphas, dtype=float), 0.0, 1.0)
    factors = np.array(
        [conformal_quantile(pooled(scores, k, width).ravel(), lv) for k, lv in enumerate(levels)]
    )
    return factors, levels


def adaptive_factors(
    scores: np.ndarray, level: int, width: int, gamma: float, warmup: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step ACI factors: the level tracks the miscoverage along the origins (time order)."""
    start = np.full(scores.shape[1], 1.0 - level / 100.0)
    return aci_factors(scores, aci_alphas(scores, level, width, gamma, warmup, start), width)


def stored_scores(scores: np.ndarray) -> list[list[float | None]]:
    """Scores as kept in the calibration record: 5 decimals, ``None`` for a failed origin."""
    return [[None if not np.isfinite(v) else round(float(v), 5) for v in row] for row in scores]


def read_scores(rows: list[list[float | None]]) -> np.ndarray:
    """The array form of :func:`stored_scores` (NaN for ``None``)."""
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def raw_coverage(scores: np.ndarray) -> list[float]:
    """Per-step share of the scores <= 1 (the base interval covered), failed origins left out."""
    covered = np.where(np.isfinite(scores), scores <= 1, np.nan)
    return [round(float(c), 6) for c in np.nanmean(covered, axis=0)]
