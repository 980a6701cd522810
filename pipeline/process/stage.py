"""Processing: raw prices -> a regular UTC series with a gap policy, features and a report.

``data/raw/<series>.csv`` (never modified) -> ``data/processed/<series>.csv`` plus
``data/processed/<series>.meta.json``, always rebuilt from raw and written atomically.

Grid and resampling
    Rows are placed on a regular UTC grid at the series frequency. Each grid point ``ds`` covers
    ``[ds, ds + step)`` (the exchange-candle convention): price and market cap are the last values
    in it, volume the sum. ``4h`` is built from the *hourly* raw file this way; a last 4h bucket
    that is not complete yet is dropped. Asking for a finer grid than the raw data has (e.g. ``1h``
    from daily data) is refused: we never invent intraday prices.
Gap policy
    A run of up to ``max_fill_gap`` missing steps is forward-filled (price only) and flagged
    ``imputed``. A longer gap is left missing (NaN price) and reported; ``train_start`` is the
    first ``ds`` after the last long gap: training uses only the data after it unless ``keep_all``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Settings
from pipeline.errors import PipelineError, ProcessingError, UsageError
from pipeline.fileio import atomic_write_json, atomic_write_text, sha256_file
from pipeline.process.features import FEATURE_WINDOWS, RSI_PERIOD, add_features, feature_columns
from pipeline.process.stationarity import stationarity_report
from pipeline.series import FREQUENCIES, SeriesId, freq_offset

# A fixed name, so records read the same under `python -m pipeline.process` (``__main__``).
logger = logging.getLogger("pipeline.process.stage")

RAW_COLUMNS = ("ds", "price", "market_cap", "volume")
DS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: At most this many gaps of each kind are listed in the reports.
MAX_LISTED_GAPS = 500

__all__ = [
    "ProcessResult",
    "add_features",
    "load_training_series",
    "process_series",
    "processed_path",
    "raw_source_path",
    "regularize",
]


@dataclass(frozen=True)
class ProcessResult:
    """What :func:`process_series` wrote and found."""

    series: SeriesId
    path: Path
    meta_path: Path
    rows: int
    imputed: int
    long_gaps: int
    train_start: pd.Timestamp
    training_rows: int
    d: int | None
    meta: dict[str, Any]


# -- paths and reading ---------------------------------------------------------------------------
def processed_path(data_dir: Path, series: SeriesId) -> Path:
    """``<data_dir>/processed/<series>.csv``."""
    return Path(data_dir) / "processed" / f"{series.name}.csv"


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".csv") + ".meta.json")


def raw_source_path(data_dir: Path, series: SeriesId) -> Path:
    """The raw file a series is built from (the hourly one for ``4h``)."""
    source = series.raw
    return Path(data_dir) / "raw" / f"{source.name}.csv"


def _read_raw(path: Path, data: bytes | None = None) -> pd.DataFrame:
    """Read a raw file: ``ds`` as UTC timestamps, price, market cap and volume as floats.

    Same semantics as ``pipeline.ingest.read_raw``, kept local so processing depends only on
    the raw file format; errors become :class:`ProcessingError` naming the file. ``data`` is
    the file's content when the caller has already read it.
    """
    try:
        source = io.BytesIO(data) if data is not None else path
        frame = pd.read_csv(source, dtype={"ds": "string"})
        missing = [c for c in RAW_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        frame["ds"] = pd.to_datetime(frame["ds"], utc=True, format="ISO8601")
        for column in RAW_COLUMNS[1:]:
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
    except (OSError, ValueError, TypeError) as exc:
        raise ProcessingError(
            f"{path}: unreadable raw file ({exc}); move it away and run `python -m pipeline.ingest`"
        ) from exc
    return frame[list(RAW_COLUMNS)]


# -- regular grid and gap policy -----------------------------------------------------------------
def _infer_raw_step(ds: pd.Series) -> pd.Timedelta | None:
    """The raw data's resolution: the supported frequency closest (in ratio) to the lower
    quartile of the time differences, so gaps and the odd off-grid row do not change it."""
    diffs = ds.diff().dropna()
    if diffs.empty:
        return None
    typical = max(pd.Timedelta(diffs.quantile(0.25)).total_seconds(), 1.0)
    steps = [freq_offset(f) for f in FREQUENCIES]
    return min(steps, key=lambda s: abs(np.log(s.total_seconds() / typical)))


def _to_grid(raw: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, pd.Timedelta | None, bool]:
    """Bucket raw rows onto the grid; return (frame, raw step, whether a last bucket was cut)."""
    step = freq_offset(freq)
    frame = raw.loc[raw["price"].notna(), list(RAW_COLUMNS)].copy()
    if frame.empty:
        raise ProcessingError("no prices in the raw data: nothing to process")
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
    frame = frame.sort_values("ds", kind="stable").drop_duplicates("ds", keep="last")
    prices = frame["price"].to_numpy()
    if not np.all(np.isfinite(prices)) or np.any(prices <= 0):
        bad = frame.loc[~(np.isfinite(prices) & (prices > 0)), "ds"].iloc[0]
        raise ProcessingError(f"raw price at {bad.isoformat()} is not a positive number")
    raw_step = _infer_raw_step(frame["ds"])
    if raw_step is not None and raw_step > step:
        raise UsageError(
            f"cannot build a {freq} series from raw data spaced {raw_step} apart: that would be "
            f"upsampling; process a frequency of {raw_step} or coarser, or ingest finer data"
        )
    grouped = frame.set_index("ds").resample(FREQUENCIES[freq], closed="left", label="left")
    out = pd.DataFrame(
        {
            "price": grouped["price"].last(),
            "market_cap": grouped["market_cap"].last(),
            "volume": grouped["volume"].sum(min_count=1),
        }
    )
    cut = False
    if raw_step is not None and raw_step < step and len(out) > 1:
        # Downsampling: the last bucket is complete only once its last sub-step is observed.
        if out.index[-1] + step - raw_step > frame["ds"].iloc[-1]:
            out = out.iloc[:-1]
            cut = True
    out = out.loc[: out["price"].last_valid_index()]
    out.index = out.index.rename("ds")
    return out.reset_index(), raw_step, cut


def _missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions of each run of True in ``missing``."""
    edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def regularize(
    raw: pd.DataFrame, freq: str, max_fill_gap: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Put ``raw`` on a regular UTC grid at ``freq`` and apply the gap policy (pure).

    Returns the frame (``ds, price, market_cap, volume, imputed``; one row per grid step) and a
    gap report: ``gaps`` (short, filled) and ``long_gaps`` (each with ``start``, ``end`` and
    ``missing_steps``; the last 500 of each, with exact counts), ``imputed``, ``train_start``
    and grid details.
    """
    if max_fill_gap < 0:
        raise UsageError(f"max_fill_gap must be >= 0, got {max_fill_gap}")
    frame, raw_step, cut = _to_grid(raw, freq)
    missing = frame["price"].isna().to_numpy()
    imputed = np.zeros(len(frame), dtype=bool)
    short_gaps, long_gaps = [], []
    for first, last in _missing_runs(missing):
        gap = {
            "start": frame["ds"].iloc[first].isoformat(),
            "end": frame["ds"].iloc[last].isoformat(),
            "missing_steps": int(last - first + 1),
        }
        if last - first + 1 <= max_fill_gap:
            imputed[first : last + 1] = True
            short_gaps.append(gap)
        else:
            long_gaps.append(gap)
    filled = frame["price"].ffill()
    frame["price"] = frame["price"].where(~imputed, filled)
    frame["imputed"] = imputed
    train_start = frame["ds"].iloc[0]
    if long_gaps:
        after = frame["ds"] > pd.Timestamp(long_gaps[-1]["end"])
        train_start = frame.loc[after, "ds"].iloc[0]
    report: dict[str, Any] = {
        "freq": freq,
        "raw_step": str(raw_step) if raw_step is not None else None,
        "resampled": bool(raw_step is not None and raw_step < freq_offset(freq)),
        "incomplete_last_bucket_dropped": cut,
        "max_fill_gap": max_fill_gap,
        "rows": len(frame),
        "first_ds": frame["ds"].iloc[0].isoformat(),
        "last_ds": frame["ds"].iloc[-1].isoformat(),
        "imputed": int(imputed.sum()),
        "missing": int(frame["price"].isna().sum()),
        "short_gap_count": len(short_gaps),
        "long_gap_count": len(long_gaps),
        # The most recent gaps (the counts above are exact).
        "gaps": short_gaps[-MAX_LISTED_GAPS:],
        "long_gaps": long_gaps[-MAX_LISTED_GAPS:],
        "train_start": train_start.isoformat(),
    }
    return frame, report


# -- the stage -----------------------------------------------------------------------------------
def _read_raw_meta(raw_file: Path) -> dict[str, Any]:
    meta_file = _meta_path(raw_file)
    try:
        data = json.loads(meta_file.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in ("source", "simulated", "last_ingest_at") if k in data}


def process_series(
    series: SeriesId, settings: Settings, *, keep_all: bool = False
) -> ProcessResult:
    """Rebuild ``data/processed/<series>.csv`` and its ``.meta.json`` from the raw file.

    ``keep_all`` records ``train_start`` as the first row even after a long gap.
    Raises :class:`ProcessingError` when the raw file is missing or unusable.
    """
    raw_file = raw_source_path(settings.data_dir, series)
    if not raw_file.is_file():
        raise ProcessingError(
            f"{raw_file}: raw file not found; run `python -m pipeline.ingest --coin {series.coin} "
            f"--vs {series.vs} --freq {series.raw.freq}` first"
        )
    content = raw_file.read_bytes()  # hash exactly the bytes we parse
    raw_sha = hashlib.sha256(content).hexdigest()
    raw = _read_raw(raw_file, content)
    try:
        frame, gaps = regularize(raw, series.freq, settings.max_fill_gap)
    except PipelineError as exc:
        raise type(exc)(f"{series.name} (from {raw_file}): {exc}") from exc
    frame = add_features(frame, series.freq)
    after_gaps = pd.Timestamp(gaps["train_start"])
    train_start = frame["ds"].iloc[0] if keep_all else after_gaps
    training = frame.loc[frame["ds"] >= train_start].set_index("ds")["price"].dropna()
    # Test the unbroken run that training sees by default (after the last long gap).
    stationarity = stationarity_report(
        frame.loc[frame["ds"] >= after_gaps].set_index("ds")["price"]
    )

    out = frame.copy()
    out["ds"] = out["ds"].dt.strftime(DS_FORMAT)
    text = out.to_csv(index=False, lineterminator="\n")
    path = processed_path(settings.data_dir, series)
    meta: dict[str, Any] = {
        "series": series.name,
        "freq": series.freq,
        "processed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "raw_file": str(raw_file),
        "raw_sha256": raw_sha,
        "raw_rows": len(raw),
        **_read_raw_meta(raw_file),
        **{k: v for k, v in gaps.items() if k != "train_start"},
        "train_start": train_start.isoformat(),
        "train_start_after_long_gaps": after_gaps.isoformat(),
        "keep_all": keep_all,
        "training_rows": len(training),
        "features": {
            "columns": feature_columns(series.freq),
            "windows": list(FEATURE_WINDOWS[series.freq]),
            "rsi_period": RSI_PERIOD,
        },
        "stationarity": stationarity,
    }
    atomic_write_text(path, text)
    # Readers check this, so a processed file that does not match its meta file is refused.
    meta["processed_sha256"] = sha256_file(path)
    atomic_write_json(_meta_path(path), meta)
    _log_result(series, meta)
    return ProcessResult(
        series=series,
        path=path,
        meta_path=_meta_path(path),
        rows=len(frame),
        imputed=gaps["imputed"],
        long_gaps=gaps["long_gap_count"],
        train_start=train_start,
        training_rows=len(training),
        d=stationarity["d"],
        meta=meta,
    )


def _log_result(series: SeriesId, meta: dict[str, Any]) -> None:
    st = meta["stationarity"]
    if meta["long_gaps"]:
        last = meta["long_gaps"][-1]
        logger.warning(
            "%s: %d gap(s) longer than max_fill_gap=%d steps, the last from %s to %s "
            "(%d steps); %s",
            series.name,
            meta["long_gap_count"],
            meta["max_fill_gap"],
            last["start"],
            last["end"],
            last["missing_steps"],
            "keeping all data (--keep-all)" if meta["keep_all"] else "training starts after it",
            extra={"series": series.name},
        )

    def pv(part: str, test: str) -> str:
        value = st[part].get(f"{test}_pvalue")
        return "n/a" if value is None else f"{value:.3g}"

    logger.info(
        "processed %s: %d rows (%d imputed, %d long gaps), train_start %s; stationarity: "
        "log price ADF p=%s KPSS p=%s, log returns ADF p=%s KPSS p=%s -> d=%s",
        series.name,
        meta["rows"],
        meta["imputed"],
        meta["long_gap_count"],
        meta["train_start"],
        pv("log_price", "adf"),
        pv("log_price", "kpss"),
        pv("log_return", "adf"),
        pv("log_return", "kpss"),
        st["d"],
        extra={"series": series.name, "rows": meta["rows"], "d": st["d"]},
    )


# -- reading processed data ----------------------------------------------------------------------
def load_training_series(data_dir: Path, series: SeriesId, *, use_all: bool = False) -> pd.Series:
    """The processed price series ``y`` (index ``ds``, UTC) that training should use.

    Only points from ``train_start`` on (recorded in the meta file) unless ``use_all``; rows
    inside a long gap (NaN price) are always excluded, so with ``use_all`` the index can have
    holes (``freq`` is then ``None``); otherwise it is regular with ``freq`` set.
    """
    path = processed_path(data_dir, series)
    meta_file = _meta_path(path)
    if not path.is_file() or not meta_file.is_file():
        raise ProcessingError(
            f"{path}: processed data not found; run `python -m pipeline.process --coin "
            f"{series.coin} --vs {series.vs} --freq {series.freq}` first"
        )
    try:
        meta = json.loads(meta_file.read_text("utf-8"))
        frame = pd.read_csv(path, usecols=["ds", "price"])
        train_start = pd.Timestamp(meta["train_start"])
    except (OSError, ValueError, KeyError) as exc:
        msg = f"{path}: unreadable processed data ({exc}); re-run `python -m pipeline.process`"
        raise ProcessingError(msg) from exc
    y = pd.Series(
        frame["price"].to_numpy(dtype=float),
        index=pd.DatetimeIndex(pd.to_datetime(frame["ds"], utc=True), name="ds"),
        name="y",
    )
    expected = meta.get("processed_sha256")
    if expected is not None and sha256_file(path) != expected:
        raise ProcessingError(
            f"{path}: does not match its meta file (checksum differs); re-run "
            "`python -m pipeline.process`"
        )
    if not use_all:
        y = y.loc[y.index >= train_start]
    y = y.dropna()
    try:  # a regular index gets its freq; one with holes (use_all across a gap) keeps None
        y.index = pd.DatetimeIndex(y.index, freq=FREQUENCIES[series.freq])
    except ValueError:
        pass
    return y
