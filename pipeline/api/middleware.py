"""The API's cross-cutting concerns as one pure ASGI middleware, plus its metrics.

One middleware (no ``BaseHTTPMiddleware``: it costs a task per request) does, in order:
request id (``X-Request-ID`` taken when sane, else generated; returned and put in every log
line), rate limiting per client (token bucket, 429 with ``Retry-After``), the request body size
limit (413), security headers, Prometheus metrics by route *template*, a JSON access log line,
and a last-resort 500 that never leaks a stack trace.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("pipeline.access")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

#: Paths never rate limited (probes and scrapes must keep working under load).
UNLIMITED_PATHS = frozenset({"/health", "/health/live", "/health/detailed", "/metrics"})
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_BASE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_API_HEADERS = [
    *_BASE_HEADERS,
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]
#: The dashboard page and its assets: scripts, styles and the feed from this origin only.
PAGE_PREFIX = "/dashboard"
_PAGE_HEADERS = [
    *_BASE_HEADERS,
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"cache-control", b"no-cache"),
]


def install_request_id_filter() -> None:
    """Make every log record created while a request is handled carry its ``request_id``.

    A record factory (not a handler filter) so that it also covers handlers added later, such as
    uvicorn's or pytest's. Idempotent. Do not pass ``request_id`` in ``extra`` while a request
    is handled: logging refuses to overwrite an attribute the record already has.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "_adds_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        rid = request_id_var.get()
        if rid is not None:
            record.request_id = rid
        return record

    factory._adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


class ApiMetrics:
    """The API's Prometheus metrics (names agreed with the scheduler and dashboards).

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is imported,
    as ``api_service.py --workers N`` does) values live in files shared by the workers and a
    scrape aggregates them; otherwise they live in :attr:`registry`.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being handled",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.predictions = Counter(
            "predictions",
            "Forecasts served by series and model (batch items count one each)",
            ["series", "model"],
            registry=reg,
        )
        self.reloads = Counter(
            "model_reloads",
            "Model registry reloads by outcome (success|failure)",
            ["outcome"],
            registry=reg,
        )
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome=outcome)
        self.fallbacks = Counter(
            "prediction_fallbacks",
            "Predict answers given by a fallback, by why the model asked for could not answer "
            "and what answered instead",
            ["reason", "strategy"],
            registry=reg,
        )


class ModelCollector(Collector):
    """``model_info`` and ``model_age_seconds`` from the registry at scrape time."""

    def __init__(self, models: Callable[[], Iterable[Any]]) -> None:
        self._models = models

    def collect(self) -> Iterable[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "model_info", "Loaded model versions (value 1)", labels=["series", "model", "version"]
        )
        age = GaugeMetricFamily(
            "model_age_seconds",
            "Seconds since the served version was trained",
            labels=["series", "model"],
        )
        for served in self._models():
            info.add_metric([served.series.name, served.model, served.version], 1.0)
            age.add_metric([served.series.name, served.model], served.age_seconds)
        yield info
        yield age


class RateLimiter:
    """Token bucket per client: ``per_minute`` tokens, refilled continuously."""

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= self.max_clients:
                    self._prune(now)
                bucket = self._buckets[client] = [self.capacity, now]
            tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.capacity / self.rate if self.rate else 0.0
        stale = [k for k, (_, seen) in self._buckets.items() if now - seen >= full_after]
        for key in stale:
            del self._buckets[key]
        if len(self._buckets) >= self.max_clients:  # all active: drop the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[
                : self.max_clients // 2
            ]:
                del self._buckets[key]


def error_body(code: str, message: str, request_id: str, **more: Any) -> bytes:
    payload = {"error": code, "message": message, "request_id": request_id}
    payload.update({k: v for k, v in more.items() if v is not None})
    return json.dumps(payload, separators=(",", ":")).encode()


class ServingMiddleware:
    """See the module docstring. ``runtime`` supplies limiter, metrics and the body limit."""

    def __init__(self, app: ASGIApp, runtime: Any) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        runtime = self.runtime
        request_id, content_length = _read_headers(scope)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        extra_headers = [
            *_headers_for(path),
            (b"x-request-id", request_id.encode()),
        ]
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            await send(message)

        limit: int = runtime.max_body_bytes
        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        runtime.metrics.in_progress.inc()
        try:
            refusal = _refusal(runtime, scope, content_length)
            if refusal is not None:
                await _send_error(send_wrapper, *refusal[:3], request_id, refusal[3])
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:  # noqa: BLE001 - the client gets a clean 500, the log gets the trace
            logger.exception("unhandled error in %s %s", scope["method"], path)
            if not started:
                await _send_error(
                    send_wrapper,
                    500,
                    "internal_error",
                    "internal error; quote the request id when reporting it",
                    request_id,
                )
        finally:
            _record(runtime, scope, status, time.perf_counter() - start)
            request_id_var.reset(token)


def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
    """The security and cache headers of a response to ``path``."""
    if path in DOCS_PATHS:
        return _BASE_HEADERS
    if path.startswith(PAGE_PREFIX):
        return _PAGE_HEADERS
    return _API_HEADERS


def _read_headers(scope: Scope) -> tuple[str, int | None]:
    """The request id (a sane ``X-Request-ID`` or a new one) and the declared body length."""
    request_id = None
    content_length = None
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(candidate):
                request_id = candidate
        elif key == b"content-length":
            try:
                content_length = int(value)
            except ValueError:
                content_length = None
    return request_id or uuid.uuid4().hex, content_length


def _refusal(
    runtime: Any, scope: Scope, content_length: int | None
) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
    """(status, code, message, headers) when the request is refused before routing."""
    limiter: RateLimiter | None = runtime.limiter
    if limiter is not None and scope["path"] not in UNLIMITED_PATHS:
        client = scope.get("client")
        wait = limiter.take(client[0] if client else "unknown")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            message = (
                f"too many requests: the limit is {runtime.rate_limit_per_minute} per minute "
                f"per client; retry in {retry} s"
            )
            return 429, "rate_limited", message, [(b"retry-after", str(retry).encode())]
    limit: int = runtime.max_body_bytes
    if content_length is not None and content_length > limit:
        return 413, "body_too_large", f"request body too large: the limit is {limit} bytes", []
    return None


def _record(runtime: Any, scope: Scope, status: int, duration: float) -> None:
    """Metrics by route template and one JSON access log line."""
    metrics: ApiMetrics = runtime.metrics
    route = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    method = scope["method"]
    metrics.in_progress.dec()
    metrics.requests.labels(method, template, str(status)).inc()
    metrics.latency.labels(method, template).observe(duration)
    runtime.count_request(status)
    access_logger.info(
        "%s %s %s",
        method,
        scope["path"],
        status,
        extra={  # request_id comes from the record factory (see install_request_id_filter)
            "method": method,
            "route": template,
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "client": (scope.get("client") or ("-",))[0],
        },
    )


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_body(code, message, request_id)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
