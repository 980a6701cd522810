"""One retraining cycle: promotion rules, failure isolation, timeouts, stops, one ingest per raw
file, and what a cycle leaves behind (history, metrics file, API reload, alert)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.errors import IngestError
from pipeline.scheduling import cycle
from pipeline.scheduling.cycle import Stages, run_cycle
from pipeline.scheduling.history import LockBusyError, cycle_lock, read_history
from pipeline.scheduling.metrics import METRICS_FILE
from pipeline.series import SeriesId
from tests.helpers.scheduling import (
    BTC,
    ETH,
    Calls,
    FakeTrainer,
    champion_bytes,
    fake_stages,
    good_metrics,
    metric_samples,
)

BTC_1H = SeriesId("bitcoin", "usd", "1h")
BTC_4H = SeriesId("bitcoin", "usd", "4h")


def test_cycle_promotes_records_and_exports_metrics(settings: Settings) -> None:
    metrics = {"naive": good_metrics(1.0), "drift": good_metrics(1.1)}
    record = run_cycle(settings, stages=fake_stages(FakeTrainer(metrics)), models=["naive"])

    assert record.status == "success"
    assert [o.status for o in record.series] == ["promoted"]
    champ = ArtifactStore(Path(settings.models_dir)).champion(BTC)
    assert champ is not None and champ.model == "naive"
    assert champ.version == record.series[0].version
    assert record.series[0].serving is None and record.series[0].stage is None

    history = read_history(settings)
    assert len(history) == 1 and history[0]["series"][0]["candidate"] == "naive"
    assert history[0]["run_id"] == record.run_id and history[0]["status"] == "success"

    text = (Path(settings.models_dir) / METRICS_FILE).read_text()
    samples = metric_samples(text)
    assert samples[("retrain_runs_total", (("outcome", "success"),))] == 1
    assert samples[("retrain_runs_total", (("outcome", "failure"),))] == 0
    assert samples[("retrain_promotions_total", (("series", "bitcoin-usd-1d"),))] == 1
    assert samples[("retrain_last_run_duration_seconds", ())] == record.duration_seconds


def test_failed_training_keeps_champion_and_records_why(settings: Settings) -> None:
    run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    before = champion_bytes(settings)

    def broken(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        raise RuntimeError("injected training crash")

    record = run_cycle(settings, stages=fake_stages(broken))

    assert record.status == "failure"
    assert record.series[0].stage == "train"
    assert record.series[0].reason == "train: injected training crash"
    assert champion_bytes(settings) == before
    assert read_history(settings)[-1]["status"] == "failure"


def test_candidate_failing_the_gate_is_not_promoted(settings: Settings) -> None:
    run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    before = champion_bytes(settings)
    # drift failed at one backtest origin: the gate's all_folds_fit rule stops the cycle
    bad = {"naive": good_metrics(1.0), "drift": good_metrics(0.9, winkler=50.0, failed=1)}

    record = run_cycle(settings, stages=fake_stages(FakeTrainer(bad)))

    outcome = record.series[0]
    assert outcome.status == "rejected"
    assert outcome.candidate == "naive"
    assert "quality gate failed: failed folds: drift 1 (threshold 0)" in outcome.reason
    assert outcome.serving is not None and outcome.serving.startswith("naive/")
    assert champion_bytes(settings) == before


def test_candidate_with_bad_coverage_is_rejected(settings: Settings) -> None:
    run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    before = champion_bytes(settings)
    metrics = {"naive": good_metrics(1.0, coverage=0.5)}
    record = run_cycle(settings, stages=fake_stages(FakeTrainer(metrics)))
    assert record.series[0].status == "rejected"
    assert "champion naive 95% coverage 0.500, band [0.85, 0.99]" in record.series[0].reason
    assert champion_bytes(settings) == before


def test_first_cycle_failing_the_gate_serves_the_naive_baseline(settings: Settings) -> None:
    metrics = {"naive": good_metrics(1.0, coverage=0.5), "drift": good_metrics(1.5)}
    record = run_cycle(settings, stages=fake_stages(FakeTrainer(metrics)))
    outcome = record.series[0]
    assert outcome.status == "promoted" and outcome.candidate == "naive"
    assert outcome.reason.startswith("bootstrap: no champion yet, serving naive; quality gate")
    assert outcome.metrics == metrics["naive"]
    champ = ArtifactStore(Path(settings.models_dir)).champion(BTC)
    assert champ is not None and champ.model == "naive" and champ.version == outcome.version


def test_candidate_worse_than_serving_champion_is_rejected(settings: Settings) -> None:
    first = {"naive": good_metrics(1.0, winkler=100.0), "drift": good_metrics(0.95, winkler=90.0)}
    run_cycle(settings, stages=fake_stages(FakeTrainer(first)))
    before = champion_bytes(settings)
    # drift's bands drifted out of calibration, so naive is the candidate; but naive is 5% worse
    # in MASE than the serving model (drift) on the same folds: the champion stays
    metrics = {"naive": good_metrics(1.0), "drift": good_metrics(0.95, coverage=0.6)}

    record = run_cycle(settings, stages=fake_stages(FakeTrainer(metrics)))

    assert record.series[0].candidate == "naive"
    assert record.series[0].status == "rejected"
    assert "worse than the serving champion's model drift" in record.series[0].reason
    assert champion_bytes(settings) == before


def test_timed_out_stage_never_changes_the_champion(settings: Settings) -> None:
    run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    before = champion_bytes(settings)
    slow_settings = settings.model_copy(update={"stage_timeout_seconds": 0.2})
    release = threading.Event()

    def slow(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        release.wait(5)
        return FakeTrainer({"naive": good_metrics(0.1)})(series, s, models)

    record = run_cycle(slow_settings, stages=fake_stages(slow))
    release.set()

    assert record.series[0].status == "failed"
    assert record.series[0].reason == "train: stage train timed out after 0.2 s"
    assert champion_bytes(settings) == before


def test_one_series_failing_does_not_stop_the_others(settings: Settings) -> None:
    def ingest(series: SeriesId, s: Settings) -> None:
        if series == ETH:
            raise ValueError("no such coin upstream")

    record = run_cycle(
        settings,
        stages=fake_stages(FakeTrainer({"naive": good_metrics()}), ingest=ingest),
        series_list=[ETH, BTC],
    )

    assert [(o.series, o.status) for o in record.series] == [
        ("ethereum-usd-1d", "failed"),
        ("bitcoin-usd-1d", "promoted"),
    ]
    assert record.series[0].stage == "ingest"
    assert record.series[0].reason == "ingest: no such coin upstream"
    assert record.status == "partial"


def test_transient_ingest_failure_is_retried(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cycle, "wait_exponential", lambda **kw: lambda state: 0)
    calls = Calls()

    def flaky(series: SeriesId, s: Settings) -> None:
        if len(calls.ingest) == 1:
            raise IngestError("HTTP 503 from upstream")

    trainer = FakeTrainer({"naive": good_metrics()})
    record = run_cycle(settings, stages=fake_stages(trainer, ingest=flaky, calls=calls))
    assert calls.ingest == [BTC, BTC]
    assert record.series[0].status == "promoted"


# -- each raw file is ingested once per cycle ----------------------------------------------------
def test_hourly_raw_file_is_ingested_once_for_1h_and_4h() -> None:
    settings = load_settings(coins=["bitcoin"], frequencies=["1h", "4h"])
    calls = Calls()
    trainer = FakeTrainer({"naive": good_metrics()})

    record = run_cycle(settings, stages=fake_stages(trainer, calls=calls))

    assert calls.ingest == [BTC_1H]  # the 4h series is built from the hourly file
    assert calls.process == [BTC_1H, BTC_4H]
    assert trainer.calls == [BTC_1H, BTC_4H]
    assert [(o.series, o.status) for o in record.series] == [
        ("bitcoin-usd-1h", "promoted"),
        ("bitcoin-usd-4h", "promoted"),
    ]


def test_every_raw_file_is_ingested_once_in_configuration_order() -> None:
    settings = load_settings(coins=["bitcoin", "ethereum"], frequencies=["4h", "1d", "1h"])
    calls = Calls()

    run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()}), calls=calls))

    assert [s.name for s in calls.ingest] == [
        "bitcoin-usd-1h",
        "bitcoin-usd-1d",
        "ethereum-usd-1h",
        "ethereum-usd-1d",
    ]
    assert len(calls.process) == 6


def test_a_failed_shared_ingest_fails_every_series_built_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cycle, "wait_exponential", lambda **kw: lambda state: 0)
    settings = load_settings(coins=["bitcoin"], frequencies=["1h", "4h", "1d"])
    calls = Calls()

    def hourly_down(series: SeriesId, s: Settings) -> None:
        if series.freq == "1h":
            raise IngestError("HTTP 503 from upstream")

    trainer = FakeTrainer({"naive": good_metrics()})
    record = run_cycle(settings, stages=fake_stages(trainer, ingest=hourly_down, calls=calls))

    # two attempts (the retry) for the hourly file, once for the daily one; never again for 4h
    assert calls.ingest == [BTC_1H, BTC_1H, BTC]
    assert [(o.series, o.status, o.stage, o.reason) for o in record.series] == [
        ("bitcoin-usd-1h", "failed", "ingest", "ingest: HTTP 503 from upstream"),
        ("bitcoin-usd-4h", "failed", "ingest", "ingest: HTTP 503 from upstream"),
        ("bitcoin-usd-1d", "promoted", None, record.series[2].reason),
    ]
    assert calls.process == [BTC] and trainer.calls == [BTC]
    assert record.status == "partial"


def test_default_stages_ingest_the_raw_series(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.ingest

    seen: list[SeriesId] = []
    monkeypatch.setattr(pipeline.ingest, "ingest_series", lambda s, st: seen.append(s))
    stages = cycle.default_stages()
    stages.ingest(BTC_1H, load_settings())
    assert seen == [BTC_1H]


# -- stop, lock ----------------------------------------------------------------------------------
def test_stop_request_stops_before_promotion(settings: Settings) -> None:
    stop = threading.Event()

    def train_then_stop(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        result = FakeTrainer({"naive": good_metrics()})(series, s, models)
        stop.set()  # as if SIGTERM arrived during training
        return result

    record = run_cycle(settings, stages=fake_stages(train_then_stop), stop=stop)
    assert record.status == "stopped"
    assert (record.series[0].stage, record.series[0].reason) == (
        "gate",
        "stop requested before gate",
    )
    assert not (Path(settings.models_dir) / BTC.name / "champion.json").exists()


def test_stop_before_a_series_skips_it(settings: Settings) -> None:
    stop = threading.Event()
    calls = Calls()

    def train_then_stop(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        stop.set()
        raise RuntimeError("interrupted")

    record = run_cycle(
        settings,
        stages=fake_stages(train_then_stop, calls=calls),
        stop=stop,
        series_list=[BTC, ETH],
    )
    assert [(o.series, o.status) for o in record.series] == [
        ("bitcoin-usd-1d", "failed"),
        ("ethereum-usd-1d", "stopped"),
    ]
    assert record.series[1].reason == "stop requested before this series"
    assert calls.ingest == [BTC]
    assert record.status == "stopped"


def test_lock_held_means_nothing_is_done(settings: Settings) -> None:
    trainer = FakeTrainer({"naive": good_metrics()})
    with cycle_lock(settings):
        with pytest.raises(LockBusyError, match="another retraining cycle is running"):
            run_cycle(settings, stages=fake_stages(trainer))
    assert trainer.calls == []
    assert read_history(settings) == []


def test_no_selection_backtest_means_no_promotion(settings: Settings) -> None:
    run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    before = champion_bytes(settings)

    def short(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        result = FakeTrainer({"naive": good_metrics(0.5)})(series, s, models)
        result.backtest = {}
        return result

    record = run_cycle(
        settings,
        stages=Stages(lambda s, st: None, lambda s, st: None, short),  # the real gate
    )
    assert record.series[0].status == "rejected"
    assert "no selection backtest" in record.series[0].reason
    assert champion_bytes(settings) == before


# -- what a cycle tells others -------------------------------------------------------------------
def test_failed_cycle_posts_an_alert(settings: Settings, recorder: Any) -> None:
    url, handler = recorder
    hooked = settings.model_copy(update={"alert_webhook_url": SecretStr(url + "/hook")})

    def broken(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        raise RuntimeError("boom")

    record = run_cycle(hooked, stages=fake_stages(broken))
    assert len(handler.received) == 1
    path, _, body = handler.received[0]
    assert path == "/hook"
    assert json.loads(body) == {
        "source": "retrain_scheduler",
        "run_id": record.run_id,
        "status": "failure",
        "problems": [{"series": "bitcoin-usd-1d", "status": "failed", "reason": "train: boom"}],
    }


def test_promotion_asks_the_api_to_reload(recorder: Any) -> None:
    url, handler = recorder
    wired = load_settings(
        coins=["bitcoin"], frequencies=["1d"], api_url=url, admin_api_key="s3cret"
    )
    record = run_cycle(wired, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    assert record.reloaded_api is True
    assert read_history(wired)[-1]["reloaded_api"] is True
    path, headers, _ = handler.received[0]
    assert path == "/model/reload"
    assert headers["X-Admin-Key"] == "s3cret"


def test_no_promotion_means_no_reload(settings: Settings, recorder: Any) -> None:
    url, handler = recorder
    wired = settings.model_copy(
        update={"api_url": url, "admin_api_key": load_settings(admin_api_key="k").admin_api_key}
    )

    def broken(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        raise RuntimeError("boom")

    record = run_cycle(wired, stages=fake_stages(broken))
    assert record.reloaded_api is None
    assert handler.received == []


def test_the_cycle_paces_coingecko_calls_and_records_the_wait(tmp_path: Path) -> None:
    from tests.helpers.cluster import FIXED_NOW, RateLimitedCoinGecko, coingecko_ingest

    coins = ["bitcoin", "ethereum", "tether"]
    fake = RateLimitedCoinGecko(coins=tuple(coins), now=FIXED_NOW).start()
    try:
        settings = load_settings(
            coins=coins, frequencies=["1d", "4h"], history_days=30, source="coingecko",
            coingecko_base_url=fake.base_url, coingecko_calls_per_minute=60, coingecko_burst=1,
        )  # fmt: skip
        stages = fake_stages(FakeTrainer({"naive": good_metrics()}), ingest=coingecko_ingest)
        record = run_cycle(settings, stages=stages, models=["naive"])
    finally:
        fake.stop()

    assert [o.status for o in record.series] == ["promoted"] * 6
    times = [t for t, _ in fake.arrivals]
    assert len(times) == 6  # one call per raw file: 1d and the hourly file behind 4h
    assert all(b - a >= 0.9 for a, b in zip(times, times[1:], strict=False))  # one a second
    # each raw file here feeds one series: the cycle's total is the sum of the series' waits
    assert record.ingest_wait_seconds == pytest.approx(
        sum(o.ingest_wait_seconds for o in record.series), abs=0.01
    )
    assert read_history(settings)[-1]["ingest_wait_seconds"] == record.ingest_wait_seconds
