"""The admin policy dashboard, served by the API under /dashboard (server-rendered, no CDN)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.dashboard.auth import CsrfFailed, LoginRequired, TenantRequired, clear_session_cookie
from api.dashboard.render import STATIC_DIR, error_page


def install_dashboard(app: FastAPI) -> None:
    """Mount the dashboard's pages and static files and its sign-in redirects on `app`."""
    from api.dashboard import (
        audit_page,
        calibration_pages,
        calibration_start,
        category_pages,
        generation_pages,
        key_pages,
        leak_page,
        policy_editor,
        policy_pages,
        preview,
        session,
        shadow_page,
    )

    for module in (
        session,
        policy_editor,
        preview,
        shadow_page,
        policy_pages,
        category_pages,
        calibration_start,
        calibration_pages,
        generation_pages,
        leak_page,
        key_pages,
        audit_page,
    ):
        app.include_router(module.router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = "/dashboard/login"
        if exc.reason:
            target += f"?reason={quote(exc.reason)}"
        response = RedirectResponse(target, status_code=303)
        if exc.reason:
            clear_session_cookie(response)
        return response

    @app.exception_handler(TenantRequired)
    async def _tenant(_: Request, __: TenantRequired) -> Response:
        return RedirectResponse("/dashboard/tenants", status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _: CsrfFailed) -> Response:
        return error_page(
            request,
            None,
            403,
            "Form expired",
            "This form did not carry a valid token for your session. Reload the page and try again.",
        )
