"""CoinGecko market-chart client: requests.Session, (connect, read) timeouts, tenacity retries.

Retries happen only where a retry can succeed: connection errors, timeouts, HTTP 429 and 5xx.
Waits grow exponentially with jitter (``HTTP_BACKOFF_INITIAL`` .. ``HTTP_BACKOFF_MAX``); a
``Retry-After`` header is honoured as long as it fits in what is left of ``HTTP_RETRY_BUDGET``.
Attempts are bounded by ``HTTP_MAX_ATTEMPTS`` and total time by the budget (the read timeout of
a late attempt shrinks to what is left of it). A name that does not resolve (DNS) is not
retried: the machine is offline, and ``--source auto`` should fall back without delay.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pandas as pd
import requests
import tenacity

from pipeline.config import Settings
from pipeline.errors import DataValidationError, IngestError, SourceUnavailableError
from pipeline.ingest import ratelimit
from pipeline.ingest.breaker import CircuitBreaker
from pipeline.logs import Redactor, secret_values

logger = logging.getLogger(__name__)

#: CoinGecko serves hourly points for ranges of 2..90 days, daily ones beyond.
MAX_HOURLY_WINDOW = timedelta(days=90)
KEYLESS_MAX_DAYS = 365
TIME_RANGE_ERROR_CODE = 10012
_MIN_READ_TIMEOUT = 0.2


class RetryableHTTPError(Exception):
    """An HTTP answer worth retrying (429 or 5xx)."""

    def __init__(self, status: int, retry_after: float | None, detail: str) -> None:
        super().__init__(
            f"HTTP {status}{f' (Retry-After {retry_after:g}s)' if retry_after else ''}"
        )
        self.status = status
        self.retry_after = retry_after
        self.detail = detail


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_dns_failure(exc: BaseException) -> bool:
    text = repr(exc)
    return any(
        marker in text
        for marker in (
            "NameResolutionError",
            "Name or service not known",
            "getaddrinfo failed",
            "Temporary failure in name resolution",
            "nodename nor servname",
        )
    )


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, RetryableHTTPError):
        return True
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return not _is_dns_failure(exc)
    return False


def _snippet(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat[:limit] + ("..." if len(flat) > limit else "")


def _find_error_code(body: Any) -> tuple[int | None, str]:
    """``(error_code, error_message)`` from CoinGecko's various error bodies."""
    if isinstance(body, dict):
        for key in ("status", "error"):
            inner = body.get(key)
            if isinstance(inner, dict):
                code, message = _find_error_code(inner)
                if code is not None or message:
                    return code, message
            elif isinstance(inner, str) and key == "error":
                return None, inner
        code = body.get("error_code")
        message = body.get("error_message") or body.get("message") or ""
        if isinstance(code, int | str) and str(code).isdigit():
            return int(code), str(message)
        return None, str(message)
    return None, ""


