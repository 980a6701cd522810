"""Processed price files as the process stage writes them (only what readers need)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.series import SeriesId


def write_processed(
    data_dir: Path,
    y: pd.Series,
    series: SeriesId,
    *,
    train_start: pd.Timestamp | None = None,
    source: str | None = "sample",
    simulated: bool = True,
) -> Path:
    """``processed/<series>.csv`` and its meta; with a ``source``, the raw meta beside it too."""
    processed = data_dir / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "ds": y.index.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "price": y.to_numpy(),
            "imputed": False,
        }
    )
    path = processed / f"{series.name}.csv"
    frame.to_csv(path, index=False)
    start = train_start if train_start is not None else y.index[0]
    meta = {"series": series.name, "train_start": start.isoformat()}
    (processed / f"{series.name}.meta.json").write_text(json.dumps(meta), "utf-8")
    if source is not None:
        raw = data_dir / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        raw_meta = {"series": series.name, "source": source, "simulated": simulated}
        (raw / f"{series.name}.meta.json").write_text(json.dumps(raw_meta), "utf-8")
    return path
