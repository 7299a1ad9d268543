"""JSON bodies whose text holds a NUL character are refused with a 422 naming the field.

PostgreSQL's text and jsonb cannot hold U+0000: a prompt, a message or a policy text with one
would fail its INSERT, a 500. JSON can carry the character only as the escape `\\u0000`, so a body
without that escape passes untouched; one with it is parsed, and the first string (a value or a
key) that really holds a NUL is named. Bodies that are not JSON are left to their routes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.body_limit import too_large
from api.errors import error_body, field_path

_ESCAPE = b"\\u0000"
MESSAGE = "text may not hold NUL characters (\\u0000)"


def may_hold_nul(raw: bytes | str) -> bool:
    """Whether JSON text can hold a NUL at all: only as the escape (raw control characters are
    invalid JSON), so text without it needs no walk."""
    return _ESCAPE in raw if isinstance(raw, bytes) else _ESCAPE.decode() in raw


def nul_path(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first string holding a NUL lies in parsed JSON, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items: Iterator[tuple[str | int, Any]]
    if isinstance(value, dict):
        for key in value:
            if "\x00" in key:
                return (*path, key)
        items = iter(value.items())
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = nul_path(item, (*path, key))
        if found is not None:
            return found
    return None


class RejectNulCharacters:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = (
            Headers(scope=scope).get("content-type", "") if scope["type"] == "http" else ""
        )
        if "json" not in content_type:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        try:
            while True:
                message = await receive()
                messages.append(message)
                body += message.get("body", b"")
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        except HTTPException as exc:  # the body limit, met while reading: its own answer
            await too_large(str(exc.detail))(scope, receive, send)
            return
        found = None
        if may_hold_nul(body):
            try:
                found = nul_path(json.loads(body))
            except ValueError:  # not JSON: the route's own validation answers
                found = None
        if found is not None:
            field = field_path(("body", *found)) or "body"
            await JSONResponse(error_body("validation_error", MESSAGE, field), 422)(
                scope, receive, send
            )
            return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)
