"""What pgvault asks a backed-up server about its WAL: identity, position, slot, marks.

Every query works for a non-superuser role with ``REPLICATION`` (``pg_control_system()``
and ``pg_control_checkpoint()`` are readable by anyone; ``pg_create_restore_point`` needs
``GRANT EXECUTE``, see the README). Connections go through :func:`pgvault.postgres.server.connect`,
so errors arrive as :class:`~pgvault.errors.ConnectionFailed` / ``DatabaseError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgvault.errors import DatabaseError
from pgvault.physical.walnames import parse_lsn
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo


@dataclass(frozen=True)
class ServerIdentity:
    """A server's cluster identity and WAL position.

    Attributes:
        system_identifier: ``pg_control_system().system_identifier`` as text (the key of
            the WAL archive: a re-initialised cluster gets a new one).
        timeline: the current timeline (of the last checkpoint).
        segment_size: ``wal_segment_size`` in bytes.
        major, version: ``18``, ``"18.6"``.
        current_lsn: ``pg_current_wal_lsn()`` (bytes).
    """

    system_identifier: str
    timeline: int
    segment_size: int
    major: int
    version: str
    current_lsn: int


@dataclass(frozen=True)
class SlotState:
    """A replication slot as ``pg_replication_slots`` shows it.

    Attributes:
        active: a client (pg_receivewal) is connected on it.
        restart_lsn: the oldest WAL it keeps (None before first use).
        retained_bytes: WAL the server keeps for it (current LSN - restart_lsn).
        wal_status: ``reserved``, ``extended``, ``unreserved`` or ``lost``.
    """

    active: bool
    restart_lsn: int | None
    retained_bytes: int
    wal_status: str | None


def _one(row: tuple[object, ...] | None, what: str) -> tuple[object, ...]:
    if row is None:
        raise DatabaseError(f"the server returned no {what}")
    return row


def identify(info: ConnInfo) -> ServerIdentity:
    """Read the identity and WAL position of the server ``info`` points at.

    Raises:
        ConnectionFailed: unreachable; DatabaseError: a query failed (e.g. a standby).
    """
    with server.connect(info) as conn:
        major, version = server.server_version(conn)
        sysid, timeline = _one(
            conn.execute(
                "SELECT s.system_identifier::text, c.timeline_id "
                "FROM pg_control_system() s, pg_control_checkpoint() c"
            ).fetchone(),
            "control data",
        )
        size, lsn = _one(
            conn.execute(
                "SELECT setting::bigint, pg_current_wal_lsn()::text FROM pg_settings "
                "WHERE name = 'wal_segment_size'"
            ).fetchone(),
            "wal_segment_size",
        )
    return ServerIdentity(
        system_identifier=str(sysid),
        timeline=int(str(timeline)),
        segment_size=int(str(size)),
        major=major,
        version=version,
        current_lsn=parse_lsn(str(lsn)),
    )


def slot_state(info: ConnInfo, slot: str) -> SlotState | None:
    """The replication slot ``slot``, or None when the server has none of that name."""
    with server.connect(info) as conn:
        row = conn.execute(
            "SELECT active, restart_lsn::text, "
            "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, "
            "wal_status FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    if row is None:
        return None
    active, restart, retained, status = row
    return SlotState(
        active=bool(active),
        restart_lsn=None if restart is None else parse_lsn(str(restart)),
        retained_bytes=int(str(retained)),
        wal_status=None if status is None else str(status),
    )


def drop_slot(info: ConnInfo, slot: str) -> None:
    """``pg_drop_replication_slot(slot)`` if it exists and nobody uses it."""
    with server.connect(info) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active",
            (slot,),
        )


def create_restore_point(info: ConnInfo, name: str) -> tuple[int, int]:
    """``pg_create_restore_point(name)``; returns ``(lsn, timeline)`` of the mark.

    Raises:
        DatabaseError: e.g. ``permission denied`` (grant EXECUTE on the function).
    """
    with server.connect(info) as conn:
        lsn, timeline = _one(
            conn.execute(
                "SELECT pg_create_restore_point(%s)::text, timeline_id "
                "FROM pg_control_checkpoint()",
                (name,),
            ).fetchone(),
            "restore point",
        )
    return parse_lsn(str(lsn)), int(str(timeline))
