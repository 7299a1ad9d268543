"""Tenants (platform admins) and API keys (tenant admins for their tenant)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CLIENT, PlatformAdmin, SessionDep, TenantAdmin
from api.openapi import AUTHENTICATED, JSON_BODY, errors, links
from db.models import ApiKey
from db.repositories import tenants as repo

router = APIRouter(prefix="/v1", tags=["admin"], responses=errors(*AUTHENTICATED))


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    requests_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    max_tokens: int = Field(default=1024, ge=1, le=32_768)


class TenantCreated(BaseModel):
    tenant_id: uuid.UUID
    name: str
    api_key: str


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    active: bool
    quotas: dict[str, int]
    created_at: datetime


#: Printable text only: names are shown in lists, logs and the dashboard.
KeyName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: KeyName
    role: Literal["tenant_admin", "client"] = CLIENT


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    api_key: str = Field(description="the secret, shown once")


@router.post("/tenants", status_code=status.HTTP_201_CREATED, responses=errors(*JSON_BODY, 409))
def create_tenant(
    body: TenantIn, request: Request, principal: PlatformAdmin, session: SessionDep
) -> TenantCreated:
    tenant, plaintext = repo.create_tenant(
        session=session,
        name=body.name,
        secret=request.app.state.settings.secret_key,
        quotas={"requests_per_minute": body.requests_per_minute, "max_tokens": body.max_tokens},
        actor=principal.actor,
    )
    session.commit()
    return TenantCreated(tenant_id=tenant.id, name=tenant.name, api_key=plaintext)


@router.get("/tenants")
def list_tenants(principal: PlatformAdmin, session: SessionDep) -> list[TenantOut]:
    return [
        TenantOut.model_validate(t, from_attributes=True)
        for t in repo.list_tenants(session=session)
    ]


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut.model_validate(key, from_attributes=True)


@router.get("/keys")
def list_keys(principal: TenantAdmin, session: SessionDep) -> list[KeyOut]:
    return [
        _key_out(k)
        for k in repo.list_api_keys(session=session, tenant_id=principal.require_tenant())
    ]


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: links("id", {"RevokeKey": ("delete", "/v1/keys/{key_id}")}),
        **errors(*JSON_BODY),
    },
)
def create_key(
    body: KeyIn, request: Request, principal: TenantAdmin, session: SessionDep
) -> KeyCreated:
    key, plaintext = repo.create_api_key(
        session=session,
        secret=request.app.state.settings.secret_key,
        tenant_id=principal.require_tenant(),
        role=body.role,
        name=body.name,
        actor=principal.actor,
    )
    session.commit()
    return KeyCreated(**_key_out(key).model_dump(), api_key=plaintext)


@router.delete("/keys/{key_id}", responses=errors(404, 409, 422))
def revoke_key(key_id: uuid.UUID, principal: TenantAdmin, session: SessionDep) -> KeyOut:
    key = repo.revoke_api_key(
        session=session, tenant_id=principal.require_tenant(), key_id=key_id, actor=principal.actor
    )
    session.commit()
    return _key_out(key)
