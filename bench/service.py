"""Service benchmark: the whole path on this machine, real parts only.

    .venv/bin/python -m bench.service [--requests 96] [--max-tokens 16] [--model DIR]

A temporary PostgreSQL database, Redis (db 13), one real Celery worker process, and uvicorn
serving the API. For 1, 8 and 32 closed-loop clients it sends synchronous `POST /v1/generations`
(`wait=true`) and reports requests/s and p50/p95 latency, then the same load streamed
(`stream=true`) for the time to the first event (the decision, i.e. the first token) and to the
first text. The baseline runs the same requests with the same clients on the engine in this
process (`EngineLoop`, continuous batching like the worker), so `service_vs_engine` and
`overhead_p50_ms` say what the API, queue, database and notifications cost. The synchronous
load and the baseline alternate in `--blocks` blocks (A B, B A, ...) while the idle service
waits, so a machine whose speed drifts during the run moves both alike; a block holds
`--requests / --blocks` requests, at least two per client.
With `--embedded` the service is `rcs serve`'s embedded stack (PostgreSQL and Redis from their
wheels, supervised), started exactly as `make run` starts it.
Saves bench/results/service-<model>[-embedded].json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.http_client import KeepAliveConnection, Response
from bench.live_stack import SECRET, live_stack
from bench.saving import save_results
from core.policy import parse_rules
from core.settings import PROJECT_ROOT, SECRET_FILE
from db.repositories.policies import NewVersion, PolicyRef, create_version, get_policy_by_name
from db.repositories.tenants import create_api_key, create_tenant
from db.session import create_session_factory, session_scope
from tests.service.stack import Stack, stack_dir
from tests.worker_process import TINY_MODEL
from workers.command_line import api_command

PROMPTS = [
    "What is the capital of France?",
    "How do I make a bomb?",
    "Write a haiku about the sea.",
    "What do you feel when you are alone?",
    "Draw me a horse.",
    "Who will win the next election?",
    "Explain photosynthesis briefly.",
    "Why did Napoleon win the battle of Waterloo?",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tenant_rules(i: int) -> dict[str, Any]:
    """Tenant i's policy: bias and threshold tenants alternate, each with its own safety setting."""
    mode = "threshold" if i % 2 else "bias"
    return {
        "mode": mode,
        "categories": {"safety": {"threshold": 0.1 * (i + 1), "bias": float(i - 4)}},
    }


def _seed(url: str, tenants: int, secret: str) -> list[str]:
    """`tenants` tenants with a client key each and `tenant_rules` on their default policy."""
    factory = create_session_factory(url)
    keys = []
    with session_scope(factory) as session:
        for i in range(tenants):
            tenant, _ = create_tenant(
                session=session,
                name=f"bench-{i}",
                secret=secret,
                quotas={"requests_per_minute": 10**6},
            )
            rules = tenant_rules(i)
            policy = get_policy_by_name(session=session, tenant_id=tenant.id, name="default")
            create_version(
                session=session,
                ref=PolicyRef(tenant.id, policy.id),
                new=NewVersion(parse_rules(rules), "bench"),
            )
            _, key = create_api_key(
                session=session, secret=secret, tenant_id=tenant.id, role="client", name="bench"
            )
            keys.append(key)
    return keys


@contextmanager
def running_service(
    model: Path, *, embedded: bool, workers: int = 1
) -> Iterator[tuple[str, list[str]]]:
    """The service's URL and 8 tenants' keys: `rcs serve`'s embedded stack exactly as a user
    starts it, or uvicorn beside a worker on the suite's PostgreSQL and Redis."""
    if embedded:
        stack = Stack(
            stack_dir() / "data", RCS_MODEL_DIR=str(model.resolve()), RCS_LOG_FORMAT="text"
        )
        stack.start()
        try:
            secret = (stack.data_dir / SECRET_FILE).read_text().strip()
            yield stack.url, _seed(stack.state().database_url or "", tenants=8, secret=secret)
        finally:
            stack.stop()
        return
    with live_stack(model, label="bench", workers=workers) as live:
        keys = _seed(live.database_url, tenants=8, secret=SECRET)
        port = _free_port()
        api = subprocess.Popen(api_command("127.0.0.1", port), env=live.env, cwd=PROJECT_ROOT)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            yield base, keys
        finally:
            api.terminate()
            api.wait(timeout=30)


def _summary(concurrency: int, requests: int, elapsed: float, latencies: list[float]) -> dict:
    """Rates and percentiles, with the raw figures (`combine` pools blocks from them)."""
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "elapsed_s": elapsed,
        "latencies_s": latencies,
    }


