"""A real HTTP server on 127.0.0.1 that imitates CoinGecko's market-chart endpoints.

It serves ``/api/v3/coins/{id}/market_chart`` and ``/market_chart/range`` from a smooth,
deterministic generated series (price at hour ``k`` is a fixed function of ``k``), with
CoinGecko's granularity: ranges over 90 days get daily 00:00 points, shorter ones hourly points
(stamped a few seconds after the hour, as CoinGecko's are), and a range reaching "now" ends with
the current price. Without an API key header, ranges starting more than 365 days ago get the
real 401 / error_code 10012 answer.

Faults, consumed one per request from ``fake.faults`` (or ``fake.always`` for every request):
``429``, ``429-retry-after`` (``Retry-After: fake.retry_after``), ``500``, ``503``, ``hang``
(answer only after ``fake.hang_seconds``), ``truncated`` (half a JSON body), ``html`` (a proxy
page with status 200), ``365-day``, ``404``, ``out-of-order``, ``duplicate`` (exact repeats),
``conflicting-duplicate``, ``negative``, ``null-price``, ``string-price``, ``jump`` (one
price x3).

Use the ``fake_coingecko`` fixture (tests/pipeline/ingest/conftest.py): it starts a server,
points ``COINGECKO_BASE_URL`` at it and
stops it afterwards. Every request is recorded in ``fake.requests``.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAULTS = (
    "429",
    "429-retry-after",
    "500",
    "503",
    "hang",
    "truncated",
    "html",
    "365-day",
    "404",
    "out-of-order",
    "duplicate",
    "conflicting-duplicate",
    "negative",
    "null-price",
    "string-price",
    "jump",
)
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STAMP_OFFSET_MS = 37_421  # CoinGecko's hourly points land a little after the hour
TIME_RANGE_BODY = {
    "error": {
        "status": {
            "timestamp": "2026-01-01T00:00:00.000+00:00",
            "error_code": 10012,
            "error_message": "Your request exceeds the allowed time range. Public API users are "
            "limited to querying historical data within the past 365 days. Upgrade to a paid "
            "plan to enjoy full historical data access: https://www.coingecko.com/en/api/pricing.",
        }
    }
}


def price_at(ms: int) -> float:
    """The generated price at a unix-ms instant (smooth, positive, no big jumps)."""
    hours = ms / HOUR_MS
    return 20000.0 * (1.0 + 0.05 * math.sin(hours / 24.0) + 0.01 * math.sin(hours / 3.7))


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeCoinGecko:
    """State of the fake server; change its attributes between (or during) requests."""

    faults: list[str] = field(default_factory=list)
    always: str | None = None
    retry_after: str = "1"
    hang_seconds: float = 5.0
    now: datetime | None = None  # "now" of the series; None = the real clock
    enforce_keyless_limit: bool = True
    coins: tuple[str, ...] = ("bitcoin", "ethereum")
    requests: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeCoinGecko:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/v3"

    def chart_requests(self) -> list[Seen]:
        return [r for r in self.requests if "/market_chart" in r.path]

    # -- series -------------------------------------------------------------------------------

    def now_ms(self) -> int:
        now = self.now or datetime.now(UTC)
        return int(now.timestamp() * 1000)

    def points(self, start_ms: int, end_ms: int, daily: bool) -> list[list[float]]:
        now_ms = self.now_ms()
        end = min(end_ms, now_ms)
        step = DAY_MS if daily else HOUR_MS
        offset = 0 if daily else STAMP_OFFSET_MS
        first = (start_ms - offset) // step * step + offset
        if first < start_ms:
            first += step
        stamps = list(range(first, end + 1, step))
        if end_ms >= now_ms and (not stamps or stamps[-1] < now_ms):
            stamps.append(now_ms)  # CoinGecko ends a range that reaches now with the live price
        return [[t, price_at(t)] for t in stamps]

    # -- request handling ---------------------------------------------------------------------

    def _next_fault(self) -> str | None:
        with self._lock:
            if self.faults:
                return self.faults.pop(0)
        return self.always

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append(
            Seen(url.path, params, {k.lower(): v for k, v in handler.headers.items()})
        )
        parts = url.path.strip("/").split("/")
        # api/v3/coins/{id}/market_chart[/range]
        if len(parts) < 5 or parts[:3] != ["api", "v3", "coins"] or parts[4] != "market_chart":
            return self._send(handler, 404, {"error": "Not Found"})
        fault = self._next_fault()
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        if fault == "hang":
            self._stop.wait(self.hang_seconds)
        early = self._fault_answer(handler, fault)
        if early:
            return
        coin = parts[3]
        if coin not in self.coins or fault == "404":
            return self._send(handler, 404, {"error": "coin not found"})
        try:
            start_ms, end_ms, daily = self._range(parts, params)
        except (KeyError, ValueError):
            return self._send(handler, 400, {"error": "invalid parameters"})
        keyless = not any(h in handler.headers for h in ("x-cg-demo-api-key", "x-cg-pro-api-key"))
        too_old = start_ms < self.now_ms() - 365 * DAY_MS - HOUR_MS
        if fault == "365-day" or (self.enforce_keyless_limit and keyless and too_old):
            return self._send(handler, 401, TIME_RANGE_BODY)
        prices = self._apply_fault(self.points(start_ms, end_ms, daily), fault)
        body = {
            "prices": prices,
            "market_caps": [[t, 19e6 * p if isinstance(p, float) else 1.0] for t, p in prices],
            "total_volumes": [[t, 3e10] for t, _ in prices],
        }
        if fault == "truncated":
            text = json.dumps(body)
            return self._send_text(handler, 200, text[: len(text) // 2], "application/json")
        self._send(handler, 200, body)

    def _range(self, parts: list[str], params: dict[str, str]) -> tuple[int, int, bool]:
        if len(parts) == 6 and parts[5] == "range":
            start_ms = int(float(params["from"]) * 1000)
            end_ms = int(float(params["to"]) * 1000)
            return start_ms, end_ms, end_ms - start_ms > 90 * DAY_MS
        days = int(params["days"])
        end_ms = self.now_ms()
        daily = params.get("interval") == "daily" or days > 90
        start_ms = end_ms - days * DAY_MS
        if daily:
            start_ms = start_ms // DAY_MS * DAY_MS
        return start_ms, end_ms, daily

    def _fault_answer(self, handler: BaseHTTPRequestHandler, fault: str | None) -> bool:
        if fault in ("429", "429-retry-after"):
            headers = {"Retry-After": self.retry_after} if fault == "429-retry-after" else {}
            body = {
                "status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit."}
            }
            self._send(handler, 429, body, headers)
        elif fault in ("500", "503"):
            self._send(handler, int(fault), {"error": "internal error"})
        elif fault == "html":
            page = "<!DOCTYPE html><html><head><title>Just a moment...</title></head></html>"
            self._send_text(handler, 200, page, "text/html; charset=utf-8")
        else:
            return False
        return True

    @staticmethod
    def _apply_fault(prices: list[list[Any]], fault: str | None) -> list[list[Any]]:
        if not prices:
            return prices
        mid = len(prices) // 2
        if fault == "out-of-order":
            return prices[mid:] + prices[:mid]
        if fault == "duplicate":
            return [
                p
                for point in prices
                for p in ([point, list(point)] if point is prices[mid] else [point])
            ]
        if fault == "conflicting-duplicate":
            return prices[: mid + 1] + [[prices[mid][0], prices[mid][1] * 1.01]] + prices[mid + 1 :]
        if fault == "negative":
            prices[mid] = [prices[mid][0], -prices[mid][1]]
        elif fault == "null-price":
            prices[mid] = [prices[mid][0], None]
        elif fault == "string-price":
            prices[mid] = [prices[mid][0], "n/a"]
        elif fault == "jump":
            prices[mid] = [prices[mid][0], prices[mid][1] * 3]
        return prices

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_text(handler, status, json.dumps(body), "application/json", headers)

    @staticmethod
    def _send_text(
        handler: BaseHTTPRequestHandler,
        status: int,
        text: str,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = text.encode("utf-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. after its read timeout)


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
