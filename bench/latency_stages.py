"""Where a synchronous generation's time goes, stage by stage, at one client or under load.

    .venv/bin/python -m bench.latency_stages [--requests 60] [--clients 1] [--model DIR]

The stack of `bench/service.py` (uvicorn, one Celery worker, PostgreSQL, Redis), `--clients`
closed-loop clients (the lean keep-alive client, `bench/http_client.py`) sending
`POST /v1/generations` with `wait`; one client sends one request at a time. Each stage is read from the
client's clock and the row's own stamps (one machine, one clock): sent -> row created in the API
(HTTP, key, policy, quota), created -> claimed by the worker (insert, commit, publish, the
worker's pickup and claim), claimed -> finished (the engine, then the recorder's transaction),
finished -> response at the client (commit, notification, response). Then the same requests
with the same clients on the engine in-process, for the decoding time itself. Medians, in ms;
saves bench/results/latency-stages-<model>[-<clients>-clients].json.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.http_client import KeepAliveConnection
from bench.saving import save_results
from bench.service import PROMPTS, _engine_baseline, running_service
from tests.worker_process import TINY_MODEL

STAGES = ("sent_to_created", "created_to_claimed", "claimed_to_finished", "finished_to_answer")


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def _one(
    connection: KeepAliveConnection, key: str, i: int, max_tokens: int
) -> dict[str, float]:
    body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "wait": True}
    sent = time.time()
    response = await connection.post_json(
        "/v1/generations", body, {"Authorization": f"Bearer {key}"}
    )
    answered = time.time()
    row = response.json() if response.status_code == 200 else {}
    if row.get("status") != "succeeded":
        raise RuntimeError(f"request {i}: {response.status_code} {response.text[:300]}")
    created, claimed, finished = (
        _stamp(row[k]) for k in ("created_at", "started_at", "finished_at")
    )
    stamps = (sent, created, claimed, finished, answered)
    out = {name: 1000 * (b - a) for name, a, b in zip(STAGES, stamps[:-1], stamps[1:], strict=True)}
    out["total"] = 1000 * (answered - sent)
    return out


async def _stages(
    base: str, keys: list[str], *, clients: int, requests: int, max_tokens: int
) -> list[dict[str, float]]:
    """Every request's stages, from `clients` closed-loop clients sharing `requests`."""
    todo = iter(range(requests))
    rows: list[dict[str, float]] = []

    async def client() -> None:
        async with KeepAliveConnection(base) as connection:
            for i in todo:
                rows.append(await _one(connection, keys[i % len(keys)], i, max_tokens))

    await asyncio.gather(*(client() for _ in range(clients)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", type=Path, default=TINY_MODEL, help="model directory")
    args = parser.parse_args()
    load = {"clients": args.clients, "max_tokens": args.max_tokens}
    with running_service(args.model, embedded=False) as (base, keys):
        asyncio.run(_stages(base, keys, requests=8 * args.clients, **load))  # warm-up
        rows = asyncio.run(_stages(base, keys, requests=args.requests, **load))
    engine = _engine_baseline(args.model, args.requests, args.max_tokens, [args.clients])
    medians: dict[str, Any] = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    medians["engine_p50"] = engine[args.clients]["p50_ms"]
    medians["outside_engine"] = medians["total"] - medians["engine_p50"]
    out = {
        "model": args.model.name,
        "clients": args.clients,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "median_ms": medians,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    suffix = "" if args.clients == 1 else f"-{args.clients}-clients"
    save_results(f"latency-stages-{args.model.name}{suffix}.json", out)
    for name, value in medians.items():
        print(f"  {name:22s} {value:7.1f} ms")


if __name__ == "__main__":
    main()
