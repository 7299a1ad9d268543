"""`rcs model train ...`: argument parsing for the training recipes.

`run_train_command(argv)` is the entry point wired into `cli.py`; it returns a process exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from core.settings import get_settings


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


PROC_STAT = Path("/proc/stat")


def _cpu_times(stat: Path) -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from the `cpu` line of /proc/stat."""
    fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(interval: float = 0.5, *, stat: Path = PROC_STAT) -> float:
    """How many cores other processes keep busy now, measured over `interval` seconds while
    this one sleeps; the 1-minute load average where /proc/stat is missing.

    The load average remembers the last minutes: `make demo-model` run right after the install
    and the tiny model's build found it above 1 with the cores idle again and trained on one
    thread (94% of a core busy, against 182% on two), its prompt caches about 1.7x slower."""
    try:
        busy0, total0 = _cpu_times(stat)
        time.sleep(interval)
        busy1, total1 = _cpu_times(stat)
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    cores = os.cpu_count() or 1
    return cores * (busy1 - busy0) / max(1, total1 - total0)


def default_threads(cores: int = 2) -> int:
    """`cores` threads on a quiet machine, one when other work already keeps a core half busy.

    OpenMP threads spin-wait for each other: with the two cores shared (load average 4.6),
    generating the demo's base answers ran 4.6x slower on two threads than on one (60 s against
    13 s per batch of 16); alone, two threads are faster."""
    return 1 if busy_cores() >= 0.5 else cores


#: The tiny model's weights depend on how many threads its float sums are split over (builds on
#: one and on two threads differ, and the suite's checks of it differ with them), so its recipe
#: always trains on this many: the test fixture must not change with the machine's load.
TINY_THREADS = 2


def training_threads(requested: int | None, *, tiny: bool) -> int:
    """Torch threads for a training run: as requested, fixed for the tiny recipe, else by load."""
    if requested:
        return requested
    return TINY_THREADS if tiny else default_threads()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rcs model train",
        description="Train a refusal-token model: --tiny (from scratch, ~1-2 min) or --demo "
        "(a refusal head on frozen SmolLM2-135M-Instruct, 23-45 min on 2 CPU cores, by machine).",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tiny", action="store_true", help="train the tiny test model")
    which.add_argument("--demo", action="store_true", help="build the SmolLM2 demo model")
    parser.add_argument("--out", type=Path, help="output directory (default var/models/tiny|demo)")
    parser.add_argument("--seed", type=_non_negative, default=0, help="data and training seed")
    parser.add_argument(
        "--steps",
        type=_positive,
        help="optimizer steps (demo: soft-prompt steps; default: recipe's)",
    )
    parser.add_argument("--resume", action="store_true", help="tiny: continue from OUT/checkpoint")
    parser.add_argument(
        "--keep-checkpoint", action="store_true", help="keep OUT/checkpoint after success"
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        help=f"torch CPU threads (default: tiny {TINY_THREADS}, for reproducible weights; demo 2 on "
        "a quiet machine, 1 when other processes keep a core half busy now)",
    )
    parser.add_argument(
        "--base-dir", type=Path, help="demo: cached SmolLM2 base (default var/models/smollm2-base)"
    )
    return parser


def run_train_command(argv: list[str]) -> int:
    """Parse `argv` (after `rcs model train`) and run the chosen recipe; return an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 and a usage message on bad arguments
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    from workers.training.base_model import BaseModelUnavailable
    from workers.training.recipe import TrainingError
    from workers.training.run import RunOptions

    torch.set_num_threads(training_threads(args.threads, tiny=args.tiny))
    models_dir = get_settings().models_dir
    out: Path = args.out or models_dir / ("tiny" if args.tiny else "demo")
    options = RunOptions(
        seed=args.seed, steps=args.steps, resume=args.resume, keep_checkpoint=args.keep_checkpoint
    )
    try:
        if args.tiny:
            from workers.training.tiny import build_tiny

            build_tiny(out, options)
        else:
            from workers.training.demo import build_demo

            build_demo(out, options, base_dir=args.base_dir or models_dir / "smollm2-base")
    except (TrainingError, BaseModelUnavailable) as exc:
        print(f"rcs model train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = f"continue with --resume --out {out}" if args.tiny else "run it again"
        print(f"rcs model train: interrupted; {again}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(run_train_command(sys.argv[1:]))
