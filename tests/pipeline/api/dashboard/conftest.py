"""A real API process on 127.0.0.1 serving small real models, and a real headless Chromium.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it), driven by Playwright for Python;
no browser is ever downloaded. Both skip with the reason when they cannot run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.artifacts.store import ArtifactStore
from tests.helpers.processes import free_port, stop, wait_until
from tests.helpers.serving import BTC_1D, BTC_1H, Metas, build_models, prices, processed_file

ROOT = Path(__file__).resolve().parents[4]
CHROMIUM = Path("/usr/bin/chromium")
#: Flags that work offline and as root; nothing phones home.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_KEY = "dashboard-admin-key-for-tests"


@dataclass
class Api:
    """A running ``api_service.py`` and the artifact store it serves."""

    base: str
    port: int
    store: ArtifactStore
    metas: Metas
    log: Path

    def reload(self) -> dict[str, Any]:
        """``POST /model/reload`` (the worker then pushes the changes over /ws)."""
        response = httpx.post(f"{self.base}/model/reload", headers={"X-Admin-Key": ADMIN_KEY})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """``start_api(ENV=value, ...)``: an API process on a free port of 127.0.0.1, serving
    bitcoin 1d and 1h (naive and drift; drift the champion), trained on prices that end at
    the current period, with processed data of the same prices."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> Api:
        models, data = tmp_path / "models", tmp_path / "data"
        metas = build_models(models, end=None)
        for series in (BTC_1D, BTC_1H):
            processed_file(data, series, y=prices(series, end=None))
        port = free_port()
        log = tmp_path / f"api-{port}.log"
        environ = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MODELS_DIR": str(models),
            "DATA_DIR": str(data),
            "ADMIN_API_KEY": ADMIN_KEY,
            "LOG_FORMAT": "json",
            **env,
        }
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "api_service.py"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=tmp_path,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as http:
            wait_until(http, "/health", proc, log)
        return Api(base, port, ArtifactStore(models), metas, log)

    yield start
    for proc in procs:
        stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's), shared by the tests of a module. Not longer: Playwright's
    sync API keeps an event loop running in the main thread while it is started, and later
    tests may call ``asyncio.run``."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (bash .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the browser tests write their screenshots (``DASHBOARD_SCREENSHOTS`` if set)."""
    folder = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
