"""ORM models: every table of the service (DESIGN section 3). Alembic owns the schema.

Ids that tenants see are UUIDs; internal rows use integer ids. Every timestamp is aware UTC.
Enumerations are strings guarded by CHECK constraints (portable, easy to extend in a migration).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.histogram import HISTOGRAM_BINS as HISTOGRAM_BINS  # length of refusal_stats.histogram
from core.policy import PolicyMode, PolicyRules
from core.summary import N_CATEGORIES
from db.types import BigIntId, JSONType, PolicyRulesColumn, UTCDateTime, utcnow

ROLES = ("platform_admin", "tenant_admin", "client")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
#: Rows still to do (the partial indexes of the lost-task check hold only these).
UNFINISHED = text("status IN ('queued', 'running')")
CALIBRATION_TARGET_KINDS = ("traffic", "labelled")
CALIBRATION_SPLITS = ("calibration", "holdout")
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The numbers of a stored summary as one typed array, computed by PostgreSQL when the summary
#: is written: s_c for every category (-inf when stored as null), then m, L_1, L_T and the
#: temperature. What-if replay reads this instead of parsing JSON (3x faster for a window).
FIRST_TOKEN_SQL = (
    "CASE WHEN summary IS NULL THEN NULL ELSE ARRAY["
    + ", ".join(f"coalesce((summary->'s'->>{c})::float8, '-Infinity')" for c in range(N_CATEGORIES))
    + ", (summary->>'m')::float8, (summary->>'l1')::float8, (summary->>'lt')::float8"
    ", (summary->>'temperature')::float8] END"
)


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL text of a CHECK that `column` is one of `values`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base: stable constraint names and the project's portable column types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy, not mutated
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
        Any: JSONType,
    }


class CreatedAt:
    """Mixin: `created_at`, set by Python (distinct per row) and by the server as a fallback."""

    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class Tenant(CreatedAt, Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: {"requests_per_minute": int, "max_tokens": int}
    quotas: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKey(CreatedAt, Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint(
            "(role = 'platform_admin') = (tenant_id IS NULL)", name="tenant_matches_role"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    tenant: Mapped[Tenant | None] = relationship(lazy="joined")


class Policy(CreatedAt, Base):
    __tablename__ = "policies"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        # At most one default policy per tenant.
        Index(
            "uq_policies_one_default_per_tenant",
            "tenant_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    active_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("policy_versions.id", use_alter=True, ondelete="SET NULL")
    )
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: A version decided on every request beside the active one, never enforced.
    shadow_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("policy_versions.id", use_alter=True, ondelete="SET NULL")
    )

    active_version: Mapped[PolicyVersion | None] = relationship(
        foreign_keys=[active_version_id], post_update=True
    )
    shadow_version: Mapped[PolicyVersion | None] = relationship(
        foreign_keys=[shadow_version_id], post_update=True
    )


class PolicyVersion(CreatedAt, Base):
    """An immutable snapshot of a policy's rules; every change makes a new one."""

    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("policy_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    policy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    #: The version's whole policy (mode and every category's rule): the one column of truth.
    rules: Mapped[PolicyRules] = mapped_column(PolicyRulesColumn())
    #: "key:<id>", "calibration:<id>", "auto-tuner" or "system" (see `db.actors`).
    created_by: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)

    policy: Mapped[Policy] = relationship(foreign_keys=[policy_id])

    @property
    def mode(self) -> PolicyMode:
        return self.rules.mode


