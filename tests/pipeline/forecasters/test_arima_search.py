"""The ARIMA order search: KPSS lags, the differencing order, CSS fits and the stepwise walk."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

from pipeline.forecasters.arima_search import (
    Candidate,
    WarningCounter,
    choose_d,
    css_candidate,
    kpss_lags,
    stepwise_search,
)


def ar1(phi: float, n: int = 600, seed: int = 0, mean: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return mean + lfilter([1.0], [1.0, -phi], rng.standard_normal(n))


def test_kpss_lags_follow_the_short_newey_west_rule() -> None:
    assert [kpss_lags(n) for n in (30, 100, 1000, 10_000)] == [2, 4, 7, 12]


@pytest.mark.parametrize("test", ["kpss", "adf"])
def test_choose_d_differences_a_random_walk_once_and_noise_never(test: str) -> None:
    alpha = 0.05
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.standard_normal(800))
    counter = WarningCounter()
    d, report = choose_d(walk, test=test, alpha=alpha, max_d=2, counter=counter)
    assert d == 1
    assert [r["d"] for r in report] == [0, 1]
    assert set(report[0]) == {"d", "statistic", "pvalue"}
    d0, report0 = choose_d(
        rng.standard_normal(800), test=test, alpha=alpha, max_d=2, counter=counter
    )
    assert (d0, len(report0)) == (0, 1)
    assert choose_d(walk, test=test, alpha=alpha, max_d=0, counter=counter) == (0, [])


def test_css_candidate_recovers_an_ar1_with_its_mean() -> None:
    w = ar1(0.6, mean=0.5)
    cand = css_candidate(w, 1, 0, True, m=1)
    mu, phi, sigma2 = cand.params
    assert (cand.p, cand.q, cand.constant) == (1, 0, True)
    assert mu == pytest.approx(0.5, abs=0.15)
    assert phi == pytest.approx(0.6, abs=0.08)
    assert sigma2 == pytest.approx(1.0, rel=0.15)
    assert np.isfinite(cand.aicc)
    # The white-noise model fits the same series worse.
    assert css_candidate(w, 0, 0, True, m=1).aicc > cand.aicc


def test_stepwise_search_ranks_best_first_and_respects_its_limits() -> None:
    w = ar1(0.6, seed=3)
    ranked = stepwise_search(w, allow_constant=False, max_p=3, max_q=3, max_order=3, max_models=12)
    assert ranked == sorted(ranked)
    assert (ranked[0].p, ranked[0].q) == (1, 0)
    assert len(ranked) <= 12
    assert all(c.p + c.q <= 3 and not c.constant for c in ranked)
    assert len({(c.p, c.q, c.constant) for c in ranked}) == len(ranked)  # none tried twice
    tiny = stepwise_search(w, allow_constant=True, max_p=3, max_q=3, max_order=3, max_models=2)
    assert len(tiny) == 2


def test_candidates_order_by_aicc() -> None:
    assert Candidate(1.0, 2, 2, True) < Candidate(2.0, 0, 0, False)


def test_warning_counter_counts_by_category() -> None:
    import warnings

    counter = WarningCounter()
    with counter.catching("test"):
        warnings.warn("one", RuntimeWarning, stacklevel=1)
        warnings.warn("two", RuntimeWarning, stacklevel=1)
        warnings.warn("three", UserWarning, stacklevel=1)
    assert counter.total == 3
    assert counter.by_category == {"RuntimeWarning": 2, "UserWarning": 1}
