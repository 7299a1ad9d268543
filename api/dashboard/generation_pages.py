"""Recent generations of the viewed tenant: decision and first-token probabilities, filterable by
refusal category, refused or answered, policy version and leak verdict, paged by creation time;
and one generation's prompt, answer (with a leak's matched phrase marked) and figures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.dashboard.auth import ViewerDep
from api.dashboard.render import error_page, page, prompt_text
from api.deps import SessionDep
from core.categories import CATEGORIES
from db.errors import NotFound
from db.models import PolicyVersion
from db.repositories import generations as repo
from db.repositories import policies as policy_repo

router = APIRouter(prefix="/dashboard/generations", include_in_schema=False)
PAGE_SIZE = 50
#: The `refused` filter's choices: its query value and what the repository filters on.
REFUSED_CHOICES = {"": None, "yes": True, "no": False}
LEAK_CHOICES = {"": None, "leak": True, "clean": False}


class GenerationFilters(BaseModel):
    """The list's query string as typed: a value it does not know shows an error (or is
    ignored), never a 422; `before` is the page marker, the others are the form's filters."""

    category: str = ""
    refused: str = ""
    version: str = ""
    leak: str = ""
    before: str = ""


@dataclass(frozen=True)
class VersionChoice:
    """A policy version as the filter offers it: `main v3`."""

    id: uuid.UUID
    label: str


def version_choices(session: Session, tenant_id: uuid.UUID) -> list[VersionChoice]:
    out: list[VersionChoice] = []
    for policy in policy_repo.list_policies(session=session, tenant_id=tenant_id):
        versions = policy_repo.list_versions(
            session=session, tenant_id=tenant_id, policy_id=policy.id
        )
        out.extend(VersionChoice(v.id, f"{policy.name} v{v.version}") for v in reversed(versions))
    return out


def _before(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo is not None else None


@router.get("", response_class=HTMLResponse)
def generation_list(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    query: Annotated[GenerationFilters, Query()],
) -> Response:
    tenant_id = viewer.require_tenant()
    choices = version_choices(session, tenant_id)
    labels = {c.id: c.label for c in choices}
    chosen = next((c.id for c in choices if str(c.id) == query.version), None)
    category, before = query.category, query.before
    errors = []
    if category and category not in CATEGORIES:
        errors.append(f"Unknown category {category!r}.")
    if before and _before(before) is None:
        errors.append("The page marker is not a date-time with a time zone; showing the newest.")
    rows = repo.list_generations(
        session=session,
        tenant_id=tenant_id,
        limit=PAGE_SIZE,
        before=_before(before),
        refusal_category=category if category in CATEGORIES else None,
        refused=REFUSED_CHOICES.get(query.refused),
        policy_version_ids=[chosen] if chosen is not None else None,
        leak=LEAK_CHOICES.get(query.leak),
    )
    # The form's values, and the pager's links (which add their own `before`).
    filters = query.model_dump(exclude={"before"})
    older = rows[-1].created_at.isoformat() if len(rows) == PAGE_SIZE else None
    return page(
        request,
        "generations.html",
        viewer,
        rows=rows,
        labels=labels,
        choices=choices,
        filters=filters,
        errors=errors,
        older=older,
        paged=bool(before),
    )


@router.get("/{generation_id}", response_class=HTMLResponse)
def generation_detail(
    request: Request, generation_id: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    tenant_id = viewer.require_tenant()
    try:
        row = repo.get_generation(
            session=session, tenant_id=tenant_id, generation_id=uuid.UUID(generation_id)
        )
    except (ValueError, NotFound):
        return error_page(
            request, viewer, 404, "Generation not found", f"No generation {generation_id}."
        )
    version = session.get(PolicyVersion, row.policy_version_id)
    output = row.output or ""
    at = output.find(row.leak_phrase) if row.leak and row.leak_phrase else -1
    parts = (
        (
            output[:at],
            output[at : at + len(row.leak_phrase or "")],
            output[at + len(row.leak_phrase or "") :],
        )
        if at >= 0
        else (output, "", "")
    )
    return page(
        request,
        "generation.html",
        viewer,
        nav="generations",
        row=row,
        version=version,
        policy_name=version.policy.name if version is not None else "?",
        prompt=prompt_text(row),
        output_parts=parts,
    )
