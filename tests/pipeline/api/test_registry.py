"""The in-memory registry: loading, lookups, falling back on failures, atomic reloads."""

from __future__ import annotations

import json

import pytest

from pipeline.api.errors import NotServedError
from pipeline.api.registry import RegistryHolder, load_registry, store_signature
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import BTC_1D, BTC_1H, build_models, tamper, write


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
