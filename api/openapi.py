"""What each route documents besides its success: the error statuses it can answer, all with
the one error model, so the OpenAPI document is the contract (schemathesis checks it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.errors import ErrorBody

_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON (or not valid UTF-8), or a header is malformed",
    401: "Missing, unknown or revoked API key, or a key of a deactivated tenant",
    403: "The key's role may not use this route",
    404: "No such resource in the caller's tenant",
    409: "The change conflicts with the current state",
    413: "The body is larger than the upload limit",
    415: "The body is not sent as application/json",
    422: "A field is invalid; `field` names it",
    429: "Too many requests (tenant quota) or too many failed authentications from this "
    "address; `Retry-After` says when to retry",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}

#: Every authenticated route: bad key, wrong role, failed-authentication throttle.
AUTHENTICATED = (401, 403, 429)
#: Every route with a JSON body: unreadable, too large, not JSON, invalid.
JSON_BODY = (400, 413, 415, 422)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries for these error statuses, with the error model."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status == 429:
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


def links(source: str, targets: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """OpenAPI links from a created resource to the operations on it: `targets` maps a link
    name to (method, path template); the path's one parameter comes from the response body's
    `source` field (e.g. `id`)."""
    out: dict[str, Any] = {}
    for name, (method, path) in targets.items():
        parameter = path[path.index("{") + 1 : path.index("}")]
        ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method
        out[name] = {
            "operationRef": ref,
            "parameters": {parameter: f"$response.body#/{source}"},
        }
    return {"links": out}


def install_openapi(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Build the document once, adding the schemas of `models` (bodies that routes read by hand
    and declare with `openapi_extra`)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            _our_validation_errors(schema)
            for model in models:
                own = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in own.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components[model.__name__] = own
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override hook


def _our_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 with its own body wherever a route has parameters; ours is the
    error body, like every other error."""
    ours = {
        "description": _DESCRIPTIONS[422],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is not None and "HTTPValidationError" in str(response):
                operation["responses"]["422"] = ours
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
