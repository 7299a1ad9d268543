"""What one synchronous generation costs each process of the service, in CPU time.

    .venv/bin/python -m bench.service_cost [--clients 32] [--requests 300] [--model DIR]
                                           [--workers 1] [--engine thread process]

The same stack and load as `bench/service.py` (uvicorn, one Celery worker, PostgreSQL, Redis,
8 tenants, closed-loop clients sending `POST /v1/generations` with `wait`), but the figure is
CPU seconds per request by process (API, worker, PostgreSQL, Redis, the load generator), read
from the kernel for this benchmark's own child processes. CPU time per request moves far less
than wall-clock rates when other jobs share the cores, so two commits can be compared by
running this in each tree, alternately (see docs/scaling.md); `--engine thread process
--rounds 2` alternates the worker's engine loop in a thread and in a process of its own, a stack
each. `--client lean httpx --rounds 3` alternates the load generator's two HTTP clients on one
stack (what httpx costs the machine).
Saves bench/results/service-cost-<model>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import httpx
import psutil

from bench.saving import save_results
from bench.service import CLIENTS, _load, running_service
from tests.worker_process import TINY_MODEL

#: Where the worker's engine loop may run (`workers/engine/process.py`).
ENGINES = ("thread", "process")


def _kind(process: psutil.Process) -> str | None:
    name = process.name()
    command = " ".join(process.cmdline())
    if "postgres" in name:
        return "postgres"
    if "redis" in name:
        return "redis"
    if "uvicorn" in command:
        return "api"
    if "workers.engine.process" in command:  # the worker's engine loop in its own process
        return "engine"
    if "celery" in command:
        return "worker"
    return None


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU time (user + system) of this process and every service process below it, and of
    PostgreSQL's backends that ended (a pool that opens and closes connections under load)."""
    me = psutil.Process()
    found = {me.pid: ("load generator", sum(me.cpu_times()[:2]))}
    for child in me.children(recursive=True):
        try:
            kind = _kind(child)
            if kind is not None:
                times = child.cpu_times()
                spent = times.user + times.system
                if kind == "postgres":  # backends that ended: reaped by the postmaster
                    spent += times.children_user + times.children_system
                found[child.pid] = (kind, spent)
        except psutil.Error:  # a child that ended meanwhile
            continue
    return found


def rows_and_messages(base: str) -> tuple[float, float]:
    """Generations sent and the broker messages that carried them, so far (the API's metrics)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = {}
    for line in text.splitlines():
        for name in ("sum", "count"):
            if line.startswith(f"rcs_generation_rows_per_message_{name} "):
                found[name] = float(line.split()[1])
    return found.get("sum", 0.0), found.get("count", 0.0)


def measure(base: str, keys: list[str], *, clients: int, client: str, load: dict) -> dict:
    """One load of `clients` closed-loop clients: rates and CPU ms per request by process."""
    sent_before = rows_and_messages(base)
    before, started = cpu_seconds(), time.perf_counter()
    row = asyncio.run(_load(base, keys, concurrency=clients, client=client, **load))
    elapsed, after = time.perf_counter() - started, cpu_seconds()
    sent_after = rows_and_messages(base)
    rows, messages = (a - b for a, b in zip(sent_after, sent_before, strict=True))
    per_kind: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        per_kind[kind] = per_kind.get(kind, 0.0) + seconds - before.get(pid, (kind, 0.0))[1]
    return {
        "client": client,
        "requests_per_s": row["requests_per_s"],
        "p50_ms": row["p50_ms"],
        "cpu_ms_per_request": {k: 1000 * v / load["requests"] for k, v in per_kind.items()},
        "cores_used": sum(per_kind.values()) / elapsed,
        "rows_per_message": rows / messages if messages else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", type=Path, default=TINY_MODEL, help="model directory")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        nargs="+",
        default=["lean"],
        help="HTTP clients of the load generator; several alternate, `--rounds` times each",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes, each its own engine loop"
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        nargs="+",
        default=[],
        help="where the worker's engine loop runs (RCS_ENGINE_PROCESS); several alternate, a "
        "stack each, `--rounds` times each (default: as configured, one stack)",
    )
    args = parser.parse_args()
    load = {"requests": args.requests, "max_tokens": args.max_tokens}
    runs = []
    for _ in range(args.rounds if args.engine else 1):
        for engine in args.engine or [None]:
            if engine is not None:  # the worker reads it from the environment it inherits
                os.environ["RCS_ENGINE_PROCESS"] = str(engine == "process").lower()
            with running_service(args.model, embedded=False, workers=args.workers) as (base, keys):
                asyncio.run(
                    _load(base, keys, concurrency=4, requests=32, max_tokens=args.max_tokens)
                )
                for client in args.client if engine is not None else args.client * args.rounds:
                    run = measure(base, keys, clients=args.clients, client=client, load=load)
                    runs.append({**run, "engine": engine})
    out = {
        "model": args.model.name,
        "clients": args.clients,
        "workers": args.workers,
        "requests": args.requests,
        "runs": runs,
        "load_average": os.getloadavg(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_results(f"service-cost-{args.model.name}.json", out)
    for run in runs:
        ms_per_request = run["cpu_ms_per_request"]
        where = f", engine in a {run['engine']}" if run["engine"] else ""
        print(
            f"{args.clients} clients ({run['client']} client{where}): "
            f"{run['requests_per_s']:.1f} req/s,"
            f" p50 {run['p50_ms']:.0f} ms, {run['cores_used']:.2f} cores used,"
            f" {run['rows_per_message'] or 0:.2f} rows per message"
        )
        for kind, ms in sorted(ms_per_request.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:15s} {ms:7.2f} CPU ms per request")
        print(f"  {'all':15s} {sum(ms_per_request.values()):7.2f}")


if __name__ == "__main__":
    main()
