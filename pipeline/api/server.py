"""Running the API under uvicorn: ``serve()`` is what ``api_service.py`` calls after parsing.

With several workers uvicorn imports the app by name (``app_ref``, ``api_service:app``) in each
worker process; with one it runs the app object it is given. Several workers share their
Prometheus metrics through a multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)


def prepare_multiprocess_dir(workers: int, configured: Path | None) -> Path | None:
    """A clean folder for prometheus_client's multiprocess files when several workers run.

    Returns the temporary folder made here (the caller removes it), or None.
    """
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        for stale in configured.glob("*.db"):
            stale.unlink()
        return None
    if workers <= 1:
        return None
    folder = Path(tempfile.mkdtemp(prefix="prometheus-multiproc-"))
    # The one place the environment is written: the workers uvicorn spawns must see it before
    # they import prometheus_client (it picks its storage at import time).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    reload_interval: float,
    app: FastAPI | None,
    app_ref: str,
) -> None:
    """Serve until stopped: ``app`` in this process, or ``app_ref`` in ``workers`` processes."""
    import uvicorn

    temp_dir = prepare_multiprocess_dir(workers, settings.prometheus_multiproc_dir)
    if reload_interval != settings.model_poll_seconds:
        os.environ["MODEL_POLL_SECONDS"] = str(reload_interval)  # for the workers' settings
    logger.info(
        "serving on http://%s:%d with %d worker(s); docs at /docs",
        host,
        port,
        workers,
        extra={"models_dir": str(settings.models_dir), "poll_seconds": reload_interval},
    )
    try:
        uvicorn.run(
            app if app is not None and workers == 1 else app_ref,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
            timeout_worker_healthcheck=15,
        )
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
