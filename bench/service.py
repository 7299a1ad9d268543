"""Service benchmark: the whole path on this machine, real parts only.

    .venv/bin/python -m bench.service [--requests 96] [--max-tokens 16]

A temporary PostgreSQL database, Redis (db 13), one real Celery worker process with the tiny
model, and uvicorn serving the API. For 1, 8 and 32 concurrent clients it sends synchronous
`POST /v1/generations` (`wait=true`) and reports requests/s and p50/p95 latency; the baseline
is the same requests run directly on the engine in this process (batched as the worker would),
so `service_vs_engine` says what the API, queue and database cost. Saves bench/results/service-<model>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.live_stack import SECRET, live_stack
from core.settings import PROJECT_ROOT
from db.repositories.policies import create_policy
from db.repositories.tenants import create_api_key, create_tenant
from db.session import create_session_factory, session_scope
from tests.worker_process import TINY_MODEL

RESULTS = PROJECT_ROOT / "bench" / "results"
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


def _seed(url: str, tenants: int) -> list[str]:
    """`tenants` tenants with a client key each and `tenant_rules` as their default policy."""
    factory = create_session_factory(url)
    keys = []
    with session_scope(factory) as session:
        for i in range(tenants):
            tenant, _ = create_tenant(
                session=session,
                name=f"bench-{i}",
                secret=SECRET,
                quotas={"requests_per_minute": 10**6},
            )
            rules = tenant_rules(i)
            create_policy(
                session=session,
                tenant_id=tenant.id,
                name="default",
                mode=rules["mode"],
                rules=rules,
                actor="bench",
                is_default=True,
            )
            _, key = create_api_key(
                session=session, secret=SECRET, tenant_id=tenant.id, role="client", name="bench"
            )
            keys.append(key)
    return keys


async def _load(
    base: str, keys: list[str], *, concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    latencies: list[float] = []
    tokens: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = {
                "prompt": PROMPTS[i % len(PROMPTS)],
                "max_tokens": max_tokens,
                "wait": True,
                "timeout": 120,
            }
            started = time.perf_counter()
            response = await client.post(
                f"{base}/v1/generations",
                json=body,
                headers={"Authorization": f"Bearer {keys[i % len(keys)]}"},
            )
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or response.json()["status"] != "succeeded":
                raise RuntimeError(f"request {i}: {response.status_code} {response.text[:300]}")
            tokens.append(response.json()["completion_tokens"])

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=180) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "mean_completion_tokens": float(np.mean(tokens)),
    }


def _engine_baseline(
    model: Path, requests: int, max_tokens: int, batch: int, tenants: int
) -> tuple[float, float]:
    """Requests/s (and mean completion tokens) of the same requests, with the same per-tenant
    policies, on the engine in-process in worker-sized batches."""
    from core.policy import parse_rules
    from workers.engine.batch import Engine
    from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

    engine = Engine.from_dir(str(model))
    reqs = [
        GenerationRequest(
            prompt=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            policy=RowPolicy.from_rules(parse_rules(tenant_rules(i % tenants))),
            sampling=SamplingParams(max_new_tokens=max_tokens),
        )
        for i in range(requests)
    ]
    engine.generate(reqs[:batch])  # warm-up
    tokens = 0
    started = time.perf_counter()
    for i in range(0, requests, batch):
        results, _ = engine.generate(reqs[i : i + batch])
        tokens += sum(r.completion_tokens for r in results)
    return requests / (time.perf_counter() - started), tokens / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model", type=Path, default=TINY_MODEL, help="model directory")
    args = parser.parse_args()
    with live_stack(args.model, label="bench") as stack:
        keys = _seed(stack.database_url, tenants=8)
        env = stack.env
        port = _free_port()
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=PROJECT_ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            asyncio.run(
                _load(base, keys, concurrency=4, requests=16, max_tokens=args.max_tokens)
            )  # warm-up
            rows = [
                asyncio.run(
                    _load(
                        base,
                        keys,
                        concurrency=c,
                        requests=args.requests,
                        max_tokens=args.max_tokens,
                    )
                )
                for c in args.concurrency
            ]
        finally:
            api.terminate()
            api.wait(timeout=30)
    baseline, baseline_tokens = _engine_baseline(
        args.model, args.requests, args.max_tokens, batch=32, tenants=8
    )
    for row in rows:
        row["service_vs_engine"] = row["requests_per_s"] / baseline
    out = {
        "model": args.model.name,
        "max_tokens": args.max_tokens,
        "engine_requests_per_s": baseline,
        "engine_mean_completion_tokens": baseline_tokens,
        "by_concurrency": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"service-{args.model.name}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.model.name}: engine in-process (batches of 32) {baseline:.1f} req/s")
    print("clients  req/s   p50 ms   p95 ms  tokens  vs engine")
    for row in rows:
        print(
            f"{row['concurrency']:7d} {row['requests_per_s']:6.1f} {row['p50_ms']:8.1f}"
            f" {row['p95_ms']:8.1f} {row['mean_completion_tokens']:7.1f}"
            f" {row['service_vs_engine']:9.2f}"
        )


if __name__ == "__main__":
    main()
