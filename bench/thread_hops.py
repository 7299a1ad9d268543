"""What a worker-thread hop costs the API process, against the same call awaited on the loop.

    .venv/bin/python -m bench.thread_hops [--calls 3000] [--concurrency 32] [--rounds 3]

One event loop, `--concurrency` coroutines at a time making `--calls` calls of two kinds, each
made two ways, alternating: the tenant rate check's Lua script on Redis (`api/rate_limit.py`)
through a synchronous client in the loop's thread pool, and through `redis.asyncio`; and a
one-row PostgreSQL query through a synchronous psycopg connection in the thread pool, and
through an `AsyncConnection` (8 connections each way). The figure is this process's CPU time
per call (user + system), which is what a hop adds to a request besides its wait.
Saves bench/results/thread-hops.json.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import psycopg
import redis
import redis.asyncio as aioredis

from api.rate_limit import _SLIDE, WINDOW_SECONDS
from bench.saving import save_results
from tests import servers

QUERY = "SELECT 1 AS one, now() AS at WHERE %s::text IS NOT NULL"
CONNECTIONS = 8


def _slide_args() -> dict[str, list]:
    return {"keys": ["rcs:bench:hops"], "args": [WINDOW_SECONDS, 10**9, "0", uuid.uuid4().hex]}


async def _cpu_per_call(
    call: Callable[[], Awaitable[object]], calls: int, concurrency: int
) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await call()

    began = time.process_time()
    await asyncio.gather(*(one() for _ in range(calls)))
    return (time.process_time() - began) / calls * 1e6


async def run(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    redis_url = servers.redis_url(5)
    dsn = servers.pg_admin_url().replace("postgresql+psycopg://", "postgresql://")
    sync_slide = redis.Redis.from_url(redis_url).register_script(_SLIDE)
    async_client = aioredis.Redis.from_url(redis_url)
    async_slide = async_client.register_script(_SLIDE)
    pool: queue.Queue[psycopg.Connection] = queue.Queue()
    apool: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put(psycopg.connect(dsn, autocommit=True))
        apool.put_nowait(await psycopg.AsyncConnection.connect(dsn, autocommit=True))

    def query() -> object:
        conn = pool.get()
        try:
            return conn.execute(QUERY, ("x",)).fetchone()
        finally:
            pool.put(conn)

    async def aquery() -> object:
        conn = await apool.get()
        try:
            return await (await conn.execute(QUERY, ("x",))).fetchone()
        finally:
            apool.put_nowait(conn)

    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "redis script, thread hop": lambda: loop.run_in_executor(
            None, lambda: sync_slide(**_slide_args())
        ),
        "redis script, awaited": lambda: async_slide(**_slide_args()),
        "postgres query, thread hop": lambda: loop.run_in_executor(None, query),
        "postgres query, awaited": aquery,
    }
    for call in ways.values():  # warm-up: connections made, scripts loaded
        await _cpu_per_call(call, 200, args.concurrency)
    found: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, call in ways.items():
            found[name].append(round(await _cpu_per_call(call, args.calls, args.concurrency), 1))
            print(f"{name:28s} {found[name][-1]:7.1f} CPU us per call", flush=True)
    await async_client.aclose()
    ratios = {
        kind: round(
            statistics.median(
                hop / awaited
                for hop, awaited in zip(
                    found[f"{kind}, thread hop"], found[f"{kind}, awaited"], strict=True
                )
            ),
            2,
        )
        for kind in ("redis script", "postgres query")
    }
    print(f"thread hop / awaited, median of rounds: {ratios}")
    return {"calls": args.calls, "concurrency": args.concurrency, "cpu_us": found, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    save_results("thread-hops.json", asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
