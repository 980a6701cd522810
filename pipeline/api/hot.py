"""``HotRoute``: the route class of the hot endpoints (the predict routes).

A hot handler is written like any FastAPI route, with typed inputs and a ``response_model``::

    router = APIRouter(route_class=HotRoute)

    @router.post("/api/v1/predict", response_model=PredictResponse, summary=...)
    async def predict_v1(runtime: Runtime, body: PredictRequest) -> bytes: ...

FastAPI reads that signature to write the OpenAPI entry (request body or query parameters from
the pydantic model, the ``X-API-Key`` security requirement, the error answers of
:data:`~pipeline.api.errors.ERRORS`), but at request time the route skips FastAPI's parameter
and dependency solving, which costs more than the rest of a hot request (see
``bench/bench_api.py``). Instead it checks the API key, validates the body (JSON) or the query
with the same model, calls the handler, maps validation and steps errors to the API's answers
and sends the bytes the handler returns as JSON. A forecast that cannot answer now (every step
past, or older than the hard limit) is answered 503.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi import params
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from pipeline.api.deps import API_KEY, ApiRuntime, api_key_of, check_api_key, runtime_of
from pipeline.api.errors import (
    ERRORS,
    ForecastUnavailable,
    StepsError,
    forecast_unavailable,
    invalid_input,
    json_response,
    steps_beyond_horizon,
)

HotHandler = Callable[[ApiRuntime, Any], Awaitable[bytes]]


def hot_input(endpoint: Callable[..., Any]) -> tuple[str, type[BaseModel]]:
    """Where a hot handler's input comes from (``"body"`` or ``"query"``) and its model.

    The handler takes ``(runtime, <input>)``; the input is a pydantic model, read from the query
    when annotated ``Annotated[Model, Query()]``, else from the JSON body.
    """
    names = list(inspect.signature(endpoint).parameters)
    hints = get_type_hints(endpoint, include_extras=True)
    if len(names) != 2:
        raise TypeError(f"{endpoint.__name__}: a hot handler takes (runtime, input)")
    hint = hints[names[1]]
    where = "body"
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        if any(isinstance(extra, params.Query) for extra in extras):
            where = "query"
    if not (isinstance(hint, type) and issubclass(hint, BaseModel)):
        raise TypeError(f"{endpoint.__name__}: the input {names[1]!r} must be a pydantic model")
    return where, hint


class HotRoute(APIRoute):
    """A route documented by FastAPI from its signature, answered without its machinery."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        dependencies = list(kwargs.get("dependencies") or [])
        dependencies += [dep for dep in API_KEY if dep not in dependencies]  # the docs' security
        kwargs["dependencies"] = dependencies
        kwargs["responses"] = {**ERRORS, **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler: HotHandler = self.endpoint
        where, model = hot_input(handler)
        from_body = where == "body"
        steps_field = f"{where}.steps"

        async def answer(request: Request) -> Response:
            runtime = runtime_of(request)
            check_api_key(runtime, api_key_of(request.scope))
            try:
                if from_body:
                    value = model.model_validate_json(await request.body())
                else:
                    value = model.model_validate(dict(request.query_params))
            except ValidationError as exc:
                raise invalid_input(exc, where) from None
            try:
                payload = await handler(runtime, value)
            except StepsError as exc:
                raise steps_beyond_horizon(exc, steps_field) from None
            except ForecastUnavailable as exc:
                raise forecast_unavailable(exc) from None
            return json_response(payload)

        return answer
