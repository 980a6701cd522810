"""Series ids and frequencies."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.series import SeriesId, freq_offset


def test_name_and_parse_round_trip() -> None:
    series = SeriesId("usd-coin", "eur", "4h")
    assert series.name == "usd-coin-eur-4h"
    assert SeriesId.parse(series.name) == series


@pytest.mark.parametrize(
    ("coin", "vs", "freq", "message"),
    [
        ("../etc", "usd", "1d", "invalid coin id"),
        ("bitcoin", "us/d", "1d", "invalid vs currency"),
        ("bitcoin", "usd", "5m", "unknown frequency '5m'"),
    ],
)
def test_invalid_parts_are_refused(coin: str, vs: str, freq: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        SeriesId(coin, vs, freq)


def test_parse_refuses_garbage() -> None:
    with pytest.raises(UsageError, match="expected coin-vs-freq"):
        SeriesId.parse("bitcoin")


def test_freq_offsets() -> None:
    assert freq_offset("1h") == pd.Timedelta(hours=1)
    assert freq_offset("4h") == pd.Timedelta(hours=4)
    assert freq_offset("1d") == pd.Timedelta(days=1)


def test_frequency_table_owns_raw_sources_and_horizons() -> None:
    from pipeline.series import FREQUENCY_TABLE, RAW_FREQUENCIES, freq_of_step, frequency

    assert RAW_FREQUENCIES == ("1h", "1d")
    assert SeriesId("bitcoin", "usd", "4h").raw == SeriesId("bitcoin", "usd", "1h")
    assert SeriesId("bitcoin", "usd", "1d").raw == SeriesId("bitcoin", "usd", "1d")
    assert frequency("4h").horizon == FREQUENCY_TABLE["4h"].horizon == 42
    assert freq_of_step(pd.Timedelta("4h")) == "4h"
    assert freq_of_step(pd.Timedelta("2h")) is None
    with pytest.raises(UsageError, match="unknown frequency '2h': use one of 1h, 4h, 1d"):
        frequency("2h")


def test_freq_choices_are_phrased_from_the_table() -> None:
    from pipeline.series import freq_choices

    assert freq_choices() == "1h, 4h or 1d"
    assert freq_choices(raw_only=True) == "1h or 1d"
    assert freq_choices(raw_only=True, last="and/or") == "1h and/or 1d"


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        ("check_coin", "Bitcoin!", "invalid coin id 'Bitcoin!': use CoinGecko ids like 'bitcoin'"),
        ("check_coin", "-x", "invalid coin id '-x'"),
        ("check_vs", "u", "invalid vs currency 'u': use a code like 'usd'"),
    ],
)
def test_coin_and_vs_checks(check: str, value: str, message: str) -> None:
    import pipeline.series

    fn = getattr(pipeline.series, check)
    with pytest.raises(UsageError, match=message):
        fn(value)
    assert pipeline.series.check_coin("usd-coin") == "usd-coin"
    assert pipeline.series.check_vs("eur") == "eur"