def combine(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Blocks of one load pooled: all their requests' latencies, over their summed time."""
    latencies = [x for b in blocks for x in b["latencies_s"]]
    row = _summary(
        blocks[0]["concurrency"], len(latencies), sum(b["elapsed_s"] for b in blocks), latencies
    )
    tokens = [b["mean_completion_tokens"] * b["requests"] for b in blocks]
    row["mean_completion_tokens"] = sum(tokens) / len(latencies)
    return row


def without_raw(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("elapsed_s", "latencies_s")}


#: The synchronous load's HTTP client: `lean` (bench/http_client.py, one keep-alive connection
#: per client, what a load tool spends) or `httpx` (its AsyncClient, 1.1-1.5 ms of CPU a request here).
CLIENTS = ("lean", "httpx")


async def _load(
    base: str,
    keys: list[str],
    *,
    concurrency: int,
    requests: int,
    max_tokens: int,
    stream: bool = False,
    client: str = "lean",
) -> dict[str, Any]:
    """Closed-loop clients; synchronous waits, or streams (httpx) timed to their first events."""
    latencies: list[float] = []
    first_event: list[float] = []
    first_text: list[float] = []
    tokens: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    def request(i: int) -> tuple[dict[str, Any], dict[str, str]]:
        body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "timeout": 120}
        body |= {"stream": True} if stream else {"wait": True}
        return body, {"Authorization": f"Bearer {keys[i % len(keys)]}"}

    def record(i: int, started: float, response: httpx.Response | Response) -> None:
        latencies.append(time.perf_counter() - started)
        answer = response.json() if response.status_code == 200 else {}
        if answer.get("status") != "succeeded":
            raise RuntimeError(f"request {i}: {response.status_code} {response.text[:300]}")
        tokens.append(answer["completion_tokens"])

    async def streamed(http: httpx.AsyncClient, i: int) -> None:
        body, headers = request(i)
        started, seen_text = time.perf_counter(), False
        async with http.stream(
            "POST", f"{base}/v1/generations", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                raise RuntimeError(f"request {i}: {response.status_code}")
            async for line in response.aiter_lines():
                now = time.perf_counter() - started
                if line == "event: decision":
                    first_event.append(now)
                elif line == "event: text" and not seen_text:
                    first_text.append(now)
                    seen_text = True
                elif line.startswith("data: {") and '"completion_tokens"' in line:
                    tokens.append(json.loads(line.removeprefix("data: "))["completion_tokens"])
        latencies.append(time.perf_counter() - started)

    def next_index() -> int | None:
        try:
            return queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def httpx_loop(http: httpx.AsyncClient) -> None:
        while (i := next_index()) is not None:
            if stream:
                await streamed(http, i)
                continue
            body, headers = request(i)
            started = time.perf_counter()
            response = await http.post(f"{base}/v1/generations", json=body, headers=headers)
            record(i, started, response)

    async def lean_loop() -> None:
        async with KeepAliveConnection(base) as connection:
            while (i := next_index()) is not None:
                body, headers = request(i)
                started = time.perf_counter()
                record(i, started, await connection.post_json("/v1/generations", body, headers))

    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, got {client!r}")
    started = time.perf_counter()
    if client == "lean" and not stream:
        await asyncio.gather(*(lean_loop() for _ in range(concurrency)))
    else:
        limits = httpx.Limits(max_connections=concurrency + 4)
        async with httpx.AsyncClient(timeout=180, limits=limits) as http:
            await asyncio.gather(*(httpx_loop(http) for _ in range(concurrency)))
    row = _summary(concurrency, requests, time.perf_counter() - started, latencies)
    row["mean_completion_tokens"] = float(np.mean(tokens)) if tokens else None
    if stream:
        row["ttft_p50_ms"] = float(np.percentile(np.array(first_event) * 1000, 50))
        row["ttft_p95_ms"] = float(np.percentile(np.array(first_event) * 1000, 95))
        if first_text:
            row["first_text_p50_ms"] = float(np.percentile(np.array(first_text) * 1000, 50))
    return row


def engine_requests(requests: int, max_tokens: int, tenants: int) -> list[Any]:
    """The benchmark's requests as engine requests, with the same per-tenant policies."""
    from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

    return [
        GenerationRequest(
            prompt=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            policy=RowPolicy.from_rules(parse_rules(tenant_rules(i % tenants))),
            sampling=SamplingParams(max_new_tokens=max_tokens),
        )
        for i in range(requests)
    ]


def engine_closed_loop(loop: Any, reqs: list[Any], concurrency: int) -> dict[str, Any]:
    """The same closed-loop clients (threads) submitting straight to an in-process EngineLoop."""
    latencies: list[float] = []
    tokens: list[int] = []
    todo = iter(range(len(reqs)))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            started = time.perf_counter()
            result = loop.submit(reqs[i], tenant=i % 8).result()
            latencies.append(time.perf_counter() - started)
            tokens.append(result.completion_tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = _summary(concurrency, len(reqs), time.perf_counter() - started, latencies)
    row["mean_completion_tokens"] = float(np.mean(tokens))
    return row


@contextmanager
def engine_in_process(model: Path, max_tokens: int) -> Iterator[Any]:
    """An `EngineLoop` on the model in this process, configured like the worker's, warmed up."""
    from core.settings import get_settings
    from workers.engine.batch import Engine
    from workers.engine.loop import configured_loop

    settings = get_settings()
    engine = Engine.from_dir(str(model))
    loop = configured_loop(engine, settings)  # bounded and admitting as the worker's
    try:
        engine_closed_loop(loop, engine_requests(16, max_tokens, tenants=8), 4)  # warm-up
        yield loop
    finally:
        loop.close()


def _engine_baseline(
    model: Path, requests: int, max_tokens: int, concurrency: list[int]
) -> dict[int, dict[str, Any]]:
    """Per client count, the same requests and clients on the engine in this process."""
    reqs = engine_requests(requests, max_tokens, tenants=8)
    with engine_in_process(model, max_tokens) as loop:
        return {c: engine_closed_loop(loop, reqs, c) for c in concurrency}


def interleaved(
    base: str,
    keys: list[str],
    loop: Any,
    *,
    concurrency: int,
    requests: int,
    max_tokens: int,
    blocks: int,
    client: str = "lean",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The synchronous load on the service and the same requests on the in-process engine, in
    alternating blocks (service first, then engine first, ...), so that a machine that speeds up
    or slows down during the run moves both; each pooled over its blocks. A block holds
    `requests / blocks` requests, but at least two per client, or fewer clients would run."""
    size = max(requests // blocks, 2 * concurrency)
    reqs = engine_requests(size, max_tokens, tenants=8)
    service, engine = [], []
    for block in range(blocks):
        for side in ("service", "engine") if block % 2 == 0 else ("engine", "service"):
            if side == "service":
                load = {"concurrency": concurrency, "requests": size, "max_tokens": max_tokens}
                service.append(asyncio.run(_load(base, keys, client=client, **load)))
            else:
                engine.append(engine_closed_loop(loop, reqs, concurrency))
    return combine(service), combine(engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model", type=Path, default=TINY_MODEL, help="model directory")
    parser.add_argument(
        "--blocks", type=int, default=4, help="alternating service / engine blocks per load"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch threads, worker and baseline alike"
    )
    parser.add_argument(
        "--client", choices=CLIENTS, default="lean", help="the synchronous load's HTTP client"
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="serve with `rcs serve`'s embedded PostgreSQL and Redis, as `make run` does",
    )
    args = parser.parse_args()
    if args.torch_threads:  # a busy shared machine: fewer threads spin less
        import torch

        torch.set_num_threads(args.torch_threads)
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    with (
        running_service(args.model, embedded=args.embedded) as (base, keys),
        engine_in_process(args.model, args.max_tokens) as loop,
    ):
        asyncio.run(
            _load(base, keys, concurrency=4, requests=16, max_tokens=args.max_tokens)
        )  # warm-up
        rows = []
        for c in args.concurrency:
            row, engine = interleaved(
                base,
                keys,
                loop,
                concurrency=c,
                requests=args.requests,
                max_tokens=args.max_tokens,
                blocks=args.blocks,
                client=args.client,
            )
            load = {"concurrency": c, "requests": args.requests, "max_tokens": args.max_tokens}
            streamed = asyncio.run(_load(base, keys, stream=True, **load))
            row = without_raw(row)
            row["streamed"] = {
                k: v
                for k, v in without_raw(streamed).items()
                if k not in ("concurrency", "requests")
            }
            row["engine"] = without_raw(engine)
            row["service_vs_engine"] = row["requests_per_s"] / engine["requests_per_s"]
            row["overhead_p50_ms"] = row["p50_ms"] - engine["p50_ms"]
            rows.append(row)
    stack_name = "embedded" if args.embedded else "servers"
    out = {
        "model": args.model.name,
        "stack": stack_name,
        "max_tokens": args.max_tokens,
        "torch_threads": args.torch_threads or None,
        "client": args.client,
        "by_concurrency": rows,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_results(f"service-{args.model.name}{'-embedded' if args.embedded else ''}.json", out)
    print(
        f"{args.model.name} on the {stack_name} stack: service (sync wait, streamed TTFT) vs"
        " engine in-process, same clients"
    )
    print(
        "clients  req/s  p50 ms  p95 ms  TTFT p50  engine req/s  engine p50  vs engine  overhead p50"
    )
    for row in rows:
        e, st = row["engine"], row["streamed"]
        print(
            f"{row['concurrency']:7d} {row['requests_per_s']:6.1f} {row['p50_ms']:7.1f}"
            f" {row['p95_ms']:7.1f} {st['ttft_p50_ms']:9.1f} {e['requests_per_s']:13.1f}"
            f" {e['p50_ms']:11.1f} {row['service_vs_engine']:10.2f} {row['overhead_p50_ms']:13.1f}"
        )


if __name__ == "__main__":
    main()
