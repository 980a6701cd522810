import argparse
from datetime import UTC, datetime

import pandas as pd
import pytest

from pipeline.cli import (
    date_arg,
    parse_date,
    parse_timestamp,
    positive_int,
    settings_from_args,
    split_list,
)
from pipeline.errors import UsageError


def test_parse_date_is_utc_and_none_stays_none() -> None:
    assert parse_date("2021-05-01", "--until") == datetime(2021, 5, 1, tzinfo=UTC)
    assert parse_date(None, "--until") is None
    assert parse_date("", "--until") is None
    with pytest.raises(UsageError, match=r"invalid --until 'yesterday-ish'"):
        parse_date("yesterday-ish", "--until")


def test_parse_timestamp_converts_offsets_to_utc() -> None:
    ts = parse_timestamp("2021-05-01T02:00:00+02:00", "--start")
    assert ts == pd.Timestamp("2021-05-01T00:00:00", tz="UTC")
    assert str(ts.tz) == "UTC"


def test_date_arg_and_positive_int_are_argparse_errors() -> None:
    assert date_arg("2020-01-02") == datetime(2020, 1, 2, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="expected YYYY-MM-DD"):
        date_arg("02/01/2020")
    assert positive_int("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        positive_int("0")
    with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
        positive_int("x")


def test_split_list() -> None:
    assert split_list(" a, b,,c ") == ["a", "b", "c"]
    assert split_list(None) is None
    assert split_list(" , ") is None


def test_settings_from_args_applies_given_flags_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VS_CURRENCY", "eur")
    args = argparse.Namespace(coin="ethereum", vs=None)
    settings = settings_from_args(args, {"coin": "coins", "vs": "vs_currency"})
    assert settings.coins == ["ethereum"]
    assert settings.vs_currency == "eur"


def test_settings_from_args_names_the_variable_on_bad_input() -> None:
    args = argparse.Namespace(coin="Not A Coin!")
    with pytest.raises(UsageError, match="COINS"):
        settings_from_args(args, {"coin": "coins"})
