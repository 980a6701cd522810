"""The in-memory registry: loading, pre-serialised answers, confidence score, atomic reloads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.api.registry import (
    DataCache,
    NotServedError,
    RegistryHolder,
    StepsError,
    confidence_score,
    load_registry,
    store_signature,
)
from pipeline.api.schemas import CompatPredictResponse, PredictResponse
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import BTC_1D, BTC_1H, build_models, read_forecast, tamper, write


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "models")


def test_confidence_score_follows_the_lognormal_rule() -> None:
    mean, lo, hi, last = 105.0, 90.0, 122.0, 100.0
    sd = (math.log(hi) - math.log(lo)) / (2 * 1.959964)
    p_up = 1 - stats.norm.cdf(math.log(last), loc=math.log(mean), scale=sd)
    assert confidence_score(mean, lo, hi, last) == pytest.approx(p_up, rel=1e-9)
    # A predicted fall scores the probability of falling.
    p_up_down = 1 - stats.norm.cdf(math.log(last), loc=math.log(95.0), scale=sd)
    assert confidence_score(95.0, lo, hi, last) == pytest.approx(1 - p_up_down, rel=1e-9)
    assert confidence_score(100.0, lo, hi, last) == pytest.approx(0.5)
    assert confidence_score(101.0, 101.0, 101.0, last) == 1.0  # no uncertainty, a rise
    # The wider the distribution, the weaker the view on the direction.
    wide, narrow = (
        confidence_score(150.0, 10.0, 2000.0, last),
        confidence_score(150.0, 140, 160, 100),
    )
    assert 0.5 < wide < narrow <= 1.0


def test_registry_loads_champions_and_latest_of_other_models(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    newer_naive = write(store, BTC_1D, "naive", seed=1)  # latest, not promoted
    registry = load_registry(store)
    assert registry.errors == []
    assert registry.champions == {BTC_1D.name: "drift", BTC_1H.name: "drift"}
    assert registry.get(BTC_1D).version == metas[f"{BTC_1D.name}/drift"].version
    assert registry.get(BTC_1D).is_champion
    naive = registry.get(BTC_1D, "naive")
    assert naive.version == newer_naive.version and not naive.is_champion
    models = json.loads(registry.models_json)
    assert len(models["models"]) == 4


def test_predict_json_slices_the_precomputed_path(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    served = load_registry(store).get(BTC_1H)
    body = PredictResponse.model_validate_json(served.predict_json(5))
    frame = read_forecast(store, metas[f"{BTC_1H.name}/drift"])
    assert [p.step for p in body.forecasts] == [1, 2, 3, 4, 5]
    assert [p.mean for p in body.forecasts] == pytest.approx(frame["mean"][:5].tolist())
    assert [p.upper_95 for p in body.forecasts] == pytest.approx(frame["upper_95"][:5].tolist())
    assert body.forecasts[0].timestamp == pd.Timestamp(frame["ds"][0]).to_pydatetime()
    assert body.predicted_price == pytest.approx(frame["mean"][0])
    assert body.horizon == 48 and body.model == "drift" and body.is_champion
    only80 = PredictResponse.model_validate_json(served.predict_json(2, [80]))
    assert only80.forecasts[0].lower_95 is None and only80.forecasts[0].lower_80 is not None
    compat = CompatPredictResponse.model_validate_json(served.compat_json(3, 80))
    assert compat.predictions == pytest.approx(frame["mean"][:3].tolist())
    assert [c.lower for c in compat.confidence_intervals] == pytest.approx(
        frame["lower_80"][:3].tolist()
    )
    with pytest.raises(StepsError, match="the maximum is 48"):
        served.predict_json(49)


def test_lookup_errors_list_what_is_available(store: ArtifactStore) -> None:
    build_models(store.root)
    registry = load_registry(store)
    with pytest.raises(NotServedError, match="available series: bitcoin-usd-1d, bitcoin-usd-1h"):
        registry.get(BTC_1D.__class__("ethereum", "usd", "1d"))
    with pytest.raises(NotServedError) as info:
        registry.get(BTC_1D, "prophet")
    assert info.value.available == ["champion", "drift", "naive"]


def test_failed_champion_keeps_the_previous_one(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    holder = RegistryHolder(store)
    holder.load_initial()
    bad = write(store, BTC_1D, "naive", seed=2, promote=True)
    tamper(store, bad)
    result = holder.reload()
    assert result.outcome == "failure"
    assert any("checksum mismatch" in f for f in result.failures)
    champion = holder.registry.get(BTC_1D)
    assert (champion.model, champion.version) == ("drift", metas[f"{BTC_1D.name}/drift"].version)
    # The old naive (non-champion) version is kept too, flagged correctly.
    naive = holder.registry.get(BTC_1D, "naive")
    assert naive.version == metas[f"{BTC_1D.name}/naive"].version and not naive.is_champion


def test_reload_swaps_and_reports_changes(store: ArtifactStore) -> None:
    build_models(store.root)
    holder = RegistryHolder(store)
    old = holder.load_initial()
    assert not holder.needs_reload()
    new = write(store, BTC_1H, "naive", seed=3, promote=True)
    assert holder.needs_reload()
    result = holder.reload()
    assert result.outcome == "success"
    assert holder.registry is not old
    assert holder.registry.get(BTC_1H).version == new.version
    assert any(c.startswith(f"{BTC_1H.name}/naive:") for c in result.changed)
    # The old snapshot is untouched: in-flight requests holding it answer consistently.
    assert old.get(BTC_1H).model == "drift"
    assert store_signature(store) == holder.registry.signature


def test_empty_store_gives_an_empty_registry(store: ArtifactStore) -> None:
    registry = load_registry(store)
    assert registry.empty
    with pytest.raises(NotServedError, match="no artifacts"):
        registry.get(BTC_1D)


def test_data_cache_reads_processed_files_defensively(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "data")
    with pytest.raises(NotServedError, match="no processed data for bitcoin-usd-1d"):
        cache.frame(BTC_1D)
    assert cache.freshness(BTC_1D)["status"] == "missing"
    folder = tmp_path / "data" / "processed"
    folder.mkdir(parents=True)
    now = pd.Timestamp.now(tz="UTC").floor("D")
    ds = pd.date_range(end=now, periods=5, freq="1D")
    frame = pd.DataFrame(
        {"ds": ds.strftime("%Y-%m-%dT%H:%M:%SZ"), "price": np.arange(5) + 100.0, "imputed": False}
    )
    frame.to_csv(folder / f"{BTC_1D.name}.csv", index=False)
    latest = cache.latest(BTC_1D, 2)
    assert [r["price"] for r in latest["rows"]] == [103.0, 104.0]
    assert latest["rows_total"] == 5 and latest["rows"][0]["imputed"] is False
    assert cache.freshness(BTC_1D)["status"] == "ok"
    (folder / f"{BTC_1H.name}.csv").write_text("ds,price\n2020-01-01T00:00:00Z,1\n", "utf-8")
    assert cache.freshness(BTC_1H)["status"] == "stale"
