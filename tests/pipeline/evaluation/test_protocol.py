"""The backtest protocol: per-frequency defaults, origins, spacing, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.evaluation.protocol import (
    FREQ_DEFAULTS,
    BacktestProtocol,
    default_protocol,
    format_step,
    make_origins,
    parse_step,
)
from pipeline.series import FREQUENCY_TABLE
from tests.helpers.backtests import rising, small_protocol


def test_default_protocols_per_frequency() -> None:
    daily = default_protocol("1d", rising(1200).index)
    assert (daily.horizon, daily.step, daily.train_window) == (30, pd.Timedelta("30D"), None)
    origins = make_origins(rising(1200).index, daily)
    assert len(origins) == 24
    assert origins[-1] + 30 == 1200  # the last origin has exactly a full horizon of actuals
    hourly = default_protocol("1h", rising(5000, "1h").index)
    assert (hourly.horizon, hourly.step) == (24, pd.Timedelta("7D"))
    pos = make_origins(rising(5000, "1h").index, hourly)
    assert np.diff(pos).tolist() == [168] * (len(pos) - 1)
    four = default_protocol("4h", rising(2000, "4h").index)
    assert (four.horizon, four.step) == (42, pd.Timedelta("7D"))
    assert len(make_origins(rising(2000, "4h").index, four)) == 26


def test_every_frequency_has_defaults_and_daily_and_4h_score_the_served_horizon() -> None:
    assert set(FREQ_DEFAULTS) == set(FREQUENCY_TABLE)
    for freq in ("1d", "4h"):
        assert FREQ_DEFAULTS[freq].horizon == FREQUENCY_TABLE[freq].horizon
    assert FREQ_DEFAULTS["1h"].horizon == 24  # the first day of the served 48 hours


def test_origins_without_enough_history_or_future_are_dropped() -> None:
    y = rising(50)
    protocol = BacktestProtocol(
        "1d", 10, pd.Timedelta("10D"), y.index[0], y.index[-1], train_window=None
    )
    assert make_origins(y.index, protocol, min_train=5) == [10, 20, 30, 40]


def test_protocol_round_trips_through_json() -> None:
    p = small_protocol(rising(), train_window=30, refit_every=2)
    again = BacktestProtocol.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert p.to_dict()["window"] == "sliding" and p.to_dict()["step"] == "10D"


def test_explicit_start_and_end_are_utc() -> None:
    y = rising()
    p = small_protocol(y, start="2021-02-01", end="2021-03-01T02:00:00+02:00")
    assert p.start == pd.Timestamp("2021-02-01", tz="UTC")
    assert p.end == pd.Timestamp("2021-03-01", tz="UTC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30D", "30D"), ("168h", "7D"), ("36h", "36h"), ("90min", "90min")],
)
def test_steps_format_compactly_and_parse_back(text: str, expected: str) -> None:
    step = parse_step(text)
    assert format_step(step) == expected
    assert parse_step(format_step(step)) == step


def test_protocol_rejects_bad_values() -> None:
    y = rising()
    with pytest.raises(UsageError, match="--horizon must be >= 1, got 0"):
        small_protocol(y, horizon=0)
    with pytest.raises(UsageError, match="invalid --step 'soon': use a duration like 30D"):
        small_protocol(y, step="soon")
    with pytest.raises(UsageError, match="--step must be positive, got '-1D'"):
        small_protocol(y, step="-1D")
    with pytest.raises(UsageError, match="--origins must be >= 1, got 0"):
        small_protocol(y, n_origins=0)
    with pytest.raises(UsageError, match="invalid --start 'someday': use a date like 2021-06-01"):
        small_protocol(y, start="someday")
    with pytest.raises(UsageError, match="--end .* is before --start"):
        small_protocol(y, start="2021-03-01", end="2021-02-01")
    with pytest.raises(UsageError, match="--refit-every must be >= 1, got 0"):
        small_protocol(y, refit_every=0)
    with pytest.raises(UsageError, match="--train-window must be >= 2 points, got 1"):
        small_protocol(y, train_window=1)
    with pytest.raises(UsageError, match="the series is empty"):
        default_protocol("1d", y.index[:0])
