"""The forecast-path rules of a refresh."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.forecasters import make_forecaster
from pipeline.refresh.checks import RefusedError, check_continues, check_forecast
from tests.helpers.prices import random_walk_prices

LABEL = "bitcoin-usd-1d/naive/v1"
DAY = pd.Timedelta(days=1)


@pytest.fixture
def y() -> pd.Series:
    return random_walk_prices(100)


@pytest.fixture
def frame(y: pd.Series) -> pd.DataFrame:
    return make_forecaster("naive").fit(y).predict(3)


def test_a_valid_path_passes(y: pd.Series, frame: pd.DataFrame) -> None:
    check_forecast(frame, y.index[-1], DAY, 3, (80, 95), LABEL)


def test_inverted_bands_are_refused(y: pd.Series, frame: pd.DataFrame) -> None:
    frame.loc[1, "lower_80"] = frame.loc[1, "mean"] * 1.01
    with pytest.raises(RefusedError, match=rf"^{LABEL}: refused, inverted band: the 80% interval "
                       r"\[.*\] does not contain the mean at 2021-04-12T00:00:00Z$"):  # fmt: skip
        check_forecast(frame, y.index[-1], DAY, 3, (80, 95), LABEL)


def test_bands_that_are_not_nested_are_refused(y: pd.Series, frame: pd.DataFrame) -> None:
    frame.loc[0, "upper_95"] = frame.loc[0, "upper_80"] * 0.99
    with pytest.raises(RefusedError, match="the 95% interval .* does not contain the 80% interval"):
        check_forecast(frame, y.index[-1], DAY, 3, (80, 95), LABEL)


@pytest.mark.parametrize("value", [np.inf, 0.0, -1.0])
def test_non_finite_or_non_positive_values_are_refused(
    y: pd.Series, frame: pd.DataFrame, value: float
) -> None:
    frame.loc[2, "upper_95"] = value
    with pytest.raises(RefusedError, match=f"non-positive forecast: upper_95 = {value!r} at 2021"):
        check_forecast(frame, y.index[-1], DAY, 3, (80, 95), LABEL)


def test_a_path_from_another_origin_or_length_is_refused(y: pd.Series, frame: pd.DataFrame) -> None:
    with pytest.raises(RefusedError, match="does not start one step after the origin 2021-04-09"):
        check_forecast(frame, y.index[-2], DAY, 3, (80, 95), LABEL)
    with pytest.raises(RefusedError, match="and 3 rows; expected .* and 4 rows"):
        check_forecast(frame, y.index[-1], DAY, 4, (80, 95), LABEL)


def test_an_empty_series_does_not_continue_the_origin(y: pd.Series) -> None:
    with pytest.raises(RefusedError, match="the processed series is empty, before the training"):
        check_continues(y.iloc[:0], y.index[-1], LABEL, what="the training end")
    check_continues(y, y.index[-1], LABEL)
