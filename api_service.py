"""The prediction API: ``python api_service.py --host 127.0.0.1 --port 8000 [--workers N]``.

Thin on purpose: the app factory and lifespan live in :mod:`pipeline.api.app`, the routes in
:mod:`pipeline.api.routes.predict` and :mod:`pipeline.api.routes.ops`, the model registry in
:mod:`pipeline.api.registry`, cross-cutting concerns in :mod:`pipeline.api.middleware`.
``app`` is what
uvicorn imports (``uvicorn api_service:app`` works too). It is built on first access, so that
importing this module stays cheap: each worker uvicorn spawns re-imports it as ``__mp_main__``
before it can answer the supervisor's health pings (5 s), and on a busy machine the app's imports
(pandas, scipy, fastapi) could take longer than that and get the worker killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("api_service")
_app: FastAPI | None = None


def get_app() -> FastAPI:
    """The ASGI app (created once; creating it reads and loads nothing)."""
    global _app
    if _app is None:
        from pipeline.api.app import create_app

        _app = create_app()
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parser(default_host: str, default_port: int, default_poll: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="api_service.py",
        description="Serve the champion forecasts over HTTP (docs at /docs).",
    )
    parser.add_argument(
        "--host", default=default_host, help=f"bind address (default {default_host})"
    )
    parser.add_argument(
        "--port", type=int, default=default_port, help=f"port (default {default_port})"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1; metrics aggregate)"
    )
    parser.add_argument(
        "--reload-interval",
        type=float,
        default=default_poll,
        metavar="S",
        help="poll the champion pointers every S seconds and reload on change; 0 = off "
        f"(default MODEL_POLL_SECONDS = {default_poll:g})",
    )
    return parser


def _prepare_multiprocess_dir(workers: int, configured: Path | None) -> Path | None:
    """A clean folder for prometheus_client's multiprocess files when several workers run."""
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


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.config import load_settings
    from pipeline.errors import PipelineError
    from pipeline.logs import configure_logging

    try:
        settings = load_settings()
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    args = _parser(settings.api_host, settings.api_port, settings.model_poll_seconds).parse_args(
        argv
    )
    if args.workers < 1 or not 1 <= args.port <= 65535 or args.reload_interval < 0:
        sys.stderr.write("error: --workers must be >= 1, --port 1..65535, --reload-interval >= 0\n")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    import uvicorn

    temp_dir = _prepare_multiprocess_dir(args.workers, settings.prometheus_multiproc_dir)
    if args.reload_interval != settings.model_poll_seconds:
        os.environ["MODEL_POLL_SECONDS"] = str(args.reload_interval)  # for the workers' settings
    logger.info(
        "serving on http://%s:%d with %d worker(s); docs at /docs",
        args.host,
        args.port,
        args.workers,
        extra={"models_dir": str(settings.models_dir), "poll_seconds": args.reload_interval},
    )
    try:
        uvicorn.run(
            "api_service:app" if args.workers > 1 else get_app(),
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
            timeout_worker_healthcheck=15,
        )
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
