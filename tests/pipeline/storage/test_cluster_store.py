"""The cycle with ``DATA_DIR`` and ``MODELS_DIR`` on a real S3 server, run three ways: in this
process, on a local cluster of 2 worker processes and on a ``dask scheduler`` / ``dask worker``
pair; twice each, the second time from an empty cache (a new machine). A fresh reader of each
store finds the same champions, the same forecast paths, the same data, and only versions that
verify.

Each run has its own bucket and its own ``STORAGE_CACHE_DIR``. The workers start with a
``STORAGE_CACHE_DIR`` of their own, as on other hosts: the driver's working copy is not theirs,
so each task pulls what it reads into its worker's working copy (the two processes of the local
cluster share one) and publishes what it writes with the worker's own settings (the ``S3_*``
variables it started with). Nothing the workers do reaches the driver but through the store.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.api.registry import load_registry
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.scheduling.cluster import Cluster
from pipeline.scheduling.cycle import run_cycle
from pipeline.scheduling.history import CycleRecord
from pipeline.storage.mirror import detach_all
from pipeline.storage.sync import before_read
from tests.helpers.cluster import MODELS, champions, sample_stages, small
from tests.helpers.s3 import S3Server

#: One shared hourly raw file (1h and 4h) and a daily one.
FREQUENCIES = ["1d", "1h", "4h"]


@pytest.fixture
def worker_env(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the worker processes start with: the S3 server's credentials (a worker
    publishes with its own settings) and a cache folder of their own, returned."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("STORAGE_CACHE_DIR", str(tmp_path / "worker-cache"))
    return tmp_path / "worker-cache"


@pytest.fixture
def local_cluster(worker_env: Path) -> Iterator[Cluster]:
    with Cluster(workers=2, budget_name="store-budget") as running:
        running.client()
        yield running


def store_settings(s3: S3Server, tmp: Path, name: str, bucket: str) -> Settings:
    """The quick cycle of the cluster tests, its data and models in ``bucket``, its working
    copies in ``tmp/name/cache``."""
    return small(
        tmp, name, coins=["bitcoin"], frequencies=FREQUENCIES,
        data_dir=f"s3://{bucket}/crypto/data", models_dir=f"s3://{bucket}/crypto/models",
        reports_dir=tmp / name / "reports", storage_cache_dir=tmp / name / "cache",
        **s3.settings(),
    )  # fmt: skip


def bucket_of(settings: Settings) -> str:
    url = settings.store_url("models_dir")
    assert url is not None and url.startswith("s3://")
    return url.split("/")[2]


def reader(s3: S3Server, tmp: Path, bucket: str) -> Settings:
    """A new machine's view of ``bucket``: an empty cache, one pull of models and data."""
    detach_all()
    settings = load_settings(
        coins=["bitcoin"], frequencies=FREQUENCIES, data_dir=f"s3://{bucket}/crypto/data",
        models_dir=f"s3://{bucket}/crypto/models", storage_cache_dir=tmp / f"reader-{bucket}",
        **s3.settings(),
    )  # fmt: skip
    assert not Path(settings.models_dir).exists()
    reports = before_read(settings)
    assert reports["models_dir"].versions and not reports["models_dir"].refused
    assert reports["data_dir"].files
    return settings


def forecast_paths(settings: Settings) -> dict[tuple[str, str, int], str]:
    """Every version's forecast path (each verified), by (series, model, cycle number)."""
    store = ArtifactStore(Path(settings.models_dir))
    out = {}
    for series in settings.series():
        for model in store.list_models(series):
            for i, version in enumerate(store.list_versions(series, model)):
                store.verify(series, model, version)
                text = (store.version_dir(series, model, version) / "forecast.csv").read_text()
                out[(series.name, model, i)] = text
    return out


def data_files(settings: Settings) -> dict[str, bytes]:
    """The raw and processed price files the reader pulled (not their ``.meta.json``)."""
    root = Path(settings.data_dir)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*.csv"))
        if not p.name.startswith(".")
    }


def unverified_versions(s3: S3Server, bucket: str) -> list[str]:
    """Every version folder in the bucket whose objects do not match its ``metadata.json``
    (a file missing, an extra file, a sha256 that differs), read straight from S3."""
    client = s3.client()
    folders: dict[str, dict[str, bytes]] = defaultdict(dict)
    for key in s3.keys(bucket):
        parts = key.removeprefix("crypto/models/").split("/")
        if key.startswith("crypto/models/") and len(parts) == 4:
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            folders["/".join(parts[:3])][parts[3]] = body
    assert folders, f"no model versions in {bucket}"
    bad = []
    for folder, files in sorted(folders.items()):
        meta = json.loads(files.pop("metadata.json", b"{}"))
        sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        if not meta.get("files") or meta["files"] != sums:
            bad.append(folder)
    return bad


