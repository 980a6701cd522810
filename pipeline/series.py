"""Series identity and frequencies: the one owner of these facts.

Everything that needs to know which frequencies exist, how long a step is, the default horizon,
which raw file a frequency is built from (``4h`` is resampled from the hourly file) or what a
valid coin / quote-currency id looks like asks this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from pipeline.errors import UsageError

#: A CoinGecko coin id (``bitcoin``, ``usd-coin``) and a quote currency code (``usd``).
COIN_PATTERN = r"[a-z0-9][a-z0-9-]{0,63}"
VS_PATTERN = r"[a-z0-9]{2,10}"
_COIN_RE = re.compile(COIN_PATTERN)
_VS_RE = re.compile(VS_PATTERN)


@dataclass(frozen=True)
class Frequency:
    """One supported frequency: its pandas offset, default horizon and raw source."""

    name: str
    offset: str  # pandas offset alias of one step
    horizon: int  # default forecast horizon in steps (the HORIZON_<name> setting's default)
    raw: str  # the frequency of the raw file it is built from (itself, or resampled)


#: The frequency table. ``4h`` has no raw file of its own: processing resamples the hourly one.
FREQUENCY_TABLE: dict[str, Frequency] = {
    f.name: f
    for f in (
        Frequency("1h", "1h", 48, "1h"),
        Frequency("4h", "4h", 42, "1h"),
        Frequency("1d", "1D", 30, "1d"),
    )
}
#: Supported frequencies and their pandas offsets.
FREQUENCIES: dict[str, str] = {name: f.offset for name, f in FREQUENCY_TABLE.items()}
#: Frequencies stored as raw files (ingested); the others are built from one of these.
RAW_FREQUENCIES: tuple[str, ...] = tuple(dict.fromkeys(f.raw for f in FREQUENCY_TABLE.values()))


def frequency(freq: str) -> Frequency:
    """The table entry of ``freq``; a :class:`UsageError` naming the choices when unknown."""
    try:
        return FREQUENCY_TABLE[freq]
    except KeyError:
        raise UsageError(
            f"unknown frequency {freq!r}: use one of {', '.join(FREQUENCY_TABLE)}"
        ) from None


def freq_choices(*, raw_only: bool = False, last: str = "or") -> str:
    """The frequencies as a phrase for help and error texts: ``"1h, 4h or 1d"``.

    ``raw_only`` lists only the ingested ones (``"1h or 1d"``); ``last`` joins the final two.
    """
    return _phrase(RAW_FREQUENCIES if raw_only else FREQUENCY_TABLE, last)


def _phrase(names: Iterable[str], last: str) -> str:
    items = list(names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def freq_of_step(step: pd.Timedelta) -> str | None:
    """The frequency whose step is ``step`` (``None`` when none is)."""
    for name, spec in FREQUENCY_TABLE.items():
        if pd.Timedelta(spec.offset) == step:
            return name
    return None


def freq_offset(freq: str) -> pd.Timedelta:
    """The length of one step of ``freq``."""
    return pd.Timedelta(frequency(freq).offset)


def check_coin(coin: str) -> str:
    """``coin`` if it is a valid CoinGecko id, else a :class:`UsageError` saying what is."""
    if not _COIN_RE.fullmatch(coin):
        raise UsageError(f"invalid coin id {coin!r}: use CoinGecko ids like 'bitcoin'")
    return coin


def check_vs(vs: str) -> str:
    """``vs`` if it is a valid quote-currency code, else a :class:`UsageError`."""
    if not _VS_RE.fullmatch(vs):
        raise UsageError(f"invalid vs currency {vs!r}: use a code like 'usd'")
    return vs


@dataclass(frozen=True, order=True)
class SeriesId:
    """A price series: ``(coin, vs_currency, frequency)``, e.g. bitcoin-usd-1d."""

    coin: str
    vs: str
    freq: str

    def __post_init__(self) -> None:
        frequency(self.freq)
        check_coin(self.coin)
        check_vs(self.vs)

    @property
    def name(self) -> str:
        return f"{self.coin}-{self.vs}-{self.freq}"

    @property
    def raw(self) -> SeriesId:
        """The series whose raw file this one is built from (itself unless resampled)."""
        raw_freq = FREQUENCY_TABLE[self.freq].raw
        return self if raw_freq == self.freq else SeriesId(self.coin, self.vs, raw_freq)

    @classmethod
    def parse(cls, name: str) -> SeriesId:
        """Parse ``coin-vs-freq`` (the coin itself may contain dashes)."""
        parts = name.rsplit("-", 2)
        if len(parts) != 3:
            raise UsageError(f"invalid series name {name!r}: expected coin-vs-freq")
        return cls(*parts)

    def __str__(self) -> str:
        return self.name
