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


def adaptive_factors(
    scores: np.ndarray, level: int, width: int, gamma: float, warmup: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step ACI factors: the level tracks the miscoverage along the origins (time order)."""
    target = 1.0 - level / 100.0
    h = scores.shape[1]
    factors = np.empty(h)
    final_levels = np.empty(h)
    for k in range(h):
        block = pooled(scores, k, width)
        alpha = target
        for i in range(warmup, block.shape[0]):
            q = conformal_quantile(block[:i].ravel(), 1.0 - alpha)
            row = block[i][np.isfinite(block[i])]
            if row.size == 0:  # that origin's calibration fit failed
                continue
            miss = float(np.mean(row > q))
            alpha += gamma * (target - miss)
        final_levels[k] = min(max(1.0 - alpha, 0.0), 1.0)
        factors[k] = conformal_quantile(block.ravel(), final_levels[k])
    return factors, final_levels
