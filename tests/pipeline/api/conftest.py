"""Fixtures of the API tests: a real artifact store with small real models, and started apps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.api.app import create_app
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import get_settings
from tests.helpers.serving import FrozenClock, Metas, TestClient, build_models


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """The MODELS_DIR of the test (see the isolated_settings fixture)."""
    return tmp_path / "models"


@pytest.fixture
def store(models_dir: Path) -> ArtifactStore:
    return ArtifactStore(models_dir)


@pytest.fixture
def metas(models_dir: Path) -> Metas:
    """bitcoin 1d and 1h with naive and drift each; drift is the champion of both."""
    return build_models(models_dir)


@pytest.fixture
def clock() -> FrozenClock:
    """The API's clock in these tests: frozen at the origin of the test models' paths."""
    return FrozenClock()


@pytest.fixture
def make_client(
    monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> Iterator[Callable[..., TestClient]]:
    """``make_client(ENV=value, ...)`` -> a started TestClient (lifespan run) on a fresh app,
    answering at the time of the :func:`clock` fixture."""
    clients: list[TestClient] = []

    def make(**env: str) -> TestClient:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        app = create_app(configure_logs=False)
        app.state.runtime.clock = clock
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(metas: Metas, make_client: Callable[..., TestClient]) -> TestClient:
    """A started app serving :func:`metas`."""
    return make_client()
