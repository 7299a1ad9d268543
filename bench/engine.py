"""Engine benchmark: policy overhead, batching speedup, prefill-only scoring, utilisation.

    .venv/bin/python -m bench.engine                    # tiny model, and demo when present
    .venv/bin/python -m bench.engine --model var/models/demo --profile

Every ratio is measured in the same run on the same batch, because the machine is shared and
absolute numbers drift; each figure is the best of `--repeats` interleaved runs. Results are
printed as a table and saved to bench/results/engine-<model>.json. Never a timed test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList

from bench.saving import save_results
from core.categories import CATEGORIES
from core.settings import PROJECT_ROOT
from workers.engine.batch import Engine
from workers.engine.model import LoadedModel, load_model
from workers.engine.prefill import left_pad
from workers.engine.processor import RefusalPolicyProcessor
from workers.engine.scoring import score_batch, score_prompts
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

C = len(CATEGORIES)
SUBJECTS = (
    "the moon",
    "a bicycle",
    "my neighbour",
    "tax law",
    "quantum computers",
    "a kitten",
    "the French revolution",
    "poison",
    "your feelings",
    "tomorrow's lottery numbers",
)
TEMPLATES = (
    "Tell me about {}.",
    "How do I get rid of {}?",
    "Write a short poem about {}.",
    "What do you think of {}? Please answer in detail and give three reasons.",
    "Draw {} for me.",
    "Why is {} so expensive these days, and what can I do about it?",
)


def prompts(n: int) -> list[str]:
    """`n` varied prompts of different lengths."""
    return [
        TEMPLATES[i % len(TEMPLATES)].format(SUBJECTS[(i * 7) % len(SUBJECTS)]) for i in range(n)
    ]


def tenant_policies() -> list[tuple[RowPolicy, SamplingParams]]:
    """Eight tenants, each with its own refusal policy and sampling."""
    off = -math.inf
    return [
        (RowPolicy("bias", (0.0,) * C), SamplingParams(0.0)),
        (RowPolicy("bias", (2.0, 0.0, -1.0, 0.0, 5.0)), SamplingParams(0.7, 0.9, seed=1)),
        (RowPolicy("bias", (off,) * C), SamplingParams(1.0, 1.0, seed=2)),
        (RowPolicy("threshold", threshold=(0.5,) * C), SamplingParams(0.0)),
        (RowPolicy("threshold", threshold=(0.2, 0.9, 0.9, 0.5, 0.05)), SamplingParams(0.8, 0.95)),
        (RowPolicy("bias", (0.0, 0.0, 0.0, 0.0, 1e4)), SamplingParams(0.0)),
        (RowPolicy("threshold", threshold=(math.inf,) * C), SamplingParams(1.2, 0.8, seed=3)),
        (RowPolicy("bias", (-3.0, 1.0, off, 0.5, 0.0)), SamplingParams(0.5, 1.0)),
    ]


def requests(n: int, new_tokens: int, *, greedy: bool = False) -> list[GenerationRequest]:
    """`n` requests cycling through the tenants; every row generates exactly `new_tokens`."""
    out = []
    for i, text in enumerate(prompts(n)):
        policy, sp = tenant_policies()[i % 8]
        temp = 0.0 if greedy else sp.temperature
        sampling = SamplingParams(temp, sp.top_p, new_tokens, sp.seed, ignore_eos=True)
        out.append(GenerationRequest(text, policy, sampling, request_id=f"r{i}"))
    return out


def best_of(repeats: int, fn: Callable[[], Any]) -> float:
    """Shortest wall time of `repeats` calls (the least disturbed by other processes)."""
    times = [math.inf]
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved(repeats: int, fns: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Best wall time of each function, run in alternation so drifting load hits all alike."""
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matmul FLOP/s of this machine, same threads as the engine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / best_of(repeats, lambda: a @ b)


