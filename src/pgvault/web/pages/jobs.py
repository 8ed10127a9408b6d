"""``/jobs``: running and recent jobs, one job's page with live progress (its server-sent
events at ``/jobs/{id}/events``, read by the page's script), cancel, and a finished
restore's result with the kept ``*_pre_restore_*`` database and a button to drop it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from pgvault import databases, restores
from pgvault.catalog.jobs import JobRecord, JobStatus
from pgvault.errors import PermissionDenied, PgvaultError
from pgvault.service import jobs
from pgvault.service.jobs import ENDED
from pgvault.web.deps import Parts, Viewer, acting, allowed, choice
from pgvault.web.render import PageRoute, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)
EVENT_EVERY = 0.5  # seconds between looks at a job for its event stream
RESTORE_KINDS = ("restore", "upload-restore")
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
NOTICES = {
    "cancel": "Cancel asked: the job stops at its next safe point (a restore changes nothing).",
    "dropped": "The kept database was dropped.",
}


def progress(job: JobRecord) -> dict[str, Any]:
    """Percent (of ``expected_bytes``, capped at 99 until the job completes) and ETA
    (seconds, from the recent rate) of a job, for the first render of its bar."""
    expected = job.params.get("expected_bytes")
    percent = eta = None
    if job.status == "completed":
        percent = 100
    elif isinstance(expected, int) and expected > 0:
        percent = min(99, int(job.bytes_done * 100 / expected))
        if job.rate:
            eta = max(0.0, (expected - job.bytes_done) / job.rate)
    return {"percent": percent, "eta": eta, "expected": expected}


@router.get("/jobs")
def job_list(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    status: Annotated[str | None, Query(max_length=32)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Running jobs first, then the 50 most recent."""
    status = choice(status, JOB_STATUSES, "job status")
    running = parts.runner.list(status="running", limit=50) if status is None else []
    recent = parts.runner.list(status=status, limit=50, offset=offset)
    return page(
        request,
        "jobs.html",
        title="Jobs",
        running=running,
        recent=[j for j in recent if j.id not in {r.id for r in running}],
        job_status=status,
        offset=offset,
        progress=progress,
    )


def _kept(parts: Parts, job: JobRecord) -> tuple[str | None, bool]:
    """The ``*_pre_restore_*`` database a finished swap restore kept, and whether it is
    still there."""
    result = (job.result or {}).get("restore") or {}
    kept = result.get("previous_database")
    if not kept or job.database not in parts.settings.databases:
        return kept, False
    try:
        target = databases.from_config(parts.settings, job.database)
        return kept, kept in restores.leftovers(parts.catalog, target.conn)
    except PgvaultError:
        return kept, False


@router.get("/jobs/{job_id}")
def job_detail(
    request: Request,
    job_id: str,
    viewer: Viewer,
    parts: Parts,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """One job: live progress while it runs; its result once it ended."""
    job = parts.runner.get(job_id)
    kept, kept_exists = (None, False)
    if job.kind in RESTORE_KINDS and job.status in ENDED:
        kept, kept_exists = _kept(parts, job)
    cancellable = job.status not in ENDED and allowed(
        viewer, "admin" if job.kind in RESTORE_KINDS else "operator"
    )
    return page(
        request,
        "job.html",
        title=f"Job {job.id}",
        job=job,
        ended=job.status in ENDED,
        bar=progress(job),
        kept=kept,
        kept_exists=kept_exists,
        cancellable=cancellable,
        restore=(job.result or {}).get("restore"),
        notice=NOTICES.get(done or ""),
    )


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, viewer: Viewer, parts: Parts) -> StreamingResponse:
    """The job as server-sent events: ``progress`` on each change, ``end`` when it ends."""
    first = await run_in_threadpool(parts.runner.get, job_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        async for job in jobs.watch(parts.runner, first, EVENT_EVERY):
            kind = "end" if job.status in ENDED else "progress"
            yield f"event: {kind}\ndata: {job.model_dump_json()}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post("/jobs/{job_id}/cancel", dependencies=acting("operator"))
def cancel(job_id: str, viewer: Viewer, parts: Parts) -> Response:
    """Ask a running job to stop (restores: admins only)."""
    job = parts.runner.get(job_id)
    if job.kind in RESTORE_KINDS and not allowed(viewer, "admin"):
        raise PermissionDenied("cancelling a restore needs the admin role")
    parts.runner.cancel(job_id)
    return redirect(f"/jobs/{job_id}?done=cancel")


@router.post("/jobs/{job_id}/drop-kept", dependencies=acting("admin"))
def drop_kept(job_id: str, parts: Parts, name: Annotated[str, Form(max_length=255)]) -> Response:
    """Drop the database a swap restore kept (only a name pgvault's restores leave)."""
    job = parts.runner.get(job_id)
    kept, _ = _kept(parts, job)
    if name != kept or job.database is None:
        raise PermissionDenied(f"{name!r} is not the database this restore kept; nothing dropped")
    target = databases.from_config(parts.settings, job.database)
    restores.drop_leftover(parts.catalog, target.conn, name)
    return redirect(f"/jobs/{job_id}?done=dropped")
