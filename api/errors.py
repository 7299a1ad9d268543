"""Domain errors mapped to HTTP once: `{"error": {"type", "message", "field"?}}` bodies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from api.tasks_client import BrokerUnavailable
from core.categories import UnknownCategory
from core.policy import InvalidPolicy
from db.errors import AlreadyExists, Conflict, NotFound, StaleVersion

#: What a 503 tells the client to wait: the supervisor restarts a server within seconds.
RETRY_AFTER_SECONDS = 2


class ApiError(Exception):
    """An error with its HTTP status, a stable type, a message and optionally the bad field."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.field = field
        self.headers = headers


def error_body(type_: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return {"error": error}


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.type, exc.message, exc.field), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body("invalid_json", "request body is not valid JSON"), 400)
        details = [{"field": _field_of(e["loc"]), "message": e["msg"]} for e in errors]
        body = error_body(
            "validation_error", str(first["msg"]), _field_of(first["loc"]), details=details
        )
        return JSONResponse(body, 422)

    @app.exception_handler(InvalidPolicy)
    async def _invalid_policy(_: Request, exc: InvalidPolicy) -> JSONResponse:
        return JSONResponse(error_body("validation_error", exc.message, exc.field), 422)

    @app.exception_handler(UnknownCategory)
    async def _unknown_category(_: Request, exc: UnknownCategory) -> JSONResponse:
        return JSONResponse(error_body("validation_error", str(exc), "category"), 422)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        # Another tenant's id is indistinguishable from a missing one.
        return JSONResponse(error_body("not_found", str(exc)), 404)

    @app.exception_handler(StaleVersion)
    async def _stale(_: Request, exc: StaleVersion) -> JSONResponse:
        body = error_body("stale_version", str(exc), "If-Match", active_version=exc.actual)
        return JSONResponse(body, 409)

    @app.exception_handler(AlreadyExists)
    async def _exists(_: Request, exc: AlreadyExists) -> JSONResponse:
        return JSONResponse(error_body("already_exists", str(exc), "name"), 409)

    @app.exception_handler(BrokerUnavailable)
    async def _broker_down(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        body = error_body("unavailable", "the task queue is unavailable; retry shortly")
        return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    # Connection failures and an exhausted pool, not a bad statement: the database is down or
    # overloaded for a moment, which the client can wait out.
    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        body = error_body("unavailable", "the database is unavailable; retry shortly")
        return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(error_body("conflict", str(exc)), 409)
