"""A retraining cycle with MODELS_DIR on a real S3 server: it pulls first, publishes what it
trains and promotes, and a replica then serves its champion."""

from __future__ import annotations

from pathlib import Path

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.scheduling.cycle import run_cycle
from pipeline.scheduling.refresh_job import run_refresh
from pipeline.storage.mirror import detach_all
from tests.helpers.s3 import S3Server, fresh_champion
from tests.helpers.scheduling import FakeTrainer, fake_stages, good_metrics


def cycle_settings(s3: S3Server, bucket: str, machine: Path) -> Settings:
    return load_settings(
        coins=["bitcoin"], frequencies=["1d"], stage_timeout_seconds=30,
        models_dir=f"s3://{bucket}/models", data_dir=machine / "data",
        reports_dir=machine / "reports", storage_cache_dir=machine / "cache", **s3.settings(),
    )  # fmt: skip


def test_a_cycle_publishes_and_the_next_machine_pulls_before_it_reads(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    settings = cycle_settings(s3_server, bucket, tmp_path / "one")
    record = run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    assert record.series[0].status == "promoted", record.series[0].reason
    promoted = ("naive", record.series[0].version)
    assert fresh_champion(s3_server, bucket, tmp_path / "replica") == promoted
    # a scheduler on a new machine (empty cache) sees the serving champion at its first cycle
    detach_all()
    other = cycle_settings(s3_server, bucket, tmp_path / "two")
    metrics = {"naive": good_metrics(mase=1.0), "drift": good_metrics(mase=0.5)}
    second = run_cycle(other, stages=fake_stages(FakeTrainer(metrics, champion="drift")))
    assert second.series[0].serving == f"naive/{promoted[1]}"
    assert second.series[0].status == "promoted"
    outcome = second.series[0]
    assert outcome.version != promoted[1]
    assert fresh_champion(s3_server, bucket, tmp_path / "replica2") == (
        outcome.candidate,
        outcome.version,
    )


def test_a_refresh_on_a_new_machine_pulls_the_serving_champion_first(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    settings = cycle_settings(s3_server, bucket, tmp_path / "one")
    record = run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    assert record.series[0].status == "promoted", record.series[0].reason
    detach_all()
    other = cycle_settings(s3_server, bucket, tmp_path / "two")
    series = other.series()[0]
    assert ArtifactStore(other.models_dir).champion(series) is None  # an empty cache
    run_refresh(other, stages=fake_stages(FakeTrainer({})))
    pointer = ArtifactStore(other.models_dir).champion(series)
    assert pointer is not None
    assert (pointer.model, pointer.version) == ("naive", record.series[0].version)
