"""The real image: built with ``make image`` and run with Docker on 127.0.0.1.

One test, in the order an operator would go: build the local base and the image, train models
into a volume from the offline sample (in a container), start the API container on that volume,
wait for the image's own health check, ask ``/api/v1/predict``, then run the scheduler's
``--once`` in a second container on the same volumes and check that the API serves what it
promoted. Every container runs as the image's non-root user with a read-only root filesystem
(a tmpfs for the temp dir), no capabilities and no privilege escalation.

Skips (with the reason) only when there is no Docker daemon to talk to; ``.ci/run`` installs and
starts one (scripts/ensure-docker.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "crypto-forecast:test"
APP_UID = "10001"
ADMIN_KEY = "image-test-admin-key"
#: Writable places a read-only container needs: the temp dir (Prophet, the metrics folder).
TMPFS = f"/home/app/tmp:uid={APP_UID},gid={APP_UID}"
HARDENED = ["--read-only", "--tmpfs", TMPFS, "--cap-drop", "ALL"]
HARDENED += ["--security-opt", "no-new-privileges"]


def docker_cli() -> str:
    """The docker client, when a daemon answers it; skips the test (with why) otherwise."""
    found = shutil.which("docker")
    if found is None:
        pytest.skip("no docker client: install Debian's docker.io (bash scripts/ensure-docker.sh)")
    info = subprocess.run([found, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"the Docker daemon does not answer: {info.stderr.strip()[-300:]}")
    return found


@dataclass
class Docker:
    """Runs docker commands and removes what it created (containers, volumes, network)."""

    cli: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    created: list[list[str]] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.cli, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok(self, *args: str, timeout: float = 300) -> str:
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout.strip()

    def name(self, kind: str) -> str:
        return f"cf-test-{kind}-{self.suffix}"

    def create(self, kind: str, *args: str) -> str:
        """``docker <kind> create`` a uniquely named volume or network, removed at the end."""
        name = self.name(kind)
        self.ok(kind, "create", *args, name)
        self.created.append([kind, "rm", name])
        return name

    def cleanup(self) -> None:
        for args in reversed(self.created):
            self(*args, timeout=60)


@pytest.fixture
def docker() -> Iterator[Docker]:
    runner = Docker(docker_cli())
    try:
        yield runner
    finally:
        runner.cleanup()


def wait_healthy(docker: Docker, container: str, timeout: float = 120) -> None:
    """Poll the container's health status (the image's HEALTHCHECK) until ``healthy``."""
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(docker.ok("inspect", "--format", "{{json .State}}", container))
        assert state["Status"] == "running", docker("logs", container).stderr[-3000:]
        if state["Health"]["Status"] == "healthy":
            return
        assert time.monotonic() < deadline, f"{container} not healthy: {state['Health']}"
        time.sleep(1)


def replaced_everywhere(
    http: httpx.Client, timeframe: str, old_version: object, rounds: int = 240
) -> bool:
    """True once 20 answers in a row (spread over both workers) no longer serve
    ``old_version``; False after ``rounds`` polls 0.25 s apart (a bounded wait, not a timing
    check)."""
    streak = 0
    for _ in range(rounds):
        streak = streak + 1 if predict(http, timeframe)["model_version"] != old_version else 0
        if streak >= 20:
            return True
        time.sleep(0.25)
    return False


def predict(http: httpx.Client, timeframe: str) -> dict[str, object]:
    response = http.post("/api/v1/predict", json={"timeframe": timeframe, "steps": 3})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert len(body["forecasts"]) == 3  # type: ignore[arg-type]
    return body


@pytest.mark.slow
def test_image_serves_and_retrains_as_non_root_on_a_read_only_root(docker: Docker) -> None:
    build = subprocess.run(
        ["make", "-s", "image", f"IMAGE={IMAGE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-5000:]
    config = json.loads(docker.ok("image", "inspect", "--format", "{{json .Config}}", IMAGE))
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert "/health/live" in " ".join(config["Healthcheck"]["Test"])

    models = docker.create("volume")
    data = docker.create("volume")
    network = docker.create("network")
    volumes = ["-v", f"{models}:/app/models", "-v", f"{data}:/app/data"]

    # Models from the offline sample, trained in a container with no network at all.
    docker.ok(
        "run", "--rm", "--network", "none", *HARDENED, *volumes, IMAGE,
        "python", "-m", "pipeline", "--source", "sample", "--models", "naive,drift",
        timeout=600,
    )  # fmt: skip

    api = docker.name("api")
    port = free_port()
    docker.created.append(["rm", "--force", api])
    docker.ok(
        "run", "--detach", "--name", api, "--network", network, *HARDENED, *volumes,
        "--health-interval", "2s",  # the image's check, polled faster than its 30 s
        "--env", f"ADMIN_API_KEY={ADMIN_KEY}",
        # The reload the scheduler asks for reaches one of the 2 workers; the other polls.
        "--env", "MODEL_POLL_SECONDS=1",
        "--publish", f"127.0.0.1:{port}:8000",
        IMAGE,
    )  # fmt: skip
    wait_healthy(docker, api)

    uid = docker.ok("exec", api, "id", "-u")
    assert uid == APP_UID
    assert docker.ok("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", api) == "true"
    refused = docker("exec", api, "touch", "/app/pipeline/written-by-the-app")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    docker.ok("exec", api, "touch", "/app/models/.writable")  # the volume is the app's

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        before = {tf: predict(http, tf) for tf in ("1d", "1h")}

        # The scheduler in a second container on the same volumes; it asks the API to reload.
        cycle = docker(
            "run", "--rm", "--network", network, *HARDENED, *volumes,
            "--env", "SOURCE=sample",
            "--env", f"API_URL=http://{api}:8000",
            "--env", f"ADMIN_API_KEY={ADMIN_KEY}",
            "--env", "SCHEDULER_METRICS_PORT=0",
            IMAGE, "python", "retrain_scheduler.py", "--once", "--models", "naive,drift",
            timeout=600,
        )  # fmt: skip
        output = cycle.stdout + cycle.stderr
        assert cycle.returncode == 0, output[-5000:]
        assert "ended: success" in output
        promoted = [
            line.split(":")[0] for line in cycle.stdout.splitlines() if ": promoted" in line
        ]
        for tf, old in before.items():
            if old["series"] in promoted:  # reloaded or polled: every worker serves the new one
                assert replaced_everywhere(http, tf, old["model_version"])
            else:
                assert predict(http, tf)["model_version"] == old["model_version"]
    assert "Traceback" not in docker.ok("logs", api) + docker("logs", api).stderr
