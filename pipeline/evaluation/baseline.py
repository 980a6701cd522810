"""The committed quality baseline (``quality_baseline.json``): what each model scored before.

One entry per series records the data it was computed on (a fingerprint of timestamps and
prices), the backtest protocol, the champion and, per model, :data:`BASELINE_METRICS`. The gate
(:mod:`pipeline.evaluation.gate`) compares a new run with it only on the same data and protocol
(:func:`check_comparable`); ``compare_models.py --write-baseline`` records an entry
(:func:`write_baseline`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import UsageError
from pipeline.fileio import atomic_write_json

BASELINE_SCHEMA = 1
#: Metrics recorded per model in the baseline.
BASELINE_METRICS = ("mase", "mae", "coverage_80", "coverage_95", "winkler_95", "wis")


def series_fingerprint(y: pd.Series) -> str:
    """sha256 of the timestamps and prices (rounded to 1e-8): identifies the evaluated data."""
    digest = hashlib.sha256()
    digest.update(np.asarray(y.index.asi8, dtype=np.int64).tobytes())
    digest.update(np.round(y.to_numpy(dtype=float), 8).tobytes())
    return digest.hexdigest()


def read_baseline(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline {path} not found: record one with --write-baseline") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"baseline {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        raise UsageError(f"baseline {path} has no 'series' mapping")
    return data


def baseline_entry(baseline: Mapping[str, Any], series: str, path: Path) -> dict[str, Any]:
    entry = baseline["series"].get(series)
    if entry is None:
        known = ", ".join(sorted(baseline["series"])) or "none"
        raise UsageError(
            f"baseline {path} has no entry for {series} (has: {known}); "
            "record one with --write-baseline"
        )
    return dict(entry)


def check_comparable(
    entry: Mapping[str, Any], protocol: Mapping[str, Any], fingerprint: str, path: Path
) -> None:
    """Raise a UsageError unless the run used the baseline's data and protocol."""
    if dict(entry.get("protocol", {})) != dict(protocol):
        raise UsageError(
            f"the backtest protocol differs from the baseline's in {path} "
            f"(baseline {entry.get('protocol')}, this run {dict(protocol)}): "
            "drop the protocol flags to reuse the baseline's, or record a new one"
        )
    if entry.get("data_fingerprint") != fingerprint:
        raise UsageError(
            f"the data differs from the data the baseline in {path} was computed on "
            f"({entry.get('data', 'unknown')}): compare on the same file, or record a new baseline"
        )


def write_baseline(
    path: Path,
    series: str,
    *,
    protocol: Mapping[str, Any],
    summary: Mapping[str, Mapping[str, float]],
    fingerprint: str,
    data: str,
    champion: str,
) -> None:
    """Add or replace ``series`` in the baseline file (other series are kept)."""
    current: dict[str, Any] = {"schema_version": BASELINE_SCHEMA, "series": {}}
    if path.exists():
        current = read_baseline(path)
    current["schema_version"] = BASELINE_SCHEMA
    current["series"][series] = {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": data,
        "data_fingerprint": fingerprint,
        "protocol": dict(protocol),
        "champion": champion,
        "models": {
            m: {k: round(float(row[k]), 6) for k in BASELINE_METRICS if k in row}
            for m, row in summary.items()
        },
    }
    atomic_write_json(path, current)


__all__ = [
    "BASELINE_METRICS",
    "BASELINE_SCHEMA",
    "baseline_entry",
    "check_comparable",
    "read_baseline",
    "series_fingerprint",
    "write_baseline",
]