class CoinGeckoClient:
    """Fetch ``/coins/{id}/market_chart`` and ``/market_chart/range`` as price frames."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.base_url = settings.coingecko_base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.setdefault("Accept", "application/json")
        self.session.headers["User-Agent"] = "crypto-forecast-pipeline/0.1"
        # Error texts (requests' own ones too) go through this: they must not carry the key.
        self.redact = Redactor(secret_values(settings))
        # Shared by every ingesting process: refuses calls while CoinGecko keeps failing.
        self.breaker = CircuitBreaker.from_settings("coingecko", settings)
        key = settings.coingecko_api_key
        self.has_key = key is not None and bool(key.get_secret_value())
        if key is not None and self.has_key:
            self.session.headers[self.key_header] = key.get_secret_value()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> CoinGeckoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def plan(self) -> str:
        if self.settings.coingecko_api_plan != "auto":
            return self.settings.coingecko_api_plan
        return "pro" if "pro-api" in self.base_url else "demo"

    @property
    def key_header(self) -> str:
        return "x-cg-pro-api-key" if self.plan == "pro" else "x-cg-demo-api-key"

    # -- HTTP ---------------------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any], coin: str) -> Any:
        """GET ``base_url + path`` with retries; returns the decoded JSON body."""
        self.breaker.before_call()
        url = f"{self.base_url}{path}"
        shown = self.redact(url)
        s = self.settings
        started = time.monotonic()
        backoff = tenacity.wait_exponential_jitter(
            multiplier=s.http_backoff_initial, max=s.http_backoff_max, jitter=s.http_backoff_initial
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RetryableHTTPError) and exc.retry_after is not None:
                return exc.retry_after
            return float(backoff(state))

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            logger.warning(
                "CoinGecko request failed (%s); retry %d/%d in %.2fs",
                self.redact(str(exc)),
                state.attempt_number,
                s.http_max_attempts - 1,
                sleep,
                extra={"coin": coin, "url": shown},
            )

        def attempt() -> requests.Response:
            ratelimit.before_call()  # the run's shared call budget (a no-op without one)
            left = s.http_retry_budget - (time.monotonic() - started)
            read_timeout = min(s.http_read_timeout, max(left, _MIN_READ_TIMEOUT))
            response = self.session.get(
                url, params=params, timeout=(s.http_connect_timeout, read_timeout)
            )
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if response.status_code == 429:
                    ratelimit.rate_limited(retry_after)  # holds every caller of the budget
                raise RetryableHTTPError(response.status_code, retry_after, _snippet(response.text))
            return response

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_attempt(s.http_max_attempts)
            | tenacity.stop_before_delay(s.http_retry_budget),
            wait=wait,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            response = retrying(attempt)
        except RetryableHTTPError as exc:
            gave_up = self._gave_up(exc, coin, retrying, started)
            self.breaker.failed(str(gave_up))
            raise gave_up from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            kind = "connection failed"
            if isinstance(exc, requests.Timeout):
                kind = "timed out"
            elif _is_dns_failure(exc):
                kind = "host name not resolved, offline?"
            unreachable = SourceUnavailableError(
                f"{coin}: CoinGecko unreachable at {self.redact(self.base_url)} ({kind} after "
                f"{attempts} attempt(s): {type(exc).__name__}); check the network, proxy or "
                "COINGECKO_BASE_URL, or use --source sample / --source csv:PATH"
            )
            self.breaker.failed(str(unreachable))
            raise unreachable from exc
        except requests.RequestException as exc:
            raise IngestError(
                f"{coin}: request to {shown} failed: {self.redact(str(exc))}"
            ) from exc
        self.breaker.succeeded()  # it answered (a 4xx or a bad body is not an outage)
        return self._decode(response, shown, coin)

    def _gave_up(
        self,
        exc: RetryableHTTPError,
        coin: str,
        retrying: tenacity.Retrying,
        started: float,
    ) -> IngestError:
        attempts = retrying.statistics.get("attempt_number", 1)
        spent = time.monotonic() - started
        left = self.settings.http_retry_budget - spent
        if exc.status == 429:
            if exc.retry_after is not None and exc.retry_after > left:
                why = (
                    f"it asked to wait {exc.retry_after:g}s (Retry-After), more than the "
                    f"{max(left, 0):.1f}s left of HTTP_RETRY_BUDGET"
                )
            else:
                why = f"still rate limited after {attempts} attempt(s) in {spent:.1f}s"
            fix = (
                "wait a minute and run again, ingest fewer coins at once, or set "
                "COINGECKO_API_KEY (a free demo key has a higher limit)"
            )
            return IngestError(f"{coin}: CoinGecko rate limit (HTTP 429): {why}; {fix}")
        return IngestError(
            f"{coin}: CoinGecko server error HTTP {exc.status} after {attempts} attempt(s) in "
            f"{spent:.1f}s ({self.redact(exc.detail) or 'no body'}); try again later"
        )

    def _decode(self, response: requests.Response, url: str, coin: str) -> Any:
        """The JSON body; ``url`` is shown in errors (already redacted)."""
        text = response.text
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type.lower() or text.lstrip()[:1] == "<":
            raise IngestError(
                f"{coin}: got an HTML page (HTTP {response.status_code}) instead of JSON from "
                f"{url}: {self.redact(_snippet(text, 80))!r}; a proxy, captive portal or wrong "
                "COINGECKO_BASE_URL/--base-url?"
            )
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise IngestError(
                f"{coin}: malformed JSON from {url} (HTTP {response.status_code}, "
                f"{len(text)} bytes; truncated?): {exc}"
            ) from exc
        if response.status_code >= 400:
            raise self._client_error(response.status_code, body, url, coin)
        return body

    def _client_error(self, status: int, body: Any, url: str, coin: str) -> IngestError:
        code, message = _find_error_code(body)
        detail = f"HTTP {status}" + (f", error_code {code}" if code else "")
        detail += f": {self.redact(message)}" if message else ""
        if code == TIME_RANGE_ERROR_CODE or status == 401:
            return IngestError(
                f"{coin}: CoinGecko refused the time range ({detail}). Without a paid API key "
                f"only the past {KEYLESS_MAX_DAYS} days are served: shorten --days to "
                f"{KEYLESS_MAX_DAYS} or less (or --since / HISTORY_DAYS), or set "
                "COINGECKO_API_KEY to a key whose plan covers the range (pro keys also need "
                "COINGECKO_BASE_URL=https://pro-api.coingecko.com/api/v3)"
            )
        if status == 404:
            return IngestError(
                f"{coin}: CoinGecko does not know coin id {coin!r} ({detail}); use CoinGecko "
                "ids such as 'bitcoin' or 'ethereum' (see /coins/list)"
            )
        return IngestError(f"{coin}: CoinGecko rejected the request {url} ({detail})")

    # -- endpoints ----------------------------------------------------------------------------

    def market_chart_range(
        self, coin: str, vs: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """``/coins/{coin}/market_chart/range`` between two instants (unix seconds)."""
        params = {
            "vs_currency": vs,
            "from": math.floor(start.timestamp()),
            "to": math.ceil(end.timestamp()),
        }
        body = self.get_json(f"/coins/{coin}/market_chart/range", params, coin)
        return parse_market_chart(body, coin)

    def market_chart(
        self, coin: str, vs: str, days: int, interval: str | None = None
    ) -> pd.DataFrame:
        """``/coins/{coin}/market_chart?days=N[&interval=daily]`` (the last N days up to now)."""
        params: dict[str, Any] = {"vs_currency": vs, "days": days}
        if interval:
            params["interval"] = interval
        body = self.get_json(f"/coins/{coin}/market_chart", params, coin)
        return parse_market_chart(body, coin)

    def history(
        self, coin: str, vs: str, freq: str, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Points between ``start`` and ``end``: one call for daily data, <= 90-day windows for
        hourly data (CoinGecko answers longer ranges with daily points)."""
        start = datetime.fromtimestamp(math.floor(start.timestamp()), UTC)
        end = datetime.fromtimestamp(math.ceil(end.timestamp()), UTC)
        if freq == "1d":
            return self.market_chart_range(coin, vs, start, end)
        parts = [self.market_chart_range(coin, vs, a, b) for a, b in windows(start, end)]
        return pd.concat(parts, ignore_index=True) if parts else parse_market_chart({}, coin)


