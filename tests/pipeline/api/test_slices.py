"""The answers from one step on: the confidence score of the first served step."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from pipeline.api.slices import confidence_score


def test_confidence_score_follows_the_lognormal_rule() -> None:
    mean, lo, hi, last = 105.0, 90.0, 122.0, 100.0
    sd = (math.log(hi) - math.log(lo)) / (2 * 1.959964)
    p_up = 1 - stats.norm.cdf(math.log(last), loc=math.log(mean), scale=sd)
    assert confidence_score(mean, lo, hi, last) == pytest.approx(p_up, rel=1e-9)
    # A predicted fall scores the probability of falling.
    p_up_down = 1 - stats.norm.cdf(math.log(last), loc=math.log(95.0), scale=sd)
    assert confidence_score(95.0, lo, hi, last) == pytest.approx(1 - p_up_down, rel=1e-9)
    assert confidence_score(100.0, lo, hi, last) == pytest.approx(0.5)
    assert confidence_score(101.0, 101.0, 101.0, last) == 1.0  # no uncertainty, a rise
    # The wider the distribution, the weaker the view on the direction.
    wide, narrow = (
        confidence_score(150.0, 10.0, 2000.0, last),
        confidence_score(150.0, 140, 160, 100),
    )
    assert 0.5 < wide < narrow <= 1.0
