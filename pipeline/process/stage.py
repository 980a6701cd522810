"""Processing: raw prices -> a regular UTC series with a gap policy, features and a report.

``data/raw/<series>.csv`` (never modified) -> ``data/processed/<series>.csv`` plus
``data/processed/<series>.meta.json``, always rebuilt from raw and written atomically.

The regular grid (and ``4h`` from the hourly file) and the gap policy are
:func:`pipeline.process.grid.regularize`; this module reads the raw file, adds the features and
the stationarity report, writes the processed files and reads them back for training (checking
their sha256).
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

import pandas as pd

from pipeline.config import Settings
from pipeline.errors import PipelineError, ProcessingError
from pipeline.fileio import atomic_write_json, atomic_write_text, sha256_file
from pipeline.process.features import FEATURE_WINDOWS, RSI_PERIOD, add_features, feature_columns
from pipeline.process.grid import RAW_COLUMNS, regularize
from pipeline.process.stationarity import stationarity_report
from pipeline.series import FREQUENCIES, SeriesId
from pipeline.storage.publish import published_files

# A fixed name, so records read the same under `python -m pipeline.process` (``__main__``).
logger = logging.getLogger("pipeline.process.stage")

DS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

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
    published_files([path, _meta_path(path)])  # an s3:// DATA_DIR: each file one PUT
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
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_file.name} holds no JSON object")
        frame = pd.read_csv(path, usecols=["ds", "price"], dtype={"ds": "string"})
        train_start = pd.Timestamp(meta["train_start"])
        if pd.isna(train_start):
            raise ValueError("train_start is empty")
        if train_start.tzinfo is None:
            train_start = train_start.tz_localize("UTC")
        index = pd.DatetimeIndex(pd.to_datetime(frame["ds"], utc=True, format="ISO8601"), name="ds")
        price = pd.to_numeric(frame["price"]).astype("float64")
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        msg = f"{path}: unreadable processed data ({exc}); re-run `python -m pipeline.process`"
        raise ProcessingError(msg) from exc
    expected = meta.get("processed_sha256")
    if expected is not None and sha256_file(path) != expected:
        raise ProcessingError(
            f"{path}: does not match its meta file (checksum differs); re-run "
            "`python -m pipeline.process`"
        )
    _check_processed(path, index, price)
    y = pd.Series(price.to_numpy(), index=index, name="y")
    if not use_all:
        y = y.loc[y.index >= train_start]
    y = y.dropna()
    try:  # a regular index gets its freq; one with holes (use_all across a gap) keeps None
        y.index = pd.DatetimeIndex(y.index, freq=FREQUENCIES[series.freq])
    except ValueError:
        pass
    return y


def _check_processed(path: Path, index: pd.DatetimeIndex, price: pd.Series) -> None:
    """Refuse a processed file whose rows are not what the process stage writes."""
    problem = None
    if index.hasnans:
        problem = "a row has no timestamp"
    elif not (index.is_monotonic_increasing and index.is_unique):
        problem = "timestamps are not sorted and unique"
    elif (price.isin([float("inf"), float("-inf")]) | (price <= 0)).any():
        problem = "a price is infinite, zero or negative"
    if problem is not None:
        raise ProcessingError(f"{path}: {problem}; re-run `python -m pipeline.process`")
