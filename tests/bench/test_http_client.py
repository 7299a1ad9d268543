"""The benchmarks' lean HTTP client against a real uvicorn-free asyncio server: sized and chunked
bodies, keep-alive over several requests, and a reconnect when the server closed the connection."""

from __future__ import annotations

import asyncio
import json

from bench.http_client import KeepAliveConnection


async def _serve(handler_replies: list[bytes], closes_after: int | None = None):
    """A server answering each request with the next reply; counts connections and requests."""
    seen = {"connections": 0, "bodies": []}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        served = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            seen["bodies"].append(json.loads(await reader.readexactly(length)))
            writer.write(handler_replies[len(seen["bodies"]) - 1])
            await writer.drain()
            served += 1
            if closes_after is not None and served == closes_after:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def _sized(status: int, body: bytes) -> bytes:
    return b"HTTP/1.1 %d OK\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)


def test_sized_and_chunked_answers_on_one_connection() -> None:
    chunked = (
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"a":\r\n2\r\n2}\r\n0\r\n\r\n'
    )

    async def run() -> None:
        replies = [_sized(200, b'{"n": 1}'), chunked, _sized(422, b'{"detail": "x"}')]
        server, base, seen = await _serve(replies)
        async with server, KeepAliveConnection(base) as connection:
            first = await connection.post_json("/p", {"i": 1}, {"Authorization": "Bearer k"})
            second = await connection.post_json("/p", {"i": 2}, {})
            third = await connection.post_json("/p", {"i": 3}, {})
        assert (first.status_code, first.json()) == (200, {"n": 1})
        assert second.json() == {"a": 2}
        assert third.status_code == 422 and third.json() == {"detail": "x"}
        assert seen["bodies"] == [{"i": 1}, {"i": 2}, {"i": 3}]
        assert seen["connections"] == 1

    asyncio.run(run())


def test_reconnects_when_the_server_closed_the_connection() -> None:
    async def run() -> None:
        replies = [_sized(200, b"[1]"), _sized(200, b"[2]")]
        server, base, seen = await _serve(replies, closes_after=1)
        async with server, KeepAliveConnection(base) as connection:
            assert (await connection.post_json("/p", {}, {})).json() == [1]
            await asyncio.sleep(0.05)  # the server has closed its side meanwhile
            assert (await connection.post_json("/p", {}, {})).json() == [2]
        assert seen["connections"] == 2

    asyncio.run(run())
