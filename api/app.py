"""The FastAPI application: routers are mounted here; the app never imports torch."""

from __future__ import annotations

from fastapi import FastAPI

from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="Refusal Control Service", version="0.1.0")
    app.state.settings = settings

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving requests."""
        return {"status": "ok"}

    return app
