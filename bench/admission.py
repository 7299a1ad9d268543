"""Admitting joiners at every step against gathering them (`workers/engine/loop.py`).

    .venv/bin/python -m bench.admission [--model DIR] [--clients 8 32] [--rounds 2]
                                        [--max-tokens 16] [--config 0:0 0.5:20 ...]

One process, the engine loop in-process, closed-loop clients (threads) sending the service
benchmark's requests (`bench/service.py`: 8 tenants' policies, `--max-tokens` each), once per
admission config `FRACTION:WAIT_MS` (0:0 admits between every two steps; the worker's default is
0.5:20), the configs alternating, `--rounds` times: requests/s, p50/p95 latency and the process's
CPU milliseconds per request, with each config's ratio to the first one's per round.
Saves bench/results/admission-<model>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.saving import save_results
from bench.service import engine_closed_loop, engine_requests
from core.settings import PROJECT_ROOT
from workers.engine.batch import Engine
from workers.engine.loop import EngineLoop


def measure(engine: Engine, clients: int, requests: int, max_tokens: int, config: str) -> dict:
    fraction, wait_ms = (float(x) for x in config.split(":"))
    loop = EngineLoop(
        engine, max_rows=32, max_kv_tokens=32_768, admit_fraction=fraction, admit_wait=wait_ms / 1e3
    )
    try:
        cpu = time.process_time()
        row = engine_closed_loop(loop, engine_requests(requests, max_tokens, 8), clients)
        cpu = time.process_time() - cpu
    finally:
        loop.close()
    return {
        "config": config,
        "clients": clients,
        "requests_per_s": round(row["requests_per_s"], 1),
        "p50_ms": round(row["p50_ms"], 1),
        "p95_ms": round(row["p95_ms"], 1),
        "cpu_ms_per_request": round(cpu / requests * 1e3, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/tiny")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--config", nargs="+", default=["0:0", "0.5:20"])
    args = parser.parse_args()
    engine = Engine.from_dir(str(args.model))
    measure(engine, 4, 16, args.max_tokens, args.config[0])  # warm-up
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for clients in args.clients:
            requests = 25 * clients
            for config in args.config:
                row = measure(engine, clients, requests, args.max_tokens, config) | {
                    "round": round_
                }
                runs.append(row)
                print(
                    f"{clients:3d} clients, admission {config:>7}: {row['requests_per_s']:7.1f}"
                    f" req/s, p50 {row['p50_ms']:7.1f} ms, p95 {row['p95_ms']:7.1f} ms,"
                    f" {row['cpu_ms_per_request']:6.2f} CPU ms per request",
                    flush=True,
                )
    ratios: dict[str, dict[str, float]] = {}
    for clients in args.clients:
        for config in args.config[1:]:

            def per_round(key: str, config: str = config, clients: int = clients) -> float:
                pairs = [
                    (a[key], b[key])
                    for a in runs
                    for b in runs
                    if a["round"] == b["round"]
                    and a["clients"] == b["clients"] == clients
                    and a["config"] == config
                    and b["config"] == args.config[0]
                ]
                return round(statistics.median(x / y for x, y in pairs), 3)

            name = f"{config} over {args.config[0]} at {clients} clients"
            ratios[name] = {
                k: per_round(k) for k in ("requests_per_s", "p95_ms", "cpu_ms_per_request")
            }
            print(f"{name} (median of rounds): {ratios[name]}")
    save_results(
        f"admission-{args.model.name}.json",
        {
            "model": args.model.name,
            "max_tokens": args.max_tokens,
            "torch_threads": torch.get_num_threads(),
            "runs": runs,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
