"""the service: users, api_tokens, refresh_tokens, jobs, audit_events, idempotency_keys,
login_failures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgvault.catalog.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
        sa.Column("revoked_at", UTCDateTime),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("replaced_by", sa.String(64)),
        sa.Index("ix_refresh_tokens_user", "user_id"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("database", sa.String(255)),
        sa.Column("backup_id", sa.String(64)),
        sa.Column("restore_id", sa.String(64)),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("phase", sa.Text),
        sa.Column("bytes_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rate", sa.Float),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("error_kind", sa.String(64)),
        sa.Column("created_by", sa.String(255)),
        sa.Column("runner", sa.String(255)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("started_at", UTCDateTime),
        sa.Column("finished_at", UTCDateTime),
        sa.Index("ix_jobs_created", "created_at"),
        sa.Index("ix_jobs_status", "status"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("source_address", sa.String(64)),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("detail", sa.Text),
        sa.Index("ix_audit_events_at", "at"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("actor", sa.String(255), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", UTCDateTime, nullable=False),
        sa.Column("locked_until", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("idempotency_keys")
    op.drop_table("audit_events")
    op.drop_table("jobs")
    op.drop_table("refresh_tokens")
    op.drop_table("api_tokens")
    op.drop_table("users")
