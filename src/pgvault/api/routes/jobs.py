"""``/jobs``: status and progress, a server-sent event stream, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from pgvault.api.deps import Caller, RunnerDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import JobOut
from pgvault.catalog.jobs import JobStatus
from pgvault.errors import PermissionDenied
from pgvault.service import jobs
from pgvault.service.jobs import ENDED, JobRunner
from pgvault.service.users import role_allows

router = APIRouter(tags=["jobs"], responses=ERRORS)
EVENT_EVERY = 0.5  # seconds between progress checks of an event stream


def _out(runner: JobRunner, job_id: str) -> JobOut:
    return JobOut.model_validate(runner.get(job_id).model_dump())


@router.get("/jobs", response_model=list[JobOut], dependencies=[require_role("viewer")])
def list_jobs(
    runner: RunnerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[JobOut]:
    """Jobs, newest first."""
    found = runner.list(status=status, limit=limit, offset=offset)
    return [JobOut.model_validate(j.model_dump()) for j in found]


@router.get("/jobs/{job_id}", response_model=JobOut, dependencies=[require_role("viewer")])
def get_job(job_id: str, runner: RunnerDep) -> JobOut:
    """Status and progress: ``phase``, ``bytes_done`` (bytes), ``rate`` (bytes/s)."""
    return _out(runner, job_id)


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream."}},
    dependencies=[require_role("viewer")],
)
async def job_events(job_id: str, runner: RunnerDep) -> StreamingResponse:
    """The job as server-sent events: ``progress`` on each change, ``end`` when it ends."""
    first = await run_in_threadpool(runner.get, job_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        async for job in jobs.watch(runner, first, EVENT_EVERY):
            kind = "end" if job.status in ENDED else "progress"
            yield f"event: {kind}\ndata: {job.model_dump_json()}\n\n"  # JobOut's fields

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post(
    "/jobs/{job_id}/cancel", response_model=JobOut, dependencies=[require_role("operator")]
)
def cancel_job(job_id: str, runner: RunnerDep, caller: Caller) -> JobOut:
    """Stop a running job cleanly (a cancelled restore changes nothing); restores need the
    admin role. An ended job is answered as it is."""
    job = runner.get(job_id)
    if job.kind in ("restore", "upload-restore") and not role_allows(caller.role, "admin"):
        raise PermissionDenied("cancelling a restore needs the admin role")
    runner.cancel(job_id)
    return _out(runner, job_id)


__all__ = ["router"]
