"""Proper scores of a whole forecast distribution and the tests that say whether a gap is real.

Scores (lower is better)
    * :func:`winkler_score` -- the interval (Winkler) score of a central ``L``% interval
      ``[l, u]``: ``(u - l) + (2 / a) (l - y) 1{y < l} + (2 / a) (y - u) 1{y > u}``, a = 1 - L/100.
    * :func:`pinball_loss` -- the quantile score of one quantile ``q`` at level ``tau``:
      ``(1{y < q} - tau) (q - y)``.
    * :func:`weighted_interval_score` -- WIS over the median and central intervals
      (Bracher et al. 2021): ``(|y - m| / 2 + sum_k (a_k / 2) IS_k) / (K + 1/2)`` with ``a_k`` =
      1 - level_k / 100 and ``IS_k`` the interval (Winkler) score of interval ``k``. It equals the
      mean pinball loss over the quantiles ``{a_k / 2, 1/2, 1 - a_k / 2}`` times two, and is the
      quantile form of the CRPS: the one number that scores location, spread and calibration.

Calibration tests (p-values; small means "the bands are not what they claim")
    * :func:`kupiec_pof` -- unconditional coverage: is the share of actuals inside the interval
      the nominal one (likelihood ratio, chi-square 1 df)?
    * :func:`christoffersen_independence` -- are misses independent of the previous step's miss
      (first-order Markov likelihood ratio, chi-square 1 df)? Use it on one-step-ahead hits or on
      non-overlapping origins: multi-step paths overlap and their misses cluster by design.

Comparing two forecasters on the same points
    * :func:`diebold_mariano` -- mean loss difference over its HAC (Newey-West, ``h - 1`` lags)
      standard error, with the Harvey-Leybourne-Newbold small-sample correction and Student-t
      reference distribution (``n - 1`` df).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "DMResult",
    "christoffersen_independence",
    "diebold_mariano",
    "interval_quantiles",
    "kupiec_pof",
    "pinball_key",
    "pinball_loss",
    "weighted_interval_score",
    "winkler_score",
]


def winkler_score(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float
) -> np.ndarray:
    """Interval (Winkler) score of each point for a central ``level``% interval."""
    alpha = 1.0 - level / 100.0
    below = np.clip(lower - actual, 0.0, None)
    above = np.clip(actual - upper, 0.0, None)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def interval_quantiles(levels: Iterable[int]) -> list[tuple[float, str, str]]:
    """``(tau, column, metric key)`` of every quantile a forecast with central ``levels`` has,
    in increasing ``tau``: the interval ends and the median (the ``mean`` column).

    For levels (80, 95): 2.5% ``lower_95``, 10% ``lower_80``, 50% ``mean``, 90% ``upper_80``,
    97.5% ``upper_95``.
    """
    out = [(0.5, "mean", pinball_key(0.5))]
    for level in levels:
        lower, upper = (100.0 - level) / 200.0, (100.0 + level) / 200.0
        out.append((lower, f"lower_{level}", pinball_key(lower)))
        out.append((upper, f"upper_{level}", pinball_key(upper)))
    return sorted(out)


def pinball_key(tau: float) -> str:
    """The metric key of the pinball loss at quantile ``tau``: ``pinball_2.5`` for 0.025."""
    return f"pinball_{round(100.0 * tau, 6):g}"


def pinball_loss(actual: ArrayLike, quantile: ArrayLike, tau: float) -> np.ndarray:
    """Quantile (pinball) loss of each point for the ``tau`` quantile forecast ``quantile``."""
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must be inside (0, 1), got {tau}")
    y = np.asarray(actual, dtype=float)
    q = np.asarray(quantile, dtype=float)
    return ((y < q).astype(float) - tau) * (q - y)


def weighted_interval_score(
    actual: ArrayLike,
    median: ArrayLike,
    intervals: Mapping[int, tuple[ArrayLike, ArrayLike]],
) -> np.ndarray:
    """WIS of each point; ``intervals`` maps a central level (80, 95) to ``(lower, upper)``."""
    if not intervals:
        raise ValueError("WIS needs at least one central interval")
    y = np.asarray(actual, dtype=float)
    total = 0.5 * np.abs(y - np.asarray(median, dtype=float))
    for level, (lower, upper) in intervals.items():
        if not 0 < level < 100:
            raise ValueError(f"interval level must be inside (0, 100), got {level}")
        alpha = 1.0 - level / 100.0
        lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        total = total + (alpha / 2.0) * winkler_score(y, lo, hi, level)
    return total / (len(intervals) + 0.5)


def _xlogy(count: float, prob: float) -> float:
    """``count * log(prob)`` with 0 * log(0) = 0."""
    return 0.0 if count == 0 else count * math.log(prob)


def kupiec_pof(hits: np.ndarray, level: float) -> float:
    """p-value of Kupiec's proportion-of-failures test that coverage equals ``level`` %.

    ``hits`` are booleans: the actual fell inside the interval. ``nan`` with no points.
    """
    inside = np.asarray(hits, dtype=bool)
    n = inside.size
    if n == 0:
        return float("nan")
    p = 1.0 - level / 100.0  # nominal miss rate
    misses = float(n - inside.sum())
    observed = misses / n
    lr = -2.0 * (
        _xlogy(n - misses, 1 - p) + _xlogy(misses, p)
        - _xlogy(n - misses, 1 - observed) - _xlogy(misses, observed)
    )  # fmt: skip
    return float(stats.chi2.sf(max(lr, 0.0), df=1))


def christoffersen_independence(hits: np.ndarray) -> float:
    """p-value of Christoffersen's test that a miss does not depend on the previous miss.

    ``nan`` when fewer than two points, or when there are no misses or only misses (nothing to
    test).
    """
    miss = ~np.asarray(hits, dtype=bool)
    if miss.size < 2 or miss.all() or not miss.any():
        return float("nan")
    prev, cur = miss[:-1], miss[1:]
    n00 = float(np.sum(~prev & ~cur))
    n01 = float(np.sum(~prev & cur))
    n10 = float(np.sum(prev & ~cur))
    n11 = float(np.sum(prev & cur))
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    restricted = _xlogy(n00 + n10, 1 - pi) + _xlogy(n01 + n11, pi)
    unrestricted = _xlogy(n00, 1 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1 - pi1) + _xlogy(n11, pi1)
    lr = -2.0 * (restricted - unrestricted)
    return float(stats.chi2.sf(max(lr, 0.0), df=1))


@dataclass(frozen=True)
class DMResult:
    """A Diebold-Mariano comparison of losses ``a`` against ``b`` (negative: ``a`` is better)."""

    mean_difference: float  # mean of loss_a - loss_b
    statistic: float  # HLN-corrected DM statistic
    p_value: float  # two-sided
    p_better: float  # one-sided: evidence that a has the lower expected loss
    n: int


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1) -> DMResult:
    """Diebold-Mariano test of equal expected loss on paired points (HAC + HLN correction).

    ``horizon`` is the forecast horizon of the losses: ``horizon - 1`` autocovariances enter the
    long-run variance (Newey-West weights). A zero variance (identical losses) gives statistic 0
    and p-value 1.
    """
    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    d = d[np.isfinite(d)]
    n = d.size
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if n < 2:
        return DMResult(float("nan"), float("nan"), float("nan"), float("nan"), n)
    mean = float(d.mean())
    centred = d - mean
    lags = min(horizon - 1, n - 1)
    var = float(centred @ centred) / n
    for k in range(1, lags + 1):
        weight = 1.0 - k / (lags + 1)
        var += 2.0 * weight * float(centred[k:] @ centred[:-k]) / n
    if var <= 0 or not math.isfinite(var):
        same = bool(np.allclose(d, 0.0))
        stat = 0.0 if same else math.copysign(math.inf, mean)
    else:
        stat = mean / math.sqrt(var / n)
    h = horizon
    correction = math.sqrt(max((n + 1 - 2 * h + h * (h - 1) / n) / n, 0.0))
    stat *= correction
    df = n - 1
    p_two = float(2.0 * stats.t.sf(abs(stat), df)) if math.isfinite(stat) else 0.0
    p_better = float(stats.t.cdf(stat, df))
    return DMResult(mean, float(stat), min(p_two, 1.0), p_better, n)
