"""Running the API under uvicorn: ``serve()`` is what ``api_service.py`` calls after parsing.

With several workers uvicorn imports the app by name (``app_ref``, ``api_service:app``) in each
worker process; with one it runs the app object it is given. Several workers share their
Prometheus metrics through a multiprocess folder (``PROMETHEUS_MULTIPROC_DIR``).

Connection handling for many concurrent clients comes from the settings: the event loop
(``API_LOOP``), the listen backlog (``API_BACKLOG``), keep-alive (``API_KEEPALIVE_SECONDS``),
a per-worker concurrency guard (``API_LIMIT_CONCURRENCY``) and the file-descriptor limit, raised
at start-up (``API_MAX_OPEN_FILES``); see docs/deployment.md.
"""

from __future__ import annotations

import logging
import os
import resource
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


def raise_open_files(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (0: the hard limit; never above it).

    Returns the soft limit in force; workers inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted == 0 else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if target == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and target > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-files limit to %s: %s", target, exc)
    return soft


def kernel_backlog_cap(path: Path = Path("/proc/sys/net/core/somaxconn")) -> int | None:
    """The kernel's cap on a listen backlog (Linux), or None where unknown."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


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

    from pipeline.api.protocol import NoDelayHttpToolsProtocol

    temp_dir = prepare_multiprocess_dir(workers, settings.prometheus_multiproc_dir)
    open_files = raise_open_files(settings.api_max_open_files)
    cap = kernel_backlog_cap()
    if cap is not None and cap < settings.api_backlog:
        logger.warning(
            "API_BACKLOG=%d is above the kernel's net.core.somaxconn=%d, which caps it; raise "
            "it with sysctl for bursts of that many new connections",
            settings.api_backlog,
            cap,
        )
    if reload_interval != settings.model_poll_seconds:
        os.environ["MODEL_POLL_SECONDS"] = str(reload_interval)  # for the workers' settings
    logger.info(
        "serving on http://%s:%d with %d worker(s); docs at /docs",
        host,
        port,
        workers,
        extra={
            "models_dir": str(settings.models_dir),
            "poll_seconds": reload_interval,
            "loop": settings.api_loop,
            "backlog": settings.api_backlog,
            "open_files": open_files,
        },
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
            loop=settings.api_loop,
            http=NoDelayHttpToolsProtocol,
            backlog=settings.api_backlog,
            timeout_keep_alive=settings.api_keepalive_seconds,
            limit_concurrency=settings.api_limit_concurrency or None,
        )
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
