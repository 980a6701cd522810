"""CSV exports as users download them, written from a price series."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_coingecko_export(path: Path, y: pd.Series) -> Path:
    """A CoinGecko "export CSV" (``snapped_at,price,market_cap,total_volume``) of daily ``y``."""
    lines = ["snapped_at,price,market_cap,total_volume"]
    lines += [f"{ds:%Y-%m-%d} 00:00:00 UTC,{p:.6f},0.0,0.0" for ds, p in y.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