def windows(
    start: datetime, end: datetime, size: timedelta = MAX_HOURLY_WINDOW
) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive ``[a, b]`` windows of at most ``size`` covering ``[start, end]``."""
    a = start
    while a < end:
        b = min(a + size, end)
        yield a, b
        a = b


def parse_market_chart(body: Any, coin: str) -> pd.DataFrame:
    """``{"prices": [[ms, p], ...], "market_caps": ..., "total_volumes": ...}`` -> a frame with
    ``ds`` (UTC), ``price`` (as sent; validated later), ``market_cap`` and ``volume``."""
    if not isinstance(body, dict) or not isinstance(body.get("prices", []), list):
        code, message = _find_error_code(body)
        raise IngestError(
            f"{coin}: unexpected CoinGecko answer (no 'prices' list): "
            f"{message or _snippet(json.dumps(body), 120)}"
        )
    columns = {"prices": "price", "market_caps": "market_cap", "total_volumes": "volume"}
    frames = []
    for key, name in columns.items():
        points = body.get(key) or []
        if not isinstance(points, list) or any(
            not isinstance(p, list | tuple) or len(p) != 2 for p in points
        ):
            raise DataValidationError(
                f"{coin}: malformed '{key}' in the CoinGecko answer: expected [[ms, value], ...]"
            )
        frame = pd.DataFrame(points, columns=["ms", name], dtype=object)
        frame["ms"] = pd.to_numeric(frame["ms"], errors="coerce")
        if frame["ms"].isna().any():
            raise DataValidationError(f"{coin}: non-numeric timestamp in CoinGecko '{key}'")
        frames.append(frame.drop_duplicates("ms", keep="last") if name != "price" else frame)
    out = frames[0]
    for extra in frames[1:]:
        out = out.merge(extra, on="ms", how="left")
    out.insert(0, "ds", pd.to_datetime(out.pop("ms").astype("int64"), unit="ms", utc=True))
    return out
