"""The processed data the API shows (``/data/latest``) and checks (``/health/detailed``).

:class:`DataCache` reads ``data/processed/<series>.csv`` only after the process stage's own
reader has accepted it (:func:`pipeline.process.stage.load_training_series`: the file must match
the checksum its meta file records), and keeps the frame until the file's size or mtime change.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.api.errors import NotServedError
from pipeline.api.wire import iso
from pipeline.errors import PipelineError
from pipeline.process.stage import load_training_series, processed_path
from pipeline.series import SeriesId, freq_offset

logger = logging.getLogger(__name__)

#: Data is "stale" when its last point is older than this many steps of its frequency.
FRESHNESS_STEPS = 3


class DataCache:
    """Reads processed files defensively (checksum verified), cached by file size and mtime."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._cache: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}

    def path(self, series: SeriesId) -> Path:
        return processed_path(self.data_dir, series)

    def frame(self, series: SeriesId) -> pd.DataFrame:
        """The processed frame: NotServedError when missing, PipelineError when unusable."""
        path = self.path(series)
        try:
            stat = path.stat()
        except FileNotFoundError:
            folder = path.parent
            available = (
                sorted(p.stem for p in folder.glob("*.csv") if p.is_file())
                if folder.is_dir()
                else []
            )
            raise NotServedError(
                f"no processed data for {series.name} (run the pipeline: python -m pipeline); "
                f"available: {', '.join(available) or 'none'}",
                available,
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            # The process stage's reader: refuses a file without its meta file or whose
            # checksum differs from the one recorded there.
            load_training_series(self.data_dir, series, use_all=True)
        except PipelineError as exc:
            raise PipelineError(f"processed data for {series.name} is not usable: {exc}") from exc
        try:
            frame = pd.read_csv(path)
            frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
            frame["price"] = frame["price"].astype(float)
        except (OSError, ValueError, KeyError) as exc:
            raise PipelineError(f"processed data for {series.name} is unreadable: {exc}") from exc
        if frame.empty:
            raise PipelineError(f"processed data for {series.name} is empty")
        self._cache[path] = (stamp, frame)
        return frame

    def latest(self, series: SeriesId, limit: int) -> dict[str, Any]:
        frame = self.frame(series)
        tail = frame.tail(limit)
        rows = []
        has_imputed = "imputed" in tail.columns
        for rec in tail.itertuples(index=False):
            row: dict[str, Any] = {"ds": iso(rec.ds), "price": float(rec.price)}
            if has_imputed:
                row["imputed"] = _as_bool(rec.imputed)
            rows.append(row)
        last = frame["ds"].iloc[-1]
        return {
            "series": series.name,
            "rows": rows,
            "last_ds": iso(last),
            "rows_total": len(frame),
            "age_seconds": round((pd.Timestamp.now(tz="UTC") - last).total_seconds(), 3),
        }

    def freshness(self, series: SeriesId) -> dict[str, Any]:
        """Age of the last point vs the expected frequency: ok, stale, missing or unreadable."""
        try:
            frame = self.frame(series)
        except NotServedError:
            return {"status": "missing", "path": f"processed/{series.name}.csv"}
        except PipelineError as exc:
            return {"status": "unreadable", "error": str(exc)}
        last = frame["ds"].iloc[-1]
        age = (pd.Timestamp.now(tz="UTC") - last).total_seconds()
        limit = FRESHNESS_STEPS * freq_offset(series.freq).total_seconds()
        return {
            "status": "ok" if age <= limit else "stale",
            "last_ds": iso(last),
            "age_seconds": round(age, 1),
            "max_age_seconds": limit,
        }


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    if isinstance(value, int | float | np.integer | np.floating):
        return None if (isinstance(value, float) and math.isnan(value)) else bool(value)
    return None