def matmul_params(lm: LoadedModel) -> int:
    """Parameters that take part in a matmul per token: all but the input embedding (+ tied head)."""
    model = lm.model
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    return total - embed.numel() + (head.numel() if head is embed else 0)


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (VmHWM) so each batch size gets its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_in_fresh_process(model_dir: Path, batch: int, new_tokens: int) -> dict[str, float]:
    """Peak RSS of one batch in a new process (this one keeps memory freed by earlier runs)."""
    cmd = [
        sys.executable,
        "-m",
        "bench.engine",
        "--model",
        str(model_dir),
        "--rss-probe",
        str(batch),
        "--new-tokens",
        str(new_tokens),
        "--threads",
        str(torch.get_num_threads()),
    ]
    out = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_probe(model_dir: Path, batch: int, new_tokens: int) -> None:
    """Child side of `rss_in_fresh_process`: RSS with the model loaded, then the batch's peak."""
    engine = Engine(load_model(model_dir, dtype="float32"), max_batch_size=64)
    engine.generate(requests(1, 2))
    reset_peak_rss()
    loaded = peak_rss_mb()
    engine.generate_batch(requests(batch, new_tokens))
    peak = peak_rss_mb()
    print(json.dumps({"peak_mb": round(peak, 1), "over_loaded_model_mb": round(peak - loaded, 1)}))


def plain_generate(
    lm: LoadedModel,
    reqs: list[GenerationRequest],
    new_tokens: int,
    processor: RefusalPolicyProcessor | None = None,
) -> None:
    """`model.generate`, greedy, exactly `new_tokens` per row, optionally with our processor."""
    batch = left_pad([lm.encode(r.prompt) for r in reqs], lm.pad_id, lm.device)
    cfg = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=False, pad_token_id=lm.pad_id, eos_token_id=None
    )
    extra = {"logits_processor": LogitsProcessorList([processor])} if processor else {}
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            generation_config=cfg,
            **extra,
        )
    assert out.shape[1] == batch.input_ids.shape[1] + new_tokens


def full_logits_forward(lm: LoadedModel, encoded: list[list[int]]) -> None:
    """A naive scorer: one forward with logits at every position, (B, L, V)."""
    batch = left_pad(encoded, lm.pad_id, lm.device)
    with torch.inference_mode():
        lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)


def processor_for(lm: LoadedModel, reqs: list[GenerationRequest]) -> RefusalPolicyProcessor:
    return RefusalPolicyProcessor.from_rows(
        refusal_ids=lm.refusal_ids,
        control_ids=lm.control_ids,
        policies=[r.policy for r in reqs],
        temperatures=[r.sampling.temperature for r in reqs],
    )


def bench_policy_overhead(engine: Engine, batch: int, new_tokens: int, repeats: int) -> dict:
    """Mixed-policy engine vs plain `generate` on the same greedy batch, tokens/s."""
    lm = engine.loaded
    reqs = requests(batch, new_tokens, greedy=True)
    sampled = requests(batch, new_tokens)
    tokens = batch * new_tokens
    t = interleaved(
        repeats,
        {
            "plain": lambda: plain_generate(lm, reqs, new_tokens),
            "hf_proc": lambda: plain_generate(lm, reqs, new_tokens, processor_for(lm, reqs)),
            "engine": lambda: engine.generate_batch(reqs),
            "engine_sampled": lambda: engine.generate_batch(sampled),
        },
    )
    t_plain, t_hf_proc, t_engine, t_engine_sampled = t.values()
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "plain_generate_tok_s": tokens / t_plain,
        "generate_with_processor_tok_s": tokens / t_hf_proc,
        "engine_mixed_policy_greedy_tok_s": tokens / t_engine,
        "engine_mixed_policy_mixed_sampling_tok_s": tokens / t_engine_sampled,
        "policy_overhead_ratio": t_plain / t_engine,
        "processor_overhead_ratio": t_plain / t_hf_proc,
        "mixed_sampling_ratio": t_plain / t_engine_sampled,
    }


