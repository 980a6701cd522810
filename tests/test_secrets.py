"""Secrets never leave the process: real CLIs, the scheduler and the API run with known fake
secrets, then every byte they wrote (stdout, stderr, logs, data, models, reports) is scanned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.processes import free_port

pytestmark = pytest.mark.slow

KEYS = {
    "API_KEY": "fake-api-key-7f3a9c21",
    "ADMIN_API_KEY": "fake-admin-key-41d2e8b0",
    "COINGECKO_API_KEY": "fake-cg-key-9b6e05aa",
}
TOKEN = "SECRET-TOKEN-123"
URL_PASSWORD = "fake-url-pass-5c1d"

# Runs in its own process: the API in-process (TestClient, its lifespan configures logging),
# the routes that show state or errors, and a reload that fails with the secrets in its error.
API_SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
import pipeline.api.registry as registry
from pipeline.api.app import create_app
from pipeline.config import get_settings

settings = get_settings()
secrets = [settings.api_key, settings.admin_api_key, settings.coingecko_api_key,
           settings.alert_webhook_url]
plain = " ".join(s.get_secret_value() for s in secrets if s is not None)

def broken_store(*args, **kwargs):
    raise RuntimeError("store unreadable with " + plain)

api_key = {"X-API-Key": settings.api_key.get_secret_value()}
admin_key = {"X-Admin-Key": settings.admin_api_key.get_secret_value()}
with TestClient(create_app()) as client:
    answers = [
        ("status", client.get("/status")),
        ("health", client.get("/health/detailed")),
        ("metrics", client.get("/metrics")),
        ("models", client.get("/api/v1/models", headers=api_key)),
        ("wrong_key", client.get("/api/v1/models", headers={"X-API-Key": "not-the-key"})),
        ("wrong_admin", client.post("/model/reload", headers={"X-Admin-Key": "nope"})),
    ]
    registry.load_registry = broken_store
    answers.append(("reload", client.post("/model/reload", headers=admin_key)))
for name, resp in answers:
    sys.stdout.write(json.dumps({"name": name, "status": resp.status_code, "body": resp.text}))
    sys.stdout.write("\\n")
"""


class EchoingCoinGecko(BaseHTTPRequestHandler):
    """Refuses every request, quoting the API key it was sent (as some providers do)."""

    seen_keys: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        key = self.headers.get("x-cg-demo-api-key", "")
        type(self).seen_keys.append(key)
        body = json.dumps(
            {"status": {"error_code": 10002, "error_message": f"API key {key} is invalid"}}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def echoing_coingecko() -> Iterator[tuple[str, type[EchoingCoinGecko]]]:
    handler: type[EchoingCoinGecko] = type("H", (EchoingCoinGecko,), {"seen_keys": []})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/api/v3", handler
        finally:
            server.shutdown()


def run(tmp_path: Path, name: str, args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``args`` with stdout and stderr captured to ``<name>.out`` / ``<name>.err`` files."""
    out, err = tmp_path / "logs" / f"{name}.out", tmp_path / "logs" / f"{name}.err"
    out.parent.mkdir(exist_ok=True)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        command = [sys.executable, *args]
        code = subprocess.call(
            command, cwd=tmp_path, env=env, stdout=stdout, stderr=stderr, timeout=120
        )
    return code, out.read_text(), err.read_text()


def test_no_secret_is_written_by_the_cli_the_scheduler_or_the_api(
    tmp_path: Path, echoing_coingecko: tuple[str, type[EchoingCoinGecko]]
) -> None:
    coingecko_url, coingecko = echoing_coingecko
    hook_base = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the alert fails
    hook = f"{hook_base}/hook/{TOKEN}"
    api_url = f"http://ops:{URL_PASSWORD}@127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        **KEYS,
        "PYTHONPATH": str(ROOT),
        "ALERT_WEBHOOK_URL": hook,
        "API_URL": api_url,
        "COINS": "bitcoin",
        "FREQUENCIES": "1d",
        "HISTORY_DAYS": "120",
        "LOG_LEVEL": "DEBUG",
        "SCHEDULER_METRICS_PORT": "0",
        "HTTP_MAX_ATTEMPTS": "1",
        "HTTP_BACKOFF_INITIAL": "0",
        "COINGECKO_BASE_URL": coingecko_url,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    secrets = [*KEYS.values(), hook, TOKEN, URL_PASSWORD]

    pipeline_args = ["-m", "pipeline", "--source", "sample", "--freq", "1d", "--models", "naive"]
    code, _, err = run(tmp_path, "pipeline", pipeline_args, {**env, "LOG_FORMAT": "text"})
    assert code == 0, err

    compare = [str(ROOT / "compare_models.py"), "--freq", "1d", "--models", "naive"]
    compare += ["--origins", "3", "--horizon", "7", "--no-plots"]
    code, _, err = run(tmp_path, "compare", compare, {**env, "LOG_FORMAT": "json"})
    assert code == 0, err
    assert list((tmp_path / "reports").rglob("*.json")), "compare_models wrote no report"

    scheduler = str(ROOT / "retrain_scheduler.py")
    code, plan_text, err = run(tmp_path, "dry-run", [scheduler, "--dry-run"], env)
    assert code == 0, err
    assert json.loads(plan_text)["api_url"].startswith("http://ops:****@127.0.0.1:")

    # A cycle whose ingest is refused (the key is sent, and quoted back) and whose alert fails.
    once = {**env, "SOURCE": "coingecko", "LOG_FORMAT": "json"}
    code, out, err = run(tmp_path, "once", [scheduler, "--once", "--models", "naive"], once)
    assert code == 1, err
    assert coingecko.seen_keys and set(coingecko.seen_keys) == {KEYS["COINGECKO_API_KEY"]}
    assert "bitcoin-usd-1d: failed" in out and "API key **** is invalid" in out
    alerts = [json.loads(line) for line in err.splitlines() if "alert webhook" in line]
    assert [a["message"].endswith(f"({hook_base}/****)") for a in alerts] == [True], err

    code, history, err = run(tmp_path, "history", [scheduler, "--history", "5"], env)
    assert code == 0, err
    assert "API key **** is invalid" in history

    (tmp_path / "api_check.py").write_text(API_SCRIPT)
    code, out, err = run(tmp_path, "api", ["api_check.py"], {**env, "LOG_FORMAT": "json"})
    assert code == 0, err
    answers = {a["name"]: a for a in map(json.loads, out.splitlines())}
    assert {name: a["status"] for name, a in answers.items()} == {
        "status": 200,
        "health": 200,
        "metrics": 200,
        "models": 200,
        "wrong_key": 401,
        "wrong_admin": 401,
        "reload": 500,
    }
    assert json.loads(answers["reload"]["body"])["failures"] == [
        "RuntimeError: store unreadable with **** **** **** ****"
    ]
    assert "reload failed; the previous models keep serving" in err

    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) > 10  # logs, raw and processed data, a model version, reports, history
    for path in written:
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content, f"{secret!r} leaked into {path}"
