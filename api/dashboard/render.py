"""Template rendering for the dashboard: one Jinja2 environment, pages and error pages."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.dashboard.auth import Viewer
from api.dashboard.series import RANGES
from core.categories import CATEGORIES
from db.models import Generation

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _compact_json(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)


def prompt_text(row: Generation) -> str:
    """The prompt as one string: its text, or its chat messages' contents."""
    if isinstance(row.messages, str):
        return row.messages
    return "\n".join(str(m.get("content", "")) for m in row.messages or [] if isinstance(m, dict))


templates.env.filters["when"] = _when
templates.env.filters["pct"] = _pct
templates.env.filters["compact_json"] = _compact_json
# What any page may use without its route passing it again.
templates.env.globals["categories"] = CATEGORIES
templates.env.globals["ranges"] = list(RANGES)
templates.env.globals["prompt_text"] = prompt_text


def page(
    request: Request,
    name: str,
    viewer: Viewer | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render `name` with the viewer (for the header, tenant and CSRF token) and `context`;
    the notice a write left in the URL (`done`) is said at the top of whichever page it lands on."""
    context.setdefault("nav", name.removesuffix(".html"))
    context.setdefault("notice", request.query_params.get("notice"))
    return templates.TemplateResponse(
        request, name, {"viewer": viewer, **context}, status_code=status_code
    )


def error_page(
    request: Request, viewer: Viewer | None, status_code: int, title: str, message: str
) -> HTMLResponse:
    """An error shown as a page (never a blank one, never raw JSON)."""
    return page(
        request,
        "error.html",
        viewer,
        status_code=status_code,
        title=title,
        message=message,
        nav="error",
    )


def done(path: str, notice: str) -> RedirectResponse:
    """After a write: see `path` (its segments URL-quoted by the caller when they are names),
    with `notice` said at the top of the page."""
    return RedirectResponse(f"{path}?notice={quote_plus(notice)}", status_code=303)


def policy_path(name: str, suffix: str = "") -> str:
    """The dashboard page of policy `name` (a tenant's name, so quoted), plus `suffix`."""
    return f"/dashboard/policies/{quote(name)}{suffix}"
