"""What the query's prompt caches cost in memory: held by the tensors, and grown by the process.

    .venv/bin/python -m bench.query_cache_memory [--prompts 960]

Each arm runs in its own process (the malloc setting is process-wide): the demo recipe's
training prompts (a random subset) cached by `decision_query.cache_prompts` in float32, in
float16, and in float16 with `workers/training/memory.map_large_blocks`. Saved to
bench/results/query-cache-memory.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bench.saving import save_results
from core.settings import PROJECT_ROOT
from workers.engine.prompt_tokens import encode_prompt
from workers.training.decision_query import cache_prompts
from workers.training.demo import RECIPE, demo_examples
from workers.training.memory import map_large_blocks

ARMS = (("float32", False), ("float16", False), ("float16", True))


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e9


def arm(prompts: int, dtype: str, mapped: bool) -> dict[str, object]:
    """One arm, in this process."""
    if mapped:
        map_large_blocks()
    torch.set_num_threads(1)
    base = PROJECT_ROOT / "var/models/smollm2-base"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    train, _ = demo_examples(0, RECIPE)
    subset = random.Random(0).sample(range(len(train)), prompts)
    encoded = [encode_prompt(tok, train[i].messages) for i in subset]
    before = _rss_gb()
    batches = cache_prompts(model, encoded, tok.pad_token_id, store_dtype=getattr(torch, dtype))
    held = sum(k.nbytes + v.nbytes for b in batches for k, v in b.kv) / 1e9
    return {
        "dtype": dtype,
        "fixed_mmap_threshold": mapped,
        "held_gb": round(held, 3),
        "process_grew_gb": round(_rss_gb() - before, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompts", type=int, default=960)
    parser.add_argument("--arm", nargs=2, metavar=("DTYPE", "MAPPED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.prompts, args.arm[0], args.arm[1] == "1")))
        return
    results = []
    for dtype, mapped in ARMS:
        cmd = [sys.executable, "-m", "bench.query_cache_memory", "--prompts", str(args.prompts)]
        out = subprocess.run(
            [*cmd, "--arm", dtype, "1" if mapped else "0"],
            check=True,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    save_results("query-cache-memory.json", {"prompts": args.prompts, "arms": results})


if __name__ == "__main__":
    main()
