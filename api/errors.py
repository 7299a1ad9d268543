"""Errors mapped to HTTP once: every 4xx (ours, FastAPI's, Starlette's) is the documented body
`{"error": {"type", "message", "field"?}}`, and an unforeseen failure is a documented 500 too."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import psycopg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.tasks_client import BrokerUnavailable
from core.categories import UnknownCategory
from core.policy import InvalidPolicy
from db.errors import AlreadyExists, Conflict, NotFound, StaleVersion

log = logging.getLogger("rcs.api")
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


class ErrorDetail(BaseModel):
    """What went wrong: a stable `type`, a readable `message`, the offending `field` if any."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_body(type_: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return {"error": error}


#: Location parts pydantic adds for the member of a union (`constrained-str`, `list[TextPart]`).
_UNION_MEMBER = re.compile(r"[\[\-]|^(str|int|float|bool|list|dict)$")


def field_path(loc: Sequence[str | int]) -> str:
    """A dotted field name from a pydantic location, without the `body`/`query`/... root or
    the names of union members."""
    parts = [str(p) for p in loc if p != "[key]" and not _UNION_MEMBER.search(str(p))]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def validation_error(exc: ValidationError, *, prefix: str = "") -> ApiError:
    """A 422 naming the first invalid field of a model validated by hand (not by FastAPI)."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(p for p in (prefix, field_path(first["loc"])) if p)
    message = str(first["msg"]).removeprefix("Value error, ")
    return ApiError(422, "validation_error", message, field=field or None)


def is_json_content_type(value: str | None) -> bool:
    """`application/json` or any `application/*+json`, parameters ignored."""
    media = (value or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    allowed = [
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


#: Starlette's own HTTP errors (routing, body parsing, body limit) by status: type and field.
_HTTP_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_body", "body"),
    404: ("not_found", None),
    405: ("method_not_allowed", None),
    413: ("too_large", "body"),
    415: ("unsupported_media_type", "Content-Type"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.type, exc.message, exc.field), exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_, field = _HTTP_ERRORS.get(exc.status_code, ("http_error", None))
        message = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 400:  # FastAPI's "There was an error parsing the body"
            message = "the body could not be read (invalid UTF-8, or JSON nested too deep)"
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return JSONResponse(error_body(type_, message, field), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return JSONResponse(
                error_body("invalid_json", "request body is not valid JSON", "body"), 400
            )
        content_type = request.headers.get("content-type")
        body_error = any(tuple(e["loc"])[:1] == ("body",) for e in errors)
        if body_error and content_type and not is_json_content_type(content_type):
            message = f"send the body as application/json, not {content_type}"
            return JSONResponse(error_body("unsupported_media_type", message, "Content-Type"), 415)
        details = [{"field": field_path(e["loc"]), "message": _message(e)} for e in errors]
        body = error_body(
            "validation_error", _message(first), field_path(first["loc"]), details=details
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
    @app.exception_handler(psycopg.OperationalError)  # the event loop's own connections
    @app.exception_handler(psycopg.InterfaceError)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        body = error_body("unavailable", "the database is unavailable; retry shortly")
        return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    # Redis unreachable or too slow to answer (a stream or notification read): the same outage.
    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
        body = error_body("unavailable", "the event store is unavailable; retry shortly")
        return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(error_body("conflict", str(exc), getattr(exc, "field", None)), 409)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not an input: logged with its traceback, answered in the documented shape.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal error; see the logs"), 500)


def _message(error: Any) -> str:
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")