def bench_batching(
    engine: Engine,
    new_tokens: int,
    peak: float,
    flops_per_token: float,
    sizes: tuple[int, ...],
    repeats: int,
) -> dict:
    """64 requests of 8 tenants: batched vs one at a time, and throughput by batch size."""
    reqs = requests(64, new_tokens)
    tokens = 64 * new_tokens
    t = interleaved(
        1,
        {
            "batched": lambda: engine.generate(reqs),
            "serial": lambda: [engine.generate([r]) for r in reqs],
        },
    )
    t_batched = min(t["batched"], best_of(repeats - 1, lambda: engine.generate(reqs)))
    t_serial = t["serial"]
    by_batch, mfu, rss = {}, {}, {}
    for b in sizes:
        sub = reqs[:b]
        t = best_of(repeats, lambda sub=sub: engine.generate_batch(sub))
        rss[b] = rss_in_fresh_process(engine.loaded.path, b, new_tokens)
        by_batch[b] = b * new_tokens / t
        mfu[b] = by_batch[b] * flops_per_token / peak
    return {
        "batched_tok_s": tokens / t_batched,
        "one_at_a_time_tok_s": tokens / t_serial,
        "batching_speedup": t_serial / t_batched,
        "tok_s_by_batch": by_batch,
        "mfu_by_batch": mfu,
        "peak_rss_mb_by_batch": rss,
    }


def bench_scoring(engine: Engine, batch: int, n_prompts: int, repeats: int) -> dict:
    """Prefill-only summaries vs `generate(max_new_tokens=1)` on one batch; stream prompts/s."""
    lm = engine.loaded
    texts = prompts(batch)
    enc = [lm.encode(t) for t in texts]
    reqs = [GenerationRequest(t) for t in texts]
    t = interleaved(
        repeats,
        {
            "prefill": lambda: score_batch(lm, enc, [1.0] * batch),
            "gen1": lambda: plain_generate(lm, reqs, 1),
            "full": lambda: full_logits_forward(lm, enc),
        },
    )
    t_prefill, t_gen1, t_full = t["prefill"], t["gen1"], t["full"]
    t0 = time.perf_counter()
    n = sum(1 for _ in score_prompts(lm, prompts(n_prompts), batch_size=batch))
    stream_s = time.perf_counter() - t0
    return {
        "batch": batch,
        "prefill_only_prompts_s": batch / t_prefill,
        "generate_1_token_prompts_s": batch / t_gen1,
        "prefill_vs_generate_ratio": t_gen1 / t_prefill,
        "full_logits_forward_prompts_s": batch / t_full,
        "prefill_vs_full_logits_ratio": t_full / t_prefill,
        "stream_prompts": n,
        "stream_prompts_s": n / stream_s,
    }


