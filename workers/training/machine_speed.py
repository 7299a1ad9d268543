"""How fast this machine runs now: two fixed workloads, timed when a build starts.

A build's time depends on the machine's state as much as on its recipe: the same demo recipe took
22.7 min in one session and 55.3 min in another (docs/models.md), and nothing in their reports
said how fast either machine was. The report now records the speed a build ran at, so that build
times of different sessions can be read against each other: a pure-Python loop (what per-operation
overhead costs: the query's thousands of small operations a step, the engine's loop) and a
float32 matrix product at the shape of a query step, on the build's torch threads (what compute
costs). Both take well under a second.
"""

from __future__ import annotations

import time

import torch

#: Iterations of the Python loop: one million, so its milliseconds are per million.
LOOP_ITERATIONS = 1_000_000
#: The product's shape: a query step's batch of 32 states through an MLP projection of SmolLM2.
PRODUCT_SHAPE = (32, 576, 1536)


def _python_loop_ms() -> float:
    """Milliseconds per million iterations of a plain loop (the best of three)."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for i in range(LOOP_ITERATIONS):
            total += i
        best = min(best, time.perf_counter() - began)
    return best * 1e3


def _product_gflops(seconds: float = 0.2) -> float:
    """Float32 GFLOP/s of `PRODUCT_SHAPE` products on the current torch threads (the best of
    runs of about `seconds / 4`)."""
    m, k, n = PRODUCT_SHAPE
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    for _ in range(3):  # warm the library's code paths and caches
        a @ b
    best = float("inf")
    for _ in range(4):
        count, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds / 4:
            a @ b
            count += 1
        best = min(best, elapsed / count)
    return 2 * m * k * n / best / 1e9


def measure_speed() -> dict[str, float]:
    """The machine's speed now: `python_loop_ms_per_million` (lower is faster) and
    `float32_gflops` at a query step's shape on the current torch threads (higher is faster)."""
    return {
        "python_loop_ms_per_million": round(_python_loop_ms(), 1),
        "float32_gflops": round(_product_gflops(), 1),
        "torch_threads": torch.get_num_threads(),
    }


def speed_line(speed: dict[str, float]) -> str:
    """The card's words for `measure_speed`'s figures."""
    return (
        f"a Python loop at {speed['python_loop_ms_per_million']:.0f} ms per million iterations, "
        f"float32 products at {speed['float32_gflops']:.0f} GFLOP/s"
    )
