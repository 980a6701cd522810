"""The regular grid and the gap policy of processing (pure functions on a raw frame).

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

from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ProcessingError, UsageError
from pipeline.series import FREQUENCIES, freq_offset

RAW_COLUMNS = ("ds", "price", "market_cap", "volume")
#: At most this many gaps of each kind are listed in the reports.
MAX_LISTED_GAPS = 500


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