class ServedModel(CreatedAt, Base):
    """A model the workers can load, with its refusal-token manifest (category -> token, id)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    path: Mapped[str] = mapped_column(Text)
    manifest: Mapped[dict[str, Any]]


class Generation(CreatedAt, Base):
    """One generation request and its result."""

    __tablename__ = "generations"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_generations_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_generations_unfinished_created_at", "created_at", postgresql_where=UNFINISHED),
        # The leak examples an admin opens: few rows, read newest first.
        Index(
            "ix_generations_leaks",
            "tenant_id",
            "created_at",
            postgresql_where=text("leak"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    policy_version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("policy_versions.id"))
    #: The policy's shadow version when the request was queued, decided from its summary too.
    shadow_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="SET NULL")
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    model: Mapped[str] = mapped_column(String(100))
    #: A prompt string or a list of chat messages [{"role", "content"}].
    messages: Mapped[Any]
    #: Sampling parameters: max_tokens, temperature, top_p, seed, ...
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    output: Mapped[str | None] = mapped_column(Text)
    refused: Mapped[bool | None] = mapped_column(Boolean)
    refusal_category: Mapped[str | None] = mapped_column(String(32))
    #: First-token probability per category.
    probabilities: Mapped[dict[str, Any] | None]
    #: First-token summary (refusal logits, max and logsumexp of the rest).
    summary: Mapped[dict[str, Any] | None]
    #: `summary` as numbers (`FIRST_TOKEN_SQL`), never written by the application.
    first_token: Mapped[list[float] | None] = mapped_column(
        ARRAY(DOUBLE_PRECISION), Computed(FIRST_TOKEN_SQL, persisted=True)
    )
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    #: Leak monitoring of answered rows: None when not sampled, else whether the answer's text
    #: reads as a refusal (`core.refusal_text`), with the phrase that matched.
    leak: Mapped[bool | None] = mapped_column(Boolean)
    leak_phrase: Mapped[str | None] = mapped_column(String(200))


class CalibrationRun(CreatedAt, Base):
    """A calibration job: prompts + targets in, thresholds or biases (a policy version) out."""

    __tablename__ = "calibration_runs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint(_in("target_kind", CALIBRATION_TARGET_KINDS), name="target_kind"),
        CheckConstraint("holdout_fraction >= 0 AND holdout_fraction < 1", name="holdout"),
        Index("ix_calibration_runs_tenant_id_created_at", "tenant_id", "created_at"),
        Index(
            "ix_calibration_runs_unfinished_created_at", "created_at", postgresql_where=UNFINISHED
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    policy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    #: category -> target refusal rate
    targets: Mapped[dict[str, Any]]
    method: Mapped[str] = mapped_column(String(32))
    target_kind: Mapped[str] = mapped_column(String(16))
    holdout_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None]
    produced_version_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="SET NULL")
    )
    auto_apply: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class CalibrationItem(Base):
    """One calibration prompt, its optional label and its first-token summary once scored."""

    __tablename__ = "calibration_items"
    __table_args__ = (
        UniqueConstraint("run_id", "idx"),
        CheckConstraint(_in("split", CALIBRATION_SPLITS), name="split"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calibration_runs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[Any]
    label: Mapped[str | None] = mapped_column(String(32))
    split: Mapped[str] = mapped_column(String(16), default="calibration")
    summary: Mapped[dict[str, Any] | None]


class RefusalStat(Base):
    """Per tenant, policy version, category, time bucket and role (live or shadow): counts and a
    score histogram. Shadow rows count what a shadow version would have decided."""

    __tablename__ = "refusal_stats"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id",
            "policy_version_id",
            "category",
            "bucket_start",
            "shadow",
            name="uq_refusal_stats_key",
        ),
        Index("ix_refusal_stats_tenant_id_bucket_start", "tenant_id", "bucket_start"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    policy_version_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("policy_versions.id", ondelete="CASCADE")
    )
    category: Mapped[str] = mapped_column(String(32))
    bucket_start: Mapped[datetime]
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    requests: Mapped[int] = mapped_column(Integer, default=0)
    refusals: Mapped[int] = mapped_column(Integer, default=0)
    sum_p: Mapped[float] = mapped_column(Float, default=0.0)
    #: Answered requests whose text was checked for a refusal (leak monitoring), counted under
    #: the category they came nearest to refusing as, and those that read as a refusal.
    leak_checks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    leaks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: HISTOGRAM_BINS counts of the first-token refusal score, in fixed log-odds bins.
    histogram: Mapped[list[Any]] = mapped_column(JSONType)


class AuditEntry(Base):
    """Who changed what, when, with the before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_id_created_at", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE")
    )
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
