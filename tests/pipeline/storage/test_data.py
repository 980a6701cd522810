"""Data files (raw, processed) and reports on a real S3 server: PUT whole after the local
atomic write; pulled when they changed; a cycle's reports published."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.errors import StorageError
from pipeline.ingest.stage import ingest_series
from pipeline.process.stage import process_series, processed_path
from pipeline.storage.mirror import attach_all, detach_all
from pipeline.storage.sync import after_run, before_read
from tests.helpers.s3 import SERIES, S3Server


def data_settings(s3: S3Server, bucket: str, cache: Path, **extra: object) -> Settings:
    return load_settings(
        data_dir=f"s3://{bucket}/data", reports_dir=f"s3://{bucket}/reports",
        models_dir=cache / "models", storage_cache_dir=cache, source="sample", history_days=120,
        **{**s3.settings(), **extra},
    )  # fmt: skip


def test_ingest_and_process_publish_and_a_reader_pulls_only_what_changed(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    writer = data_settings(s3_server, bucket, tmp_path / "writer")
    attach_all(writer)
    ingest_series(SERIES, writer)
    process_series(SERIES, writer)
    listed = s3_server.keys(bucket)
    assert f"data/raw/{SERIES.name}.csv" in listed and f"data/raw/{SERIES.name}.meta.json" in listed
    assert f"data/processed/{SERIES.name}.csv" in listed
    assert not any("breaker" in key or key.endswith("/.object-store.json") for key in listed)

    detach_all()
    reader = data_settings(s3_server, bucket, tmp_path / "reader")
    pulled = before_read(reader)["data_dir"]
    assert len(pulled.files) == 4
    local = processed_path(reader.data_dir, SERIES)
    assert local.read_bytes() == processed_path(writer.data_dir, SERIES).read_bytes()
    assert before_read(reader)["data_dir"].files == []  # nothing changed, nothing downloaded
    process_series(SERIES, reader)  # the reader's own rebuild is published too
    assert before_read(reader)["data_dir"].files == []


def test_reports_are_pushed_after_a_run_and_a_dead_store_is_a_clear_error(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    settings = data_settings(s3_server, bucket, tmp_path / "writer")
    attach_all(settings)
    report = settings.reports_dir / SERIES.name / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text("# results\n")
    assert after_run(settings) == [f"{SERIES.name}/report.md"]
    assert after_run(settings) == []  # unchanged: not sent again
    assert f"reports/{SERIES.name}/report.md" in s3_server.keys(bucket)

    detach_all()
    dead = data_settings(
        s3_server, "no-such-bucket", tmp_path / "dead", s3_endpoint_url="http://127.0.0.1:9"
    )
    attach_all(dead)
    with pytest.raises(StorageError, match=r"cannot write s3://no-such-bucket/data/raw/.*S3_END"):
        ingest_series(SERIES, dead)
