"""The FastAPI application: routers, error mapping, request ids. Never imports torch."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from api.body_limit import BodyLimit
from api.calibration_input import CalibrationIn, CalibrationUpload
from api.dashboard import install_dashboard
from api.errors import install_error_handlers
from api.final_notifications import generation_events
from api.key_cache import KeyCache
from api.metrics import observe_message
from api.nul_characters import RejectNulCharacters
from api.openapi import install_openapi
from api.rate_limit import RateLimiter
from api.request_context import RequestContext
from api.routes import (
    admin,
    calibrations,
    generations,
    openai_compat,
    ops,
    policies,
    policy_preview,
    stats,
)
from api.tasks_client import CeleryTaskSender, TaskSender
from core.gc_freeze import freeze_startup_objects
from core.logs import configure_json_logging
from core.settings import Settings, get_settings
from db.async_connections import AsyncConnections
from db.session import create_session_factory
from services.task_batching import CoalescingSender

API_DESCRIPTION = (
    "Every route takes `Authorization: Bearer <api key>`; the tenant comes from the key. "
    'Every error is `{"error": {"type", "message", "field"}}` with a 4xx status.'
)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with generation_events(app):
        freeze_startup_objects()  # built and connected: keep it out of full collections
        try:
            yield
        finally:
            await app.state.rate_limiter.aclose()
            await app.state.db_connections.aclose()


def create_app(
    settings: Settings | None = None, *, task_sender: TaskSender | None = None
) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Refusal Control Service",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.session_factory = create_session_factory(
        settings.sqlalchemy_url, pool_size=settings.db_pool_size
    )
    app.state.task_sender = task_sender or CoalescingSender(
        CeleryTaskSender(settings), max_rows=settings.rows_per_message, observe=observe_message
    )
    app.state.rate_limiter = RateLimiter(settings.redis_url)
    app.state.key_cache = KeyCache()
    app.state.db_connections = AsyncConnections(settings.sqlalchemy_url, size=settings.db_pool_size)
    app.state.model_name = settings.model_name
    install_error_handlers(app)
    if settings.log_format == "json":
        configure_json_logging()
    # Text PostgreSQL cannot store is a 422 naming the field (inside the limit: reads the body).
    app.add_middleware(RejectNulCharacters)
    # Larger bodies are 413 before they are read whole (the largest legal one is an upload).
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    # Added last, so it is outermost: the 413 above is counted and carries the request id.
    app.add_middleware(RequestContext)

    for module in (
        ops,
        policies,
        policy_preview,
        generations,
        openai_compat,
        calibrations,
        stats,
        admin,
    ):
        app.include_router(module.router)
    install_dashboard(app)
    install_openapi(app, [CalibrationIn, CalibrationUpload])
    return app
