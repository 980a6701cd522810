"""How the API answers errors: ``ApiError`` and the errors it maps (a series or model that is
not served, steps beyond the horizon, invalid input, a missing API key), the JSON response
helpers and the exception handlers that turn every error into
``{"error", "message", "request_id", ...}``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.api.middleware import error_body
from pipeline.api.schemas import CONFIDENCE_LEVELS, ErrorResponse
from pipeline.errors import PipelineError
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import FREQUENCY_TABLE

logger = logging.getLogger(__name__)

JSON = "application/json"
#: The allowed values of the fields with a finite set of choices, named in validation errors.
ALLOWED: dict[str, list[Any]] = {
    "timeframe": list(FREQUENCY_TABLE),
    "levels": list(DEFAULT_LEVELS),
    "confidence_level": list(CONFIDENCE_LEVELS),
}
#: The error responses the routes document (``responses=ERRORS``).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "missing or wrong API key",
        404: "unknown coin, timeframe or model (lists what is available)",
        413: "request body too large",
        422: "invalid input (names the field and the allowed values) or steps beyond the horizon",
        429: "rate limited (see Retry-After)",
        503: "no models are loaded, or the forecast cannot answer now: every step of its path is "
        "past, or it is older than STALE_LIMIT_PERIODS (the message says which and what renews it)",
    }.items()
}


class NotServedError(PipelineError):
    """A request names something that is not loaded (HTTP 404)."""

    def __init__(self, message: str, available: Sequence[str]) -> None:
        super().__init__(message)
        self.available = list(available)


class StepsError(PipelineError):
    """More steps than the artifact's horizon (HTTP 422)."""

    def __init__(self, message: str, maximum: int) -> None:
        super().__init__(message)
        self.maximum = maximum


class ForecastUnavailable(PipelineError):
    """The served forecast path cannot answer now (HTTP 503): ``code`` says why.

    ``forecast_expired``: every step of the path is at or before the time of the request;
    ``forecast_stale``: the path is older than the hard limit (``STALE_LIMIT_PERIODS``).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class ApiError(Exception):
    """An error answered as JSON: status, code, message, optional available/details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        available: list[str] | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.available = available
        self.details = details
        self.headers = headers


def invalid_input(errors: Any, prefix: str) -> ApiError:
    """The 422 answer to pydantic validation ``errors`` (fields named under ``prefix``)."""
    if isinstance(errors, ValidationError):
        errors = errors.errors()
    details = validation_details(errors, prefix=prefix)
    return ApiError(422, "validation_error", details_message(details), details=details)


def steps_beyond_horizon(exc: StepsError, field: str) -> ApiError:
    """The 422 answer to more steps than the model's horizon."""
    detail = {"field": field, "message": str(exc), "minimum": 1, "maximum": exc.maximum}
    return ApiError(422, "steps_beyond_horizon", str(exc), details=[detail])


def forecast_unavailable(exc: ForecastUnavailable) -> ApiError:
    """The 503 answer to a forecast path that cannot answer now."""
    return ApiError(503, exc.code, str(exc))


def unauthorized(header: str) -> ApiError:
    """The 401 answer to a missing or wrong key in ``header``."""
    return ApiError(
        401,
        "unauthorized",
        f"missing or invalid {header} header",
        headers={"WWW-Authenticate": "APIKey"},
    )


def json_response(body: bytes, status: int = 200) -> Response:
    """Pre-serialised JSON bytes as a response."""
    return Response(body, status_code=status, media_type=JSON)


def dump_json(data: Any) -> bytes:
    """``data`` serialised compactly (what :func:`dump_response` sends)."""
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def dump_response(data: Any, status: int = 200) -> Response:
    """``data`` serialised compactly as a JSON response."""
    return json_response(dump_json(data), status)


def validation_details(errors: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors -> ``[{field, message, allowed?}]``."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if prefix:
            loc = [prefix, *loc]
        name = next((p for p in reversed(loc) if not p.isdigit()), "")
        detail: dict[str, Any] = {
            "field": ".".join(loc) or "body",
            "message": err.get("msg", "invalid"),
        }
        ctx = err.get("ctx") or {}
        if name in ALLOWED:
            detail["allowed"] = ALLOWED[name]
        elif "expected" in ctx:
            detail["allowed"] = re.findall(r"'([^']*)'", str(ctx["expected"])) or [
                str(ctx["expected"])
            ]
        for bound, keys in (("minimum", ("ge", "gt")), ("maximum", ("le", "lt"))):
            for key in keys:
                if key in ctx:
                    detail[bound] = ctx[key]
                    if key in ("gt", "lt"):
                        detail[bound + "_exclusive"] = True
        out.append(detail)
    return out


def details_message(details: list[dict[str, Any]]) -> str:
    """The details as one message: ``field: message (allowed: …)``, joined by ``; ``."""
    parts = []
    for d in details:
        text = f"{d['field']}: {d['message']}"
        if d.get("allowed") is not None:
            text += f" (allowed: {', '.join(str(a) for a in d['allowed'])})"
        elif "minimum" in d or "maximum" in d:
            text += f" (range: {d.get('minimum', '')}..{d.get('maximum', '')})"
        parts.append(text)
    return "; ".join(parts)


def _error_response(
    request: Request, status: int, code: str, message: str, **more: Any
) -> Response:
    rid = getattr(request.state, "request_id", None) or "-"
    headers = more.pop("headers", None)
    return Response(
        error_body(code, message, rid, **more), status_code=status, media_type=JSON, headers=headers
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        logger.warning("%s: %s", exc.code, exc.message)
    return _error_response(
        request,
        exc.status,
        exc.code,
        exc.message,
        available=exc.available,
        details=exc.details,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    return _error_response(
        request, 422, "validation_error", details_message(details), details=details
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path}; see /docs for the endpoints"
    return _error_response(
        request,
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        message,
        headers=getattr(exc, "headers", None),
    )


def add_error_handlers(app: FastAPI) -> None:
    """Answer ``ApiError``, request validation errors and HTTP errors in the API's JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
