"""The admin jobs API: start a retraining cycle, refresh or backtest over HTTP and follow it.

``POST /admin/jobs`` answers 202 and the job's record; the job runs in its own process
(:mod:`pipeline.scheduling.jobs`), never in this worker, one at a time under the scheduler's
lock. ``GET /admin/jobs/{id}`` gives its state, timings, run record and the tail of its log,
``GET /admin/jobs`` the newest jobs and ``DELETE /admin/jobs/{id}`` cancels a queued or running
one. Every route needs the admin key (``X-Admin-Key``, off without ``ADMIN_API_KEY``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from pipeline.api.deps import ADMIN_KEY, runtime_of
from pipeline.api.errors import ERRORS, ApiError, json_response
from pipeline.api.schemas import ErrorResponse
from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.scheduling import jobs
from pipeline.scheduling.jobs import JobRecord

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/admin/jobs", tags=["admin"], dependencies=ADMIN_KEY)

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="the id POST answered")]
_RESPONSES: dict[int | str, dict[str, object]] = {
    **{code: ERRORS[code] for code in (401, 404, 422)},
    403: {"model": ErrorResponse, "description": "ADMIN_API_KEY unset"},
    400: {"model": ErrorResponse, "description": "the body cannot be read as JSON (not UTF-8)"},
}


class JobDetail(JobRecord):
    """A job's record and the last lines of its log."""

    log_tail: list[str] = Field(description="the last log_lines lines of the job's log")


class JobList(BaseModel):
    jobs: list[JobRecord] = Field(description="the newest jobs first")


def _settings(request: Request) -> Settings:
    return runtime_of(request)._settings()


def _record_json(record: BaseModel, status: int = 200) -> Response:
    return json_response(record.model_dump_json().encode(), status)


def _start(settings: Settings, body: jobs.JobRequest) -> jobs.JobRecord:
    record = jobs.new_job(settings, body)
    try:
        jobs.spawn(settings, record)
    except OSError as exc:
        record.state, record.reason = "failed", f"its process could not start: {exc}"
        record.ended_at = datetime.now(UTC)
        jobs.write_record(settings, record)
        raise
    return record


@router.post(
    "",
    status_code=202,
    response_model=jobs.JobRecord,
    responses={**_RESPONSES, 400: {"model": ErrorResponse, "description": "the body is not JSON"}},
    summary="Start a retrain, refresh or backtest job in its own process",
)
async def create_job(request: Request, body: jobs.JobRequest) -> Response:
    """202 and the queued job; follow it at the ``Location`` it answers."""
    settings = _settings(request)
    try:
        record = await anyio.to_thread.run_sync(_start, settings, body)
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    except OSError as exc:
        raise ApiError(
            503, "job_not_started", f"the job's process could not start: {exc}"
        ) from None
    response = _record_json(record, 202)
    response.headers["Location"] = f"/admin/jobs/{record.id}"
    return response


@router.get("", response_model=JobList, responses=_RESPONSES, summary="The newest jobs")
async def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> Response:
    records = await anyio.to_thread.run_sync(jobs.list_records, _settings(request), limit)
    return _record_json(JobList(jobs=records))


def _not_found(exc: jobs.JobNotFoundError) -> ApiError:
    return ApiError(404, "not_found", str(exc))


@router.get(
    "/{job_id}",
    response_model=JobDetail,
    responses=_RESPONSES,
    summary="A job's state, timings, run record and log tail",
)
async def get_job(
    request: Request,
    job_id: JobId,
    log_lines: Annotated[int, Query(ge=0, le=1000)] = 50,
) -> Response:
    settings = _settings(request)

    def detail() -> JobDetail:
        record = jobs.get_job(settings, job_id)
        tail = jobs.log_tail(settings, job_id, log_lines) if log_lines else []
        return JobDetail(**record.model_dump(), log_tail=tail)

    try:
        return _record_json(await anyio.to_thread.run_sync(detail))
    except jobs.JobNotFoundError as exc:
        raise _not_found(exc) from None


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=jobs.JobRecord,
    responses={**_RESPONSES, 409: {"model": ErrorResponse, "description": "the job ended"}},
    summary="Cancel a queued or running job",
)
async def cancel_job(request: Request, job_id: JobId) -> Response:
    """A queued job ends at once; a running one after its current stage (``cancelled``)."""
    settings = _settings(request)
    try:
        record = await anyio.to_thread.run_sync(jobs.cancel, settings, job_id)
    except jobs.JobNotFoundError as exc:
        raise _not_found(exc) from None
    except PipelineError as exc:
        raise ApiError(409, "job_ended", str(exc)) from None
    logger.info("job %s: cancel requested", job_id)
    return _record_json(record, 202)