def decisions(record: CycleRecord) -> list[tuple[str, str, str | None, dict[str, float]]]:
    return [
        (
            o.series,
            o.status,
            o.candidate,
            {k: v for k, v in o.metrics.items() if "seconds" not in k},
        )
        for o in record.series
    ]


@pytest.mark.slow
def test_the_cycle_on_s3_gives_the_same_champions_and_paths_on_every_executor(
    s3_server: S3Server,
    worker_env: Path,
    local_cluster: Cluster,
    dask_processes: str,  # after worker_env: the workers start with its environment
    tmp_path: Path,
) -> None:
    import distributed

    with distributed.Client(dask_processes, timeout="30s") as client:
        client.wait_for_workers(1, timeout=60)
    buckets = {name: s3_server.new_bucket() for name in ("local", "lc", "pair")}
    with Cluster(dask_processes, budget_name="store-pair-budget") as pair:
        executors = {"local": None, "lc": local_cluster, "pair": pair}

        def cycle(name: str, machine: str) -> CycleRecord:
            settings = store_settings(s3_server, tmp_path / machine, name, buckets[name])
            return run_cycle(
                settings, stages=sample_stages(), models=MODELS, cluster=executors[name]
            )

        records = {name: cycle(name, "first") for name in buckets}
        # The next cycle runs on a new machine (an empty cache): what the driver pulls from the
        # store (the data, the serving champions) is what its workers see.
        again = {name: cycle(name, "second") for name in buckets}

    assert records["local"].executor == "local"
    assert records["pair"].executor == dask_processes
    assert records["lc"].executor.startswith("tcp://127.0.0.1:")
    for name, record in records.items():
        assert [o.status for o in record.series] == ["promoted"] * 3, record.series
        serving = [f"{o.candidate}/{o.version}" for o in record.series]
        assert [o.serving for o in again[name].series] == serving, again[name].series
    assert decisions(records["lc"]) == decisions(records["pair"]) == decisions(records["local"])
    assert decisions(again["lc"]) == decisions(again["pair"]) == decisions(again["local"])
    runs = {n: store_settings(s3_server, tmp_path / "second", n, b) for n, b in buckets.items()}

    # A new machine reading each store: the champions, every forecast path and the data agree.
    readers = {name: reader(s3_server, tmp_path, bucket_of(s)) for name, s in runs.items()}
    served = {name: champions(s) for name, s in readers.items()}
    assert len(served["local"]) == 3
    assert served["lc"] == served["pair"] == served["local"]
    assert served["local"] == champions(runs["local"])  # what the driver's working copy holds
    registries = {name: load_registry(ArtifactStore(s.models_dir)) for name, s in readers.items()}
    assert all(not r.errors for r in registries.values())
    assert {name: r.champions for name, r in registries.items()} == {
        name: {series: model for series, (model, _) in served[name].items()} for name in readers
    }
    paths = {name: forecast_paths(s) for name, s in readers.items()}
    # two cycles of every model of every series, but garch on the 60 daily points (needs 100)
    assert len(paths["local"]) == 2 * (3 * len(MODELS) - 1)
    assert paths["local"] == forecast_paths(runs["local"])
    assert paths["lc"] == paths["pair"] == paths["local"]
    data = {name: data_files(s) for name, s in readers.items()}
    assert {"raw", "processed"} <= {key.split("/")[0] for key in data["local"]}
    assert data["lc"] == data["pair"] == data["local"]
    # Every version the workers published is complete and matches its metadata's sha256s.
    for settings in runs.values():
        assert unverified_versions(s3_server, bucket_of(settings)) == []
    # The workers worked in their own caches, never in the driver's working copy: what they
    # wrote reached the driver's second cycle and the readers through the store alone.
    first = {n: store_settings(s3_server, tmp_path / "first", n, b) for n, b in buckets.items()}
    for name in ("lc", "pair"):
        assert not list(Path(first[name].models_dir).glob("*/*/*/metadata.json")), name
        assert not list(Path(first[name].data_dir).rglob("*.csv")), name
        own = worker_store(worker_env, bucket_of(first[name]))
        assert champions(own) == served[name]
        assert forecast_paths(own) == paths[name]
        assert data_files(own) == data[name]
    assert not (worker_env / "s3" / buckets["local"]).exists()


def worker_store(cache: Path, bucket: str) -> Settings:
    """The working copies the workers filled for ``bucket`` under their own cache."""
    return load_settings(
        coins=["bitcoin"], frequencies=FREQUENCIES, data_dir=f"s3://{bucket}/crypto/data",
        models_dir=f"s3://{bucket}/crypto/models", storage_cache_dir=cache,
    )  # fmt: skip
