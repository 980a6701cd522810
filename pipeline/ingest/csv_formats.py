"""Read the price CSVs users actually download, detecting the format from the header.

Supported formats (``SUPPORTED_FORMATS``):

- CryptoDataDownload exchange exports: a URL banner line, then
  ``unix,date,symbol,open,high,low,close,Volume <BASE>,Volume <QUOTE>[,tradecount]``,
  newest row first, ``unix`` in seconds or milliseconds (both occur, even in one file).
- CoinGecko "export CSV": ``snapped_at,price,market_cap,total_volume`` with timestamps like
  ``2021-12-31 00:00:00 UTC``.
- Binance klines (data.binance.vision), with or without the header ``open_time,open,high,low,
  close,volume,close_time,quote_volume,...``; ``open_time`` in s, ms or µs.
- Generic OHLCV: ``date|timestamp|time|datetime,open,high,low,close[,volume]``.

OHLCV rows become ``price = close`` at ``ds = the candle's open time`` as the file states it
(the exchanges' own convention); volume is the quote-currency volume when the file has one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import DataValidationError, UsageError
from pipeline.ingest.store import COLUMNS, normalize
from pipeline.series import FREQUENCIES, freq_offset

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = (
    "CryptoDataDownload export (URL banner line, then unix,date,symbol,open,high,low,close,"
    "Volume ...)",
    "CoinGecko export (snapped_at,price,market_cap,total_volume)",
    "Binance klines (open_time,open,high,low,close,volume,close_time,quote_volume,..., "
    "with or without that header)",
    "generic OHLCV (date|timestamp|time|datetime,open,high,low,close[,volume])",
)
_TIME_COLUMNS = ("timestamp", "date", "datetime", "time", "open_time", "unix")
_BINANCE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
]


@dataclass(frozen=True)
class _Layout:
    name: str
    skiprows: int
    header: bool
    time_col: str
    price_col: str
    market_cap_col: str | None
    volume_col: str | None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _volume_column(columns: list[str], symbol: str | None) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in ("quote_volume", "quote_asset_volume", "volume usd", "volume_usd"):
        if name in lower:
            break
    else:
        name = ""
    volumes = [c for c in columns if c.lower().startswith("volume ")]
    if symbol and "/" in symbol and volumes:
        quote = symbol.split("/")[-1].strip().lower()
        for col in volumes:
            if col.lower() == f"volume {quote}":
                return col
    if name:
        return lower[name]
    if volumes:
        return volumes[-1]
    return lower.get("volume")


def detect_format(path: Path) -> _Layout:
    """Work out the format from the first lines; unknown formats list the supported ones."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            lines = [fh.readline().strip() for _ in range(3)]
    except OSError as exc:
        raise UsageError(f"cannot read CSV {path}: {exc.strerror or exc}") from exc
    if not lines[0]:
        raise UsageError(f"CSV {path} is empty")
    skip = 0
    if "cryptodatadownload" in lines[0].lower() or "," not in lines[0]:
        skip = 1
    header = [h.strip() for h in lines[skip].split(",")]
    lower = [h.lower() for h in header]
    second = [v.strip() for v in lines[skip + 1].split(",")] if lines[skip + 1] else []
    symbol = None
    if "symbol" in lower and len(second) == len(header):
        symbol = second[lower.index("symbol")]

    def col(name: str) -> str:
        return header[lower.index(name)]

    if {"snapped_at", "price"} <= set(lower):
        return _Layout(
            "coingecko-export",
            skip,
            True,
            col("snapped_at"),
            col("price"),
            col("market_cap") if "market_cap" in lower else None,
            col("total_volume") if "total_volume" in lower else None,
        )
    if "close" in lower:
        time_name = next((t for t in _TIME_COLUMNS if t in lower), None)
        if "unix" in lower:
            time_name = "unix"  # more precise than CryptoDataDownload's `date`
        if time_name is not None:
            name = "cryptodatadownload" if skip or "unix" in lower else "ohlcv"
            if "open_time" in lower:
                name = "binance-klines"
            return _Layout(
                name,
                skip,
                True,
                col(time_name),
                col("close"),
                None,
                _volume_column(header, symbol),
            )
    if len(header) >= 6 and all(_is_number(v) for v in header[:6]):
        return _Layout("binance-klines", skip, False, "open_time", "close", None, "quote_volume")
    raise UsageError(
        f"unrecognised CSV format in {path} (header: {','.join(header)[:120]}); supported: "
        + "; ".join(SUPPORTED_FORMATS)
    )


