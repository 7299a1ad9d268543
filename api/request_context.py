"""The outermost middleware of every request: its id, its metrics and its access line.

A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware`
runs the app in a task group and copies the response through memory streams, which cost about
as much of the event loop as the rest of a generation request (measured with py-spy under load).
"""

from __future__ import annotations

import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import observe_request
from core.logs import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"


class RequestContext:
    """Every request carries an id (the caller's `X-Request-ID`, cut to 64 characters, or a new
    one) into `request.state`, logs and tasks, and answers it back; every request is counted,
    timed under its route template and logged once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = (Headers(scope=scope).get(REQUEST_ID_HEADER) or uuid.uuid4().hex)[:64]
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500  # what the caller gets when the app raises before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        token = request_id_var.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observe_request(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)
