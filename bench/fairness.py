"""Fair admission: a quiet tenant's latency while another sends 8x its load.

    .venv/bin/python -m bench.fairness [--model DIR] [--rows 8] [--quiet-clients 2]

The engine loop in-process (`EngineLoop`, `--rows` rows), closed-loop client threads: the quiet
tenant's `--quiet-clients` clients send `--quiet-requests` requests in all; the loud tenant runs
8x as many clients for as long. Three runs: the quiet tenant alone, both with fair admission
(one queue per tenant), and both admitted in arrival order (one shared queue) for comparison.
Goal: the quiet tenant's p95 with the loud one is at most 1.5x its p95 alone.
Saves bench/results/fairness-<model>.json.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

from bench.engine import prompts
from bench.saving import save_results
from core.settings import PROJECT_ROOT
from workers.engine.batch import Engine
from workers.engine.loop import EngineLoop
from workers.engine.types import GenerationRequest, SamplingParams

LOUD_FACTOR = 8


def scenario(
    engine: Engine, args: argparse.Namespace, *, loud: bool, fair: bool
) -> dict[str, float]:
    loop = EngineLoop(engine, max_rows=args.rows, max_kv_tokens=10**7)
    sampling = SamplingParams(max_new_tokens=args.max_tokens, ignore_eos=True)
    texts = prompts(64)
    quiet_latencies: list[float] = []
    quiet_waits: list[float] = []  # submit to admission: what admission order decides
    loud_done = [0]
    left = [args.quiet_requests]
    stop = threading.Event()
    lock = threading.Lock()

    def client(tenant: str, n: int) -> None:
        i = n
        while not stop.is_set():
            if tenant == "quiet":
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
            request = GenerationRequest(texts[i % len(texts)], sampling=sampling)
            started = time.perf_counter()
            result = loop.submit(request, tenant=tenant if fair else "all").result()
            if tenant == "quiet":
                quiet_latencies.append(time.perf_counter() - started)
                quiet_waits.append(quiet_latencies[-1] - result.total_ms / 1000)
            else:
                loud_done[0] += 1
            i += 7

    quiet = [threading.Thread(target=client, args=("quiet", n)) for n in range(args.quiet_clients)]
    noisy = [
        threading.Thread(target=client, args=("loud", n))
        for n in range(LOUD_FACTOR * args.quiet_clients if loud else 0)
    ]
    for t in noisy:
        t.start()
    time.sleep(0.5 if loud else 0)  # the loud tenant's queue is full before the quiet one starts
    started = time.perf_counter()
    for t in quiet:
        t.start()
    for t in quiet:
        t.join()
    elapsed = time.perf_counter() - started
    stop.set()
    for t in noisy:
        t.join()
    loop.close()
    lat = np.array(quiet_latencies) * 1000
    return {
        "quiet_p50_ms": float(np.percentile(lat, 50)),
        "quiet_p95_ms": float(np.percentile(lat, 95)),
        "quiet_wait_p50_ms": float(np.percentile(np.array(quiet_waits) * 1000, 50)),
        "quiet_wait_p95_ms": float(np.percentile(np.array(quiet_waits) * 1000, 95)),
        "quiet_requests_per_s": len(lat) / elapsed,
        "loud_requests": loud_done[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=PROJECT_ROOT / "var/models/tiny")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--quiet-clients", type=int, default=2)
    parser.add_argument("--quiet-requests", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    engine = Engine.from_dir(str(args.model))
    engine.generate([GenerationRequest("hello", sampling=SamplingParams(max_new_tokens=4))])
    alone = scenario(engine, args, loud=False, fair=True)
    fair = scenario(engine, args, loud=True, fair=True)
    fifo = scenario(engine, args, loud=True, fair=False)
    out = {
        "model": args.model.name,
        "settings": vars(args) | {"model": str(args.model), "loud_factor": LOUD_FACTOR},
        "quiet_alone": alone,
        "with_loud_fair": fair,
        "with_loud_arrival_order": fifo,
        "fair_p95_ratio": fair["quiet_p95_ms"] / alone["quiet_p95_ms"],
        "arrival_order_p95_ratio": fifo["quiet_p95_ms"] / alone["quiet_p95_ms"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_results(f"fairness-{args.model.name}.json", out)
    print(f"{args.model.name}: quiet tenant p95 (ms) with a tenant sending 8x its load")
    print(f"  alone {alone['quiet_p95_ms']:.1f}")
    print(
        f"  fair admission {fair['quiet_p95_ms']:.1f}  ({out['fair_p95_ratio']:.2f}x, goal <= 1.5x)"
    )
    print(f"  arrival order {fifo['quiet_p95_ms']:.1f}  ({out['arrival_order_p95_ratio']:.2f}x)")


if __name__ == "__main__":
    main()
