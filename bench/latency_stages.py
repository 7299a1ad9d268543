"""Where one synchronous generation's time goes at one client, stage by stage.

    .venv/bin/python -m bench.latency_stages [--requests 60] [--model DIR] [--max-tokens 16]

The stack of `bench/service.py` (uvicorn, one Celery worker, PostgreSQL, Redis), one client
sending `POST /v1/generations` with `wait`, one request at a time. Each stage is read from the
client's clock and the row's own stamps (one machine, one clock): sent -> row created in the API
(HTTP, key, policy, quota), created -> claimed by the worker (insert, commit, publish, the
worker's pickup and claim), claimed -> finished (the engine, then the recorder's transaction),
finished -> response at the client (commit, notification, response). Then the same requests
one at a time on the engine in-process, for the decoding time itself. Medians, in ms; saves
bench/results/latency-stages-<model>.json.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.saving import save_results
from bench.service import PROMPTS, _engine_baseline, running_service
from tests.worker_process import TINY_MODEL

STAGES = ("sent_to_created", "created_to_claimed", "claimed_to_finished", "finished_to_answer")


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _one(client: httpx.Client, base: str, key: str, i: int, max_tokens: int) -> dict[str, float]:
    body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "wait": True}
    sent = time.time()
    response = client.post(
        f"{base}/v1/generations", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    answered = time.time()
    row = response.json()
    if response.status_code != 200 or row["status"] != "succeeded":
        raise RuntimeError(f"request {i}: {response.status_code} {response.text[:300]}")
    created, claimed, finished = (
        _stamp(row[k]) for k in ("created_at", "started_at", "finished_at")
    )
    stamps = (sent, created, claimed, finished, answered)
    out = {name: 1000 * (b - a) for name, a, b in zip(STAGES, stamps[:-1], stamps[1:], strict=True)}
    out["total"] = 1000 * (answered - sent)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", type=Path, default=TINY_MODEL, help="model directory")
    args = parser.parse_args()
    with (
        running_service(args.model, embedded=False) as (base, keys),
        httpx.Client(timeout=120) as client,
    ):
        for i in range(8):  # warm-up
            _one(client, base, keys[i % len(keys)], i, args.max_tokens)
        rows = [
            _one(client, base, keys[i % len(keys)], i, args.max_tokens)
            for i in range(args.requests)
        ]
    engine = _engine_baseline(args.model, args.requests, args.max_tokens, [1])[1]
    medians: dict[str, Any] = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    medians["engine_p50"] = engine["p50_ms"]
    medians["outside_engine"] = medians["total"] - engine["p50_ms"]
    out = {
        "model": args.model.name,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "median_ms": medians,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_results(f"latency-stages-{args.model.name}.json", out)
    for name, value in medians.items():
        print(f"  {name:22s} {value:7.1f} ms")


if __name__ == "__main__":
    main()
