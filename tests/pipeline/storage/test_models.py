"""Model versions and champion pointers on a real S3 server (moto_server on 127.0.0.1)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.api.registry import RegistryHolder
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.errors import UsageError
from pipeline.storage.mirror import Mirror, attach_all
from pipeline.storage.pull import pull_models
from pipeline.storage.sync import describe
from pipeline.storage.url import StoreUrl
from tests.helpers.artifacts import write_version
from tests.helpers.s3 import SERIES, S3Server


def store_settings(s3: S3Server, bucket: str, cache: Path) -> Settings:
    return load_settings(
        models_dir=f"s3://{bucket}/team/models", storage_cache_dir=cache, **s3.settings()
    )


def open_models(settings: Settings) -> tuple[ArtifactStore, Mirror]:
    mirror = attach_all(settings)["models_dir"]
    return ArtifactStore(settings.models_dir), mirror


def test_urls_parse_and_bad_ones_are_refused(tmp_path: Path) -> None:
    settings = load_settings(models_dir="s3://bkt/a/b/", storage_cache_dir=tmp_path)
    assert settings.store_url("models_dir") == "s3://bkt/a/b"
    assert settings.models_dir == tmp_path / "s3" / "bkt" / "a" / "b"
    again = load_settings(**settings.model_dump())  # as a job's or a worker's process sees it
    assert again.store_url("models_dir") == "s3://bkt/a/b"
    root = load_settings(models_dir="s3://bkt", storage_cache_dir=tmp_path)
    assert root.store_url("models_dir") == "s3://bkt"
    assert load_settings(data_dir="data").store_url("data_dir") is None
    with pytest.raises(UsageError, match="MODELS_DIR.*unsupported object store 'gs'"):
        load_settings(models_dir="gs://bkt/x")
    with pytest.raises(UsageError, match="expected s3://bucket/prefix"):
        load_settings(data_dir="s3:///nobucket")
    with pytest.raises(UsageError, match=r"'\.' and '\.\.' are not allowed"):
        load_settings(reports_dir="s3://bkt/a/../b")
    assert str(StoreUrl.parse("s3://user:pw@bkt/p")) == "s3://bkt/p"  # no credentials


def test_publish_then_a_fresh_reader_pulls_and_loads_the_champion(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    writer, wmirror = open_models(store_settings(s3_server, bucket, tmp_path / "writer"))
    order: list[str] = []
    put = wmirror.objects.put_bytes
    wmirror.objects.put_bytes = lambda rel, data: (order.append(rel), put(rel, data))[1]  # type: ignore[method-assign]
    meta = write_version(writer, SERIES, "naive", promote=True)
    prefix = f"{SERIES.name}/naive/{meta.version}"
    # files first, metadata.json last, then the pointer
    assert order[-2:] == [f"{prefix}/metadata.json", f"{SERIES.name}/champion.json"]
    assert {f"{prefix}/{name}" for name in meta.files} == set(order[:-2])
    assert f"team/models/{prefix}/metadata.json" in s3_server.keys(bucket)

    reader, rmirror = open_models(store_settings(s3_server, bucket, tmp_path / "reader"))
    assert reader.champion(SERIES) is None  # nothing until the pull
    report = pull_models(rmirror)
    assert report.versions == [prefix] and report.pointers == [SERIES.name]
    pointer = reader.champion(SERIES)
    assert pointer is not None and (pointer.model, pointer.version) == ("naive", meta.version)
    loaded = reader.load(SERIES, "naive", meta.version)
    assert loaded.metadata.files == meta.files
    assert describe(reader.root) == f"s3://{bucket}/team/models"
    # nothing changed: the next poll is one listing and nothing else
    before = dict(rmirror.objects.requests)
    assert not pull_models(rmirror).changed
    assert {k: v - before.get(k, 0) for k, v in rmirror.objects.requests.items()} == {
        "list": 1,
        "get": 0,
    }


def test_incomplete_or_corrupt_versions_are_ignored_and_the_old_champion_stays(
    s3_server: S3Server, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer, _ = open_models(store_settings(s3_server, bucket, tmp_path / "writer"))
    old = write_version(writer, SERIES, "naive", promote=True)
    client = s3_server.client()
    base = f"team/models/{SERIES.name}"
    # a half-written version: its files but no metadata.json
    client.put_object(Bucket=bucket, Key=f"{base}/drift/20990101T000000000000Z-aaaaaa/forecast.csv",
                      Body=b"ds,mean\n")  # fmt: skip
    # a complete-looking version whose forecast was altered after its metadata was written
    bad = write_version(writer, SERIES, "drift")
    client.put_object(Bucket=bucket, Key=f"{base}/drift/{bad.version}/forecast.csv", Body=b"x\n")
    # and a pointer naming the corrupt version
    pointer = (writer.series_dir(SERIES) / "champion.json").read_text()
    hijacked = pointer.replace(old.version, bad.version).replace('"naive"', '"drift"')
    client.put_object(Bucket=bucket, Key=f"{base}/champion.json", Body=hijacked)

    reader, rmirror = open_models(store_settings(s3_server, bucket, tmp_path / "reader"))
    with caplog.at_level(logging.INFO, logger="pipeline.storage.pull"):
        report = pull_models(rmirror)
    assert report.versions == [f"{SERIES.name}/naive/{old.version}"]
    assert report.pointers == []
    text = caplog.text
    assert "no metadata.json yet (a publish under way, or one that crashed)" in text
    assert "forecast.csv: checksum mismatch" in text
    assert f"names drift/{bad.version}, which is not complete in the store" in text
    assert reader.list_versions(SERIES, "drift") == []
    # no champion pulled yet (the pointer names the corrupt version): the API serves nothing
    # rather than an unverified model; a good pointer is then taken at the next poll
    assert reader.champion(SERIES) is None
    client.put_object(Bucket=bucket, Key=f"{base}/champion.json", Body=pointer)
    assert pull_models(rmirror).pointers == [SERIES.name]
    champion = reader.champion(SERIES)
    assert champion is not None and champion.version == old.version


def test_the_api_registry_pulls_on_its_poll_and_prune_withdraws(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    writer, _ = open_models(store_settings(s3_server, bucket, tmp_path / "writer"))
    first = write_version(writer, SERIES, "naive", promote=True)
    reader, _ = open_models(store_settings(s3_server, bucket, tmp_path / "reader"))
    holder = RegistryHolder(reader)
    assert holder.load_initial().models[(SERIES.name, "naive")].version == first.version
    assert not holder.needs_reload()
    second = write_version(writer, SERIES, "drift", promote=True)
    assert holder.needs_reload()
    assert holder.reload().outcome == "success"
    assert holder.registry.champions == {SERIES.name: "drift"}
    assert holder.registry.models[(SERIES.name, "drift")].version == second.version

    third, fourth = write_version(writer, SERIES, "naive"), write_version(writer, SERIES, "naive")
    # the third naive version goes, from the store too (the first is the previous champion)
    assert [p.name for p in writer.prune(SERIES, keep=1)] == [third.version]
    listed = s3_server.keys(bucket)
    assert not any(third.version in key for key in listed)
    assert any(first.version in key for key in listed)
    assert any(f"{fourth.version}/metadata.json" in key for key in listed)


def test_a_new_issue_reaches_a_replica_through_the_store(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    from tests.helpers.serving import BTC_1H, build_models
    from tests.pipeline.api.test_registry import _reissue

    writer, _ = open_models(store_settings(s3_server, bucket, tmp_path / "writer"))
    champion = build_models(writer.root)[f"{BTC_1H.name}/drift"]
    reader, rmirror = open_models(store_settings(s3_server, bucket, tmp_path / "reader"))
    holder = RegistryHolder(reader)
    assert holder.load_initial().get(BTC_1H).origin == champion.training.last_ds
    origin = _reissue(writer, champion, hours=3, bump=1.01)
    assert holder.needs_reload()
    holder.reload()
    served = holder.registry.get(BTC_1H)
    assert (served.version, served.origin) == (champion.version, origin)
    # a tampered issue in the store is not pulled
    _reissue(writer, champion, hours=4, bump=1.02)
    issues = reader.series_dir(BTC_1H) / "drift" / champion.version / "issues"
    newest = sorted(p.name for p in (writer.series_dir(BTC_1H) / "drift" / champion.version
                                      / "issues").iterdir())[-1]  # fmt: skip
    key = f"team/models/{BTC_1H.name}/drift/{champion.version}/issues/{newest}/forecast.csv"
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=b"ds,mean\n")
    report = pull_models(rmirror)
    assert report.issues == [] and report.refused
    assert not (issues / newest).exists()
