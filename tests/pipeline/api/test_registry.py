"""The in-memory registry: loading, lookups, falling back on failures, atomic reloads."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest

from pipeline.api.errors import NotServedError
from pipeline.api.registry import RegistryHolder, load_registry, store_signature
from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from tests.helpers.serving import BTC_1D, BTC_1H, build_models, read_forecast, tamper, write


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


def _reissue(store: ArtifactStore, meta: ArtifactMetadata, hours: int, bump: float) -> datetime:
    """Write a newer issue of ``meta``'s version: its path moved ``hours`` later, prices x bump."""
    path = read_forecast(store, meta)
    path["ds"] = pd.to_datetime(path["ds"], utc=True) + pd.Timedelta(hours=hours)
    for column in path.columns.drop("ds"):
        path[column] = path[column] * bump
    origin = meta.training.last_ds + timedelta(hours=hours)
    store.write_issue(
        BTC_1H, meta.model, meta.version, path,
        origin=origin, last_price=float(meta.last_price) * bump, n_new=hours,
        issued_at=origin + timedelta(minutes=2),
    )  # fmt: skip
    return origin


def test_a_new_issue_is_served_and_noticed_by_polling(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    champion = metas[f"{BTC_1H.name}/drift"]
    holder = RegistryHolder(store)
    before = holder.load_initial().get(BTC_1H)
    assert before.origin == champion.training.last_ds  # the training issue
    origin = _reissue(store, champion, hours=3, bump=1.01)
    assert holder.needs_reload()  # a new issue changes the signature like a new version does
    result = holder.reload()
    served = holder.registry.get(BTC_1H)
    assert (served.version, served.origin) == (champion.version, origin)
    assert served.issued_at == origin + timedelta(minutes=2)
    assert served.path.stamps[0] == origin + timedelta(hours=1)
    first = read_forecast(store, champion)["mean"].iloc[0]
    assert served.path.columns["mean"][0] == pytest.approx(first * 1.01)
    assert any(
        c.startswith(f"{BTC_1H.name}/drift: {champion.version}")
        and f"{origin:%Y-%m-%dT%H:%M}Z" in c
        for c in result.changed
    )
    assert store.champion(BTC_1H).version == champion.version  # the pointer is untouched
    assert not holder.needs_reload()


def test_a_damaged_newest_issue_falls_back_to_the_one_before(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    champion = metas[f"{BTC_1H.name}/drift"]
    good = _reissue(store, champion, hours=1, bump=1.0)
    _reissue(store, champion, hours=2, bump=1.0)
    newest = store.list_issues(BTC_1H, "drift", champion.version)[-1]
    damaged = store.version_dir(BTC_1H, "drift", champion.version) / "issues" / newest
    (damaged / "forecast.csv").write_text("ds,mean\n", encoding="utf-8")
    served = load_registry(store).get(BTC_1H)
    assert served.origin == good