def _parse_times(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        # per value: ns, µs, ms or s since the epoch (exports switch units mid-file)
        magnitude = numeric.abs()
        scale = np.select(
            [magnitude > 1e17, magnitude > 1e14, magnitude > 1e11], [1, 1e3, 1e6], default=1e9
        )
        ns = (numeric.to_numpy(dtype="float64") * scale).round().astype("int64")
        return pd.Series(pd.to_datetime(ns, unit="ns", utc=True), index=values.index)
    cleaned = text.str.replace(r"\s*UTC$", "", regex=True)
    return pd.to_datetime(cleaned, utc=True, format="ISO8601", errors="coerce")


def infer_freq(ds: pd.Series) -> str | None:
    """``1h`` or ``1d`` when the median spacing is one of those, else None."""
    diffs = ds.sort_values().diff().dropna()
    if diffs.empty:
        return None
    median = diffs.median()
    for freq in FREQUENCIES:
        if abs(median - freq_offset(freq)) <= freq_offset(freq) * 0.1:
            return freq
    return None


def read_csv_export(path: Path, freq: str | None = None) -> pd.DataFrame:
    """Read a supported export into ``ds,price,market_cap,volume`` (sorted, unique ``ds``).

    With ``freq`` (``1h``/``1d``) the file's spacing must match it and rows are snapped to the
    UTC grid (see :func:`pipeline.ingest.store.normalize`); without it the spacing is inferred
    and, when it is hourly or daily, the rows are snapped the same way.
    """
    path = Path(path)
    layout = detect_format(path)
    try:
        raw = pd.read_csv(
            path,
            skiprows=layout.skiprows,
            header=0 if layout.header else None,
            names=None if layout.header else _BINANCE_COLUMNS[: _count_fields(path, layout)],
            dtype=str,
            skipinitialspace=True,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"{path}: cannot parse as {layout.name} CSV: {exc}") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    if raw.empty:
        raise DataValidationError(f"{path}: no data rows")
    # index = line number in the file, so messages can point at the line
    raw.index = raw.index + layout.skiprows + (2 if layout.header else 1)
    frame = pd.DataFrame(
        {
            "ds": _parse_times(raw[layout.time_col]),
            "price": raw[layout.price_col],
            "market_cap": raw[layout.market_cap_col] if layout.market_cap_col else np.nan,
            "volume": raw[layout.volume_col] if layout.volume_col in raw else np.nan,
        },
        index=raw.index,
    )
    label = f"{path.name} ({layout.name})"
    detected = infer_freq(frame["ds"].dropna())
    if freq is not None and detected != freq:
        spacing = detected or "irregular/other"
        raise UsageError(
            f"{path}: rows are spaced {spacing}, but --freq is {freq}; "
            f"use --freq {detected} or a file with {freq} rows"
            if detected
            else f"{path}: rows are spaced {spacing}; only 1h or 1d exports can be ingested"
        )
    result = normalize(frame, freq or (detected if detected != "4h" else None), label)
    logger.info(
        "read %d rows from %s (%s, %s); %d unique after normalisation",
        len(frame),
        path,
        layout.name,
        detected or "irregular",
        len(result),
    )
    return result[COLUMNS]


def _count_fields(path: Path, layout: _Layout) -> int:
    with open(path, encoding="utf-8-sig") as fh:
        for _ in range(layout.skiprows):
            fh.readline()
        return min(len(fh.readline().split(",")), len(_BINANCE_COLUMNS))
