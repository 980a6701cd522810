"""Two API processes (real uvicorn) reading one object store switch to a newly promoted
champion by their model poll, with no failed request during the switch."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import load_settings
from pipeline.storage.mirror import attach_all
from tests.helpers.api_process import api_process
from tests.helpers.s3 import S3Server
from tests.helpers.serving import BTC_1D, build_models, write

#: Bounds of the load loop: requests in all, and seconds.
MAX_REQUESTS, MAX_SECONDS = 4000, 90.0


@pytest.mark.slow
def test_two_replicas_serve_a_new_champion_without_a_failed_request(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/models"
    settings = load_settings(
        models_dir=url, storage_cache_dir=tmp_path / "scheduler", **s3_server.settings()
    )
    root = attach_all(settings)["models_dir"].root
    metas = build_models(root, end=None)  # published as they are written
    old = metas[f"{BTC_1D.name}/drift"].version
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AWS_"))},
        **s3_server.env(),
        "MODELS_DIR": url,
        "MODEL_POLL_SECONDS": "0.5",
        "LOG_FORMAT": "json",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        api_process(tmp_path / "a", {**env, "STORAGE_CACHE_DIR": str(tmp_path / "cache-a")}) as a,
        api_process(tmp_path / "b", {**env, "STORAGE_CACHE_DIR": str(tmp_path / "cache-b")}) as b,
    ):
        for http in (a, b):
            health = http.get("/health/detailed").json()["components"]["models"]
            assert health["store"] == url
            assert health["champions"] == {"bitcoin-usd-1d": "drift", "bitcoin-usd-1h": "drift"}
        promoted: dict[str, str] = {}

        def promote() -> None:
            promoted["version"] = write(
                ArtifactStore(root), BTC_1D, "naive", seed=3, promote=True, end=None
            ).version

        statuses: dict[int, int] = {}
        switched = {"a": 0, "b": 0}  # answers from the new champion, per replica
        promoter = threading.Thread(target=promote)
        start = time.monotonic()
        for i in range(MAX_REQUESTS):
            name, http = ("a", a) if i % 2 == 0 else ("b", b)
            response = http.post("/api/v1/predict", json={"timeframe": "1d", "steps": 2})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                body = response.json()
                if body["model_version"] == promoted.get("version"):
                    switched[name] += 1
                else:
                    assert body["model_version"] in (old, promoted.get("version"))
            if i == 50:
                promoter.start()
            if min(switched.values()) >= 20 or time.monotonic() - start > MAX_SECONDS:
                break
        promoter.join(timeout=60)
        assert statuses.keys() == {200}, statuses
        assert min(switched.values()) >= 20, (switched, statuses)
        for http in (a, b):
            body = http.get("/health/detailed").json()["components"]["models"]
            assert body["champions"]["bitcoin-usd-1d"] == "naive"
