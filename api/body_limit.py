"""A request body limit answered in the documented error shape.

Starlette's own limiter replaces whatever the app answers with a plain-text 413 when the
declared length is too large; this one answers the JSON error before reading a declared
oversized body, and stops a streamed (chunked) body at the limit by raising a 413 that the
error handlers render.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body


def too_large(message: str) -> JSONResponse:
    return JSONResponse(error_body("too_large", message, "body"), 413)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = f"the body is larger than {self.max_bytes} bytes"
            await too_large(message)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"the body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)
