"""The prediction API: ``python api_service.py --host 127.0.0.1 --port 8000 [--workers N]``.

Thin on purpose: it parses the flags and calls :func:`pipeline.api.server.serve`; the app
factory and lifespan live in :mod:`pipeline.api.app`, the routes in
:mod:`pipeline.api.routes.predict` and :mod:`pipeline.api.routes.ops`, the model registry in
:mod:`pipeline.api.registry`. ``app`` is what uvicorn imports (``uvicorn api_service:app``
works too). It is built on first access, so that importing this module stays cheap: each worker
uvicorn spawns re-imports it as ``__mp_main__`` before it can answer the supervisor's health
pings (5 s), and on a busy machine the app's imports (pandas, scipy, fastapi) could take longer
than that and get the worker killed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
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
    from pipeline.api.server import serve

    serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload_interval=args.reload_interval,
        # One process runs the app object; several workers each import "api_service:app".
        app=get_app() if args.workers == 1 else None,
        app_ref="api_service:app",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
