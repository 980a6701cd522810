"""An issue of a version: the path it answers from, checked before it is served."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from pipeline.api.issue import PATH_COLUMNS, ForecastPath, Issue
from pipeline.errors import PipelineError
from tests.helpers.serving import ORIGIN


def path_frame(steps: int = 4) -> pd.DataFrame:
    ds = pd.date_range(ORIGIN + timedelta(hours=1), periods=steps, freq="1h")
    frame = pd.DataFrame({"ds": ds.strftime("%Y-%m-%dT%H:%M:%SZ"), "mean": 100.0})
    for column in PATH_COLUMNS[2:]:
        frame[column] = 90.0 if column.startswith("lower") else 110.0
    return frame


def issue(frame: pd.DataFrame) -> Issue:
    return Issue(frame, ORIGIN, ORIGIN, 100.0, "x/forecast.csv")


def test_a_path_is_cut_to_the_horizon_in_unix_seconds() -> None:
    path = ForecastPath.of(issue(path_frame(4)), horizon=3)
    assert path.stamps == [ORIGIN + timedelta(hours=k) for k in (1, 2, 3)]
    assert path.seconds == [int(stamp.timestamp()) for stamp in path.stamps]
    assert set(path.columns) == set(PATH_COLUMNS[1:]) and path.columns["mean"] == [100.0] * 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["upper_95"]), r"missing columns \['upper_95'\]"),
        (lambda f: f.iloc[:0], "the forecast path is empty"),
        (lambda f: f.assign(mean=[100.0, float("nan"), 1.0, 1.0]), "non-finite or non-positive"),
        (lambda f: f.assign(mean=[100.0, -1.0, 1.0, 1.0]), "non-finite or non-positive"),
        (lambda f: f.iloc[[0, 2, 1, 3]], "the forecast timestamps are not increasing"),
        (lambda f: f.iloc[[0, 0, 1, 2]], "the forecast timestamps are not increasing"),
    ],
)
def test_an_unusable_path_is_refused_naming_its_source(change: object, message: str) -> None:
    frame = change(path_frame(4))  # type: ignore[operator]
    with pytest.raises(PipelineError, match=rf"^x/forecast\.csv: {message}"):
        ForecastPath.of(issue(frame), horizon=10)
