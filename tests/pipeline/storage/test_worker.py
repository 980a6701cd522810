"""A cluster task's store-backed folders on a worker with a cache of its own (another host):
rebased onto that cache, attached, the task's files pulled (by concurrent pullers too), what it
writes published; a working copy that cannot be made fails the task with a StorageError."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.config import Settings, get_settings, load_settings
from pipeline.errors import StorageError
from pipeline.ingest.stage import ingest_series
from pipeline.process.stage import process_series, processed_path
from pipeline.storage.mirror import MARKER, attach_all, detach_all
from pipeline.storage.url import StoreUrl
from pipeline.storage.worker import task_settings
from tests.helpers.s3 import SERIES, S3Server

RAW = f"raw/{SERIES.name}"


def driver(s3: S3Server, bucket: str, cache: Path) -> Settings:
    """The driver's settings (its data on the store), after it ingested ``SERIES``."""
    settings = load_settings(
        data_dir=f"s3://{bucket}/data", models_dir=f"s3://{bucket}/models",
        reports_dir=cache / "reports", storage_cache_dir=cache, source="sample",
        history_days=120, **s3.settings(),
    )  # fmt: skip
    attach_all(settings)
    ingest_series(SERIES, settings)
    return settings


@pytest.fixture
def worker_cache(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a worker of another host: its own cache, the store's credentials, and
    none of the driver's working copies known."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_CACHE_DIR", str(tmp_path / "worker"))
    return tmp_path / "worker"


def test_a_task_works_in_its_own_cache_and_publishes_what_it_writes(
    s3_server: S3Server, bucket: str, tmp_path: Path, worker_cache: Path
) -> None:
    settings = driver(s3_server, bucket, tmp_path / "driver")
    detach_all()
    get_settings.cache_clear()
    here = task_settings(settings, models=[f"{SERIES.name}/"], data=[RAW])
    own = StoreUrl.parse(f"s3://{bucket}/data").local_copy(worker_cache)
    assert here.data_dir == own.resolve() != settings.data_dir
    assert here.models_dir == StoreUrl.parse(f"s3://{bucket}/models").local_copy(worker_cache)
    assert here.reports_dir == settings.reports_dir  # a local folder stays where it is
    assert here.store_url("data_dir") == f"s3://{bucket}/data"
    assert (own / MARKER).is_file() and (here.models_dir / MARKER).is_file()
    pulled = Path(own / "raw" / f"{SERIES.name}.csv")
    assert pulled.read_bytes() == (Path(settings.data_dir) / "raw" / pulled.name).read_bytes()
    assert not (own / "processed").exists()  # only what the task reads

    process_series(SERIES, here)  # written on the worker: published by the writer hook
    assert f"data/processed/{SERIES.name}.csv" in s3_server.keys(bucket)
    assert not processed_path(settings.data_dir, SERIES).exists()  # the driver's copy untouched


def test_concurrent_pulls_into_one_working_copy_all_succeed(
    s3_server: S3Server, bucket: str, tmp_path: Path, worker_cache: Path
) -> None:
    settings = driver(s3_server, bucket, tmp_path / "driver")
    detach_all()
    get_settings.cache_clear()
    results: list[Settings] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            results.append(task_settings(settings, data=[RAW]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(results) == 4
    assert len({r.data_dir for r in results}) == 1
    raw = Path(results[0].data_dir) / "raw" / f"{SERIES.name}.csv"
    assert raw.read_bytes() == (Path(settings.data_dir) / "raw" / raw.name).read_bytes()


def test_a_working_copy_that_cannot_be_made_fails_the_task(
    s3_server: S3Server,
    bucket: str,
    tmp_path: Path,
    worker_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = driver(s3_server, bucket, tmp_path / "driver")
    (tmp_path / "a-file").write_text("not a folder\n")
    monkeypatch.setenv("STORAGE_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    detach_all()
    get_settings.cache_clear()
    with pytest.raises(StorageError, match="DATA_DIR=s3://.*cannot be attached"):
        task_settings(settings, data=[RAW])