def profile(engine: Engine, batch: int, new_tokens: int) -> str:
    """Where the time of one mixed batch goes (torch.profiler, CPU ops by self time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    reqs = requests(batch, new_tokens)
    engine.generate_batch(reqs)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.generate_batch(reqs)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def run(model_dir: Path, args: argparse.Namespace) -> dict:
    lm = load_model(model_dir, dtype="float32")
    engine = Engine(lm, max_batch_size=64)
    # Every benchmark row generates exactly its budget: the engine rows use `ignore_eos`, and
    # plain `generate` must not stop at EOS either (the engine kept the EOS ids it loaded).
    lm.model.generation_config.eos_token_id = None
    engine.generate(requests(4, 4))  # warm-up
    peak = matmul_peak_flops()
    flops_per_token = 2.0 * matmul_params(lm)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(f"[{model_dir.name}] policy overhead ...", flush=True)
    overhead = bench_policy_overhead(engine, args.batch, args.new_tokens, args.repeats)
    print(f"[{model_dir.name}] batching ...", flush=True)
    batching = bench_batching(engine, args.new_tokens, peak, flops_per_token, sizes, args.repeats)
    print(f"[{model_dir.name}] scoring ...", flush=True)
    scoring = bench_scoring(engine, args.batch, args.score_prompts, args.repeats)
    result = {
        "model": model_dir.name,
        "policy_overhead_ratio": overhead["policy_overhead_ratio"],
        "batching_speedup": batching["batching_speedup"],
        "prefill_vs_generate_ratio": scoring["prefill_vs_generate_ratio"],
        "mfu_by_batch": batching.pop("mfu_by_batch"),
        "peak_rss_mb_by_batch": batching.pop("peak_rss_mb_by_batch"),
        "policy_overhead": overhead,
        "batching": batching,
        "scoring": scoring,
        "machine": {
            "device": str(lm.device),
            "dtype": str(lm.dtype),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "matmul_peak_gflops": peak / 1e9,
            "flops_per_token": flops_per_token,
            "parameters": lm.num_parameters,
        },
        "settings": vars(args) | {"model_dir": str(model_dir)},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if args.profile:
        result["profile"] = profile(engine, args.batch, args.new_tokens)
    return result


def print_table(r: dict) -> None:
    o, b, s = r["policy_overhead"], r["batching"], r["scoring"]
    print(
        f"\n== engine benchmark: {r['model']} ({r['machine']['parameters'] / 1e6:.1f}M params, "
        f"{r['machine']['threads']} threads, matmul peak "
        f"{r['machine']['matmul_peak_gflops']:.1f} GFLOP/s)"
    )
    print(
        f"policy overhead (B={o['batch']}, {o['new_tokens']} tok): plain generate "
        f"{o['plain_generate_tok_s']:.0f} tok/s | generate+processor "
        f"{o['generate_with_processor_tok_s']:.0f} | engine greedy "
        f"{o['engine_mixed_policy_greedy_tok_s']:.0f} | engine mixed sampling "
        f"{o['engine_mixed_policy_mixed_sampling_tok_s']:.0f}"
    )
    print(
        f"  policy_overhead_ratio {o['policy_overhead_ratio']:.3f}  processor_overhead_ratio "
        f"{o['processor_overhead_ratio']:.3f}  mixed_sampling_ratio {o['mixed_sampling_ratio']:.3f}"
    )
    print(
        f"batching (64 req, 8 tenants): batched {b['batched_tok_s']:.0f} tok/s vs one at a time "
        f"{b['one_at_a_time_tok_s']:.0f} -> speedup {b['batching_speedup']:.2f}x"
    )
    print(f"{'batch':>6} {'tok/s':>10} {'MFU %':>8} {'peak RSS MB':>12} {'batch MB':>12}")
    for k, v in b["tok_s_by_batch"].items():
        print(
            f"{k:>6} {v:>10.0f} {100 * r['mfu_by_batch'][k]:>8.2f} "
            f"{r['peak_rss_mb_by_batch'][k]['peak_mb']:>12.0f} "
            f"{r['peak_rss_mb_by_batch'][k]['over_loaded_model_mb']:>12.0f}"
        )
    print(
        f"scoring (B={s['batch']}): prefill-only {s['prefill_only_prompts_s']:.0f} prompts/s vs "
        f"generate(1) {s['generate_1_token_prompts_s']:.0f} -> ratio "
        f"{s['prefill_vs_generate_ratio']:.2f} (full-logits forward "
        f"{s['full_logits_forward_prompts_s']:.0f}, ratio {s['prefill_vs_full_logits_ratio']:.2f})"
        f"; streamed {s['stream_prompts']} prompts at "
        f"{s['stream_prompts_s']:.0f} prompts/s"
    )
    if "profile" in r:
        print(r["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="model dir (repeatable)")
    parser.add_argument("--batch", type=int, default=32, help="batch for overhead and scoring")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--score-prompts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="add a torch.profiler table")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rss-probe", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_probe:
        return rss_probe(args.model[0], args.rss_probe, args.new_tokens)
    models = args.model or [PROJECT_ROOT / "var/models/tiny", PROJECT_ROOT / "var/models/demo"]
    models = [m for m in models if (m / "config.json").is_file()]
    if not models:
        raise SystemExit("no model found: run `make tiny-model` first")
    for model_dir in models:
        result = run(model_dir, args)
        print_table(result)
        save_results(f"engine-{model_dir.name}.json", result, default=str)


if __name__ == "__main__":
    main()
