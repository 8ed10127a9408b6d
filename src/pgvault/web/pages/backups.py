"""``/backups``: the list (filters, sort by time, server-side pages) and one backup's page
with its actions: verify, verify fully, download by a signed link, pin, delete."""

from __future__ import annotations

import math
from typing import Annotated, TypedDict
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from pgvault import backups, databases
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import ConfigError
from pgvault.service import jobs
from pgvault.web.deps import Parts, Viewer, acting, choice
from pgvault.web.render import PageRoute, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PER_PAGE = 50
STATUSES = ("running", "completed", "failed", "interrupted", "deleted")
TRIGGERS = ("manual", "scheduled", "pre-restore", "upload")
NOTICES = {
    "pinned": "Pinned: retention will not delete this backup.",
    "unpinned": "Unpinned: retention rules apply to this backup again.",
    "deleted": "Deleted: the stored files are gone; the row stays for history.",
}


class Filters(TypedDict):
    """The filters of the list, as :meth:`pgvault.catalog.Catalog.search_backups` takes them."""

    database: str | None
    status: str | None
    trigger: str | None
    environment: str | None
    label: tuple[str, str] | None


def _label(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"label filter {text!r} is not key=value: write e.g. team=payments")
    return key.strip(), value.strip()


def _pages(current: int, last: int) -> list[int]:
    """Page numbers to link: the first, the last, and two either side of ``current``."""
    return sorted({1, last, *range(max(1, current - 2), min(last, current + 2) + 1)})


@router.get("/backups")
def backup_list(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    database: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    trigger: Annotated[str | None, Query(max_length=32)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[str | None, Query(max_length=255)] = None,
    order: Annotated[str | None, Query(max_length=16)] = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> Response:
    """One page of backups (50), newest first unless ``order=oldest``."""
    status = choice(status, STATUSES, "status")
    trigger = choice(trigger, TRIGGERS, "trigger")
    order = choice(order, ("newest", "oldest"), "order") or "newest"
    filters = Filters(
        database=database or None,
        status=status,
        trigger=trigger,
        environment=environment or None,
        label=_label(label),
    )
    total = parts.catalog.count_backups(**filters)
    last = max(1, math.ceil(total / PER_PAGE))
    current = min(page_number, last)
    found = parts.catalog.search_backups(
        **filters,
        oldest_first=order == "oldest",
        limit=PER_PAGE,
        offset=(current - 1) * PER_PAGE,
    )
    query = {
        k: v
        for k, v in {
            "database": database,
            "status": status,
            "trigger": trigger,
            "environment": environment,
            "label": label,
            "order": order if order != "newest" else None,
        }.items()
        if v
    }
    names = sorted(set(parts.settings.databases) | parts.catalog.backup_databases())
    return page(
        request,
        "backups.html",
        title="Backups",
        backups=found,
        copies=parts.catalog.copies_of([r.id for r in found]),
        total=total,
        current=current,
        last=last,
        pages=_pages(current, last),
        link=lambda n: "/backups?" + urlencode({**query, "page": n}),
        filters=query,
        names=names,
        statuses=STATUSES,
        triggers=TRIGGERS,
        filtered=bool(query.keys() - {"order"}),
        first=(current - 1) * PER_PAGE + 1,
    )


@router.get("/backups/{backup_id}")
def backup_detail(
    request: Request,
    backup_id: str,
    viewer: Viewer,
    parts: Parts,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Everything the catalog knows about one backup, and what may be done with it."""
    record = parts.catalog.get_backup(backup_id)
    return page(
        request,
        "backup.html",
        title=f"Backup {record.id}",
        backup=record,
        copies=parts.catalog.copies_of([record.id]).get(record.id, []),
        configured=record.database in parts.settings.databases,
        notice=NOTICES.get(done or ""),
    )


@router.post("/backups/{backup_id}/verify", dependencies=acting("operator"))
def verify(
    backup_id: str,
    viewer: Viewer,
    parts: Parts,
    full: Annotated[bool, Form()] = False,
) -> Response:
    """Verify as a job (the bytes and the archive; ``full``: also a test restore on the
    database's server with row counts compared), then watch it on its job page."""
    record = parts.catalog.get_backup(backup_id)
    server_conn = databases.from_config(parts.settings, record.database).conn if full else None
    job = jobs.start_verify(
        parts.runner,
        record.id,
        full=full,
        server_conn=server_conn,
        decrypt=decryptor_from(parts.settings.age_identity_file),
        created_by=viewer.actor,
    )
    return redirect(f"/jobs/{job.id}")


@router.post("/backups/{backup_id}/download", dependencies=acting("operator"))
def download(backup_id: str, parts: Parts, who: Viewer) -> Response:
    """Send the browser to a signed download link, valid a few minutes (the stored bytes
    as they are: compressed, maybe encrypted)."""
    record = parts.catalog.get_backup(backup_id)
    if record.status != "completed":
        raise ConfigError(f"backup {record.id} is {record.status}: only completed ones download")
    token, _expires = parts.tokens.sign_download(record.id, who)
    return redirect(f"/api/v1/downloads/{token}")


@router.post("/backups/{backup_id}/pin", dependencies=acting("operator"))
def pin(backup_id: str, parts: Parts) -> Response:
    """Pin: retention keeps the backup until it is unpinned."""
    backups.set_pinned(parts.catalog, backup_id, True)
    return redirect(f"/backups/{backup_id}?done=pinned")


@router.post("/backups/{backup_id}/unpin", dependencies=acting("admin"))
def unpin(backup_id: str, parts: Parts) -> Response:
    """Unpin (admins: it lets retention delete the backup again)."""
    backups.set_pinned(parts.catalog, backup_id, False)
    return redirect(f"/backups/{backup_id}?done=unpinned")


@router.get("/backups/{backup_id}/delete", dependencies=acting("admin")[:1])
def delete_form(request: Request, backup_id: str, parts: Parts) -> Response:
    """The confirmation page, naming what will be deleted."""
    record = parts.catalog.get_backup(backup_id)
    return page(
        request,
        "delete.html",
        title=f"Delete backup {record.id}",
        backup=record,
        copies=parts.catalog.copies_of([record.id]).get(record.id, []),
    )


@router.post("/backups/{backup_id}/delete", dependencies=acting("admin"))
def delete(backup_id: str, parts: Parts) -> Response:
    """Delete the stored files and every copy; the row stays as ``deleted``."""
    backups.delete(parts.settings, parts.catalog, backup_id)
    return redirect(f"/backups/{backup_id}?done=deleted")
