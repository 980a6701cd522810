"""Ingestion: CoinGecko, CSV exports and an offline simulated sample -> ``data/raw/``.

Public API (the other stages use only these)::

    raw_path(data_dir, series) -> Path
    read_raw(path) -> DataFrame            # ds (UTC), price, market_cap, volume
    read_csv_export(path, freq=None) -> DataFrame
    ingest_series(series, settings, *, source=None, days=None, since=None) -> IngestResult
    ingest_many(series_list, settings, *, source=None, days=None, since=None)
        -> [(SeriesId, IngestResult | PipelineError)]   # continues past failures
    raw_series(settings) -> [SeriesId]     # settings.series() with 4h mapped to its 1h raw file
"""

from pipeline.ingest.csv_formats import SUPPORTED_FORMATS, read_csv_export
from pipeline.ingest.stage import IngestResult, ingest_many, ingest_series, raw_series
from pipeline.ingest.store import meta_path, raw_path, read_meta, read_raw

__all__ = [
    "SUPPORTED_FORMATS",
    "IngestResult",
    "ingest_many",
    "ingest_series",
    "meta_path",
    "raw_path",
    "read_csv_export",
    "read_meta",
    "read_raw",
    "raw_series",
]
