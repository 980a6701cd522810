"""The admin jobs API: a real API process starts real job processes under the cycle lock."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import get_settings
from pipeline.scheduling.history import cycle_lock, read_history
from tests.helpers.api_process import api_process
from tests.helpers.paths import ROOT
from tests.helpers.serving import TestClient

ADMIN = {"X-Admin-Key": "test-admin-key"}


def test_jobs_need_the_admin_key(make_client: Callable[..., TestClient]) -> None:
    off = make_client()
    assert off.get("/admin/jobs").status_code == 403
    client = make_client(ADMIN_API_KEY="test-admin-key")
    assert client.post("/admin/jobs", json={"kind": "retrain"}).status_code == 401
    bad = client.post(
        "/admin/jobs", json={"kind": "retrain", "series": ["x-usd-2h"]}, headers=ADMIN
    )
    assert bad.status_code == 422 and "unknown frequency '2h'" in bad.json()["message"]
    assert client.post("/admin/jobs", json={"kind": "train"}, headers=ADMIN).status_code == 422
    missing = client.get("/admin/jobs/0123456789ab", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.get("/admin/jobs", headers=ADMIN).json() == {"jobs": []}


def poll(
    http: httpx.Client, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 240
) -> dict[str, Any]:
    """GET the job until ``done`` says so (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/admin/jobs/{job_id}").json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"job {job_id} is still {body['state']}: {body}"
        time.sleep(0.2)


@pytest.fixture
def api_env(tmp_path: Path) -> dict[str, str]:
    # A permissive gate: these tests are about the processes' wiring, not the sample's numbers.
    gate = json.loads((ROOT / "quality_gate.json").read_text())
    gate["thresholds"]["coverage_95_min"]["value"] = 0.0
    gate["thresholds"]["coverage_95_max"]["value"] = 1.0
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    env = {
        **os.environ,
        "GATE_CONFIG": str(tmp_path / "gate.json"),
        "LOG_FORMAT": "json",
        "SOURCE": "sample",
        "COINS": "bitcoin",
        "FREQUENCIES": "1d",
        "HISTORY_DAYS": "150",
        "ADMIN_API_KEY": "test-admin-key",
        "SCHEDULER_METRICS_PORT": "0",
    }
    return env


@pytest.mark.slow
def test_a_retrain_job_runs_the_gated_cycle_in_its_own_process(
    tmp_path: Path, api_env: dict[str, str]
) -> None:
    with api_process(tmp_path, api_env, headers=ADMIN) as http:
        assert http.get("/health").status_code == 503  # nothing trained yet
        started = http.post("/admin/jobs", json={"kind": "retrain", "models": ["naive", "drift"]})
        assert started.status_code == 202, started.text
        job = started.json()
        assert started.headers["location"] == f"/admin/jobs/{job['id']}"
        assert (job["state"], job["series"]) == ("queued", ["bitcoin-usd-1d"])
        body = poll(http, job["id"], lambda b: b["state"] in {"succeeded", "failed"})
        assert body["state"] == "succeeded", body
        assert body["exit_code"] == 0 and body["pid"] != api_pid(http)
        assert body["duration_seconds"] > 0 and body["started_at"] and body["ended_at"]
        (outcome,) = body["run"]["series"]
        assert outcome["status"] == "promoted" and body["reason"] == "bitcoin-usd-1d: promoted"
        assert any("retraining cycle" in line for line in body["log_tail"])
        # The cycle asked this API to reload: the promoted version is served now.
        answer = http.post("/api/v1/predict", json={"timeframe": "1d", "steps": 2}).json()
        assert (answer["model"], answer["model_version"]) == (
            outcome["candidate"],
            outcome["version"],
        )
        assert [r["run_id"] for r in read_history(get_settings())] == [body["run"]["run_id"]]
        assert [j["id"] for j in http.get("/admin/jobs").json()["jobs"]] == [job["id"]]
        ended = http.delete(f"/admin/jobs/{job['id']}")
        assert ended.status_code == 409 and ended.json()["error"] == "job_ended"


def api_pid(http: httpx.Client) -> int:
    return int(http.get("/status").json()["pid"])


@pytest.mark.slow
def test_jobs_wait_for_the_lock_are_refused_cancelled_and_outlive_the_api(
    tmp_path: Path, api_env: dict[str, str]
) -> None:
    settings = get_settings()
    with cycle_lock(settings), api_process(tmp_path, api_env, headers=ADMIN) as http:
        refused = http.post("/admin/jobs", json={"kind": "refresh", "wait": False}).json()
        waiting = http.post("/admin/jobs", json={"kind": "refresh"}).json()
        killed = http.post("/admin/jobs", json={"kind": "backtest"}).json()
        body = poll(http, refused["id"], lambda b: b["state"] == "refused")
        assert body["exit_code"] == 3 and "another retraining cycle is running" in body["reason"]
        for job in (waiting, killed):
            body = poll(http, job["id"], lambda b: b["reason"].startswith("waiting for the lock"))
            assert body["state"] == "queued" and body["pid"]
        cancel = http.delete(f"/admin/jobs/{waiting['id']}")
        assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
        body = poll(http, waiting["id"], lambda b: b["state"] == "cancelled")
        assert body["reason"] == "cancelled before it started" and body["exit_code"] == 1
        pid = poll(http, killed["id"], lambda b: b["pid"] is not None)["pid"]
        os.kill(pid, signal.SIGKILL)
        body = poll(http, killed["id"], lambda b: b["state"] == "failed")
        assert "ended without recording an outcome (exit status -9)" in body["reason"]
        orphan = http.post("/admin/jobs", json={"kind": "refresh"}).json()
        poll(http, orphan["id"], lambda b: b["reason"].startswith("waiting for the lock"))
    # The API stopped: its waiting job stops too, and a restarted API finds every record.
    with api_process(tmp_path, api_env, name="api-again", headers=ADMIN) as http:
        body = poll(http, orphan["id"], lambda b: b["state"] == "cancelled")
        assert body["reason"] == (
            "stopped: the API process that started it exited before it started"
        )
        listed = {j["id"]: j["state"] for j in http.get("/admin/jobs").json()["jobs"]}
    assert listed == {
        refused["id"]: "refused",
        waiting["id"]: "cancelled",
        killed["id"]: "failed",
        orphan["id"]: "cancelled",
    }
