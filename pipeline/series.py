"""Series identity and frequencies: one vocabulary across the code."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from pipeline.errors import UsageError

_COIN_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_VS_RE = re.compile(r"[a-z0-9]{2,10}")

#: Supported frequencies and their pandas offsets.
FREQUENCIES: dict[str, str] = {"1h": "1h", "4h": "4h", "1d": "1D"}


def freq_offset(freq: str) -> pd.Timedelta:
    """The length of one step of ``freq`` (``1h``, ``4h`` or ``1d``)."""
    if freq not in FREQUENCIES:
        raise UsageError(f"unknown frequency {freq!r}: use one of {', '.join(FREQUENCIES)}")
    return pd.Timedelta(FREQUENCIES[freq])


@dataclass(frozen=True, order=True)
class SeriesId:
    """A price series: ``(coin, vs_currency, frequency)``, e.g. bitcoin-usd-1d."""

    coin: str
    vs: str
    freq: str

    def __post_init__(self) -> None:
        freq_offset(self.freq)
        if not _COIN_RE.fullmatch(self.coin):
            raise UsageError(f"invalid coin id {self.coin!r}: use CoinGecko ids like 'bitcoin'")
        if not _VS_RE.fullmatch(self.vs):
            raise UsageError(f"invalid vs currency {self.vs!r}: use a code like 'usd'")

    @property
    def name(self) -> str:
        return f"{self.coin}-{self.vs}-{self.freq}"

    @classmethod
    def parse(cls, name: str) -> SeriesId:
        """Parse ``coin-vs-freq`` (the coin itself may contain dashes)."""
        parts = name.rsplit("-", 2)
        if len(parts) != 3:
            raise UsageError(f"invalid series name {name!r}: expected coin-vs-freq")
        return cls(*parts)

    def __str__(self) -> str:
        return self.name
