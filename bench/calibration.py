"""Calibration benchmark: control error on held-out prompts, and scoring throughput.

    .venv/bin/python -m bench.calibration [--model var/models/demo] [--queue-prompts 1000]

1. Control error: a generated set (>= 5,000 labelled prompts, a fresh seed, 80/20 split) is
   scored once with prefill-only scoring; for targets 0.1, 0.3, 0.5, 0.7, 0.9 every category is
   targeted at once (labelled targets: the share of that category's prompts refused as it) and
   solved on the 80 %; |achieved - target| is measured on the 20 %.
2. Throughput: prompts/s of prefill-only scoring in this process vs a calibration run end to end
   through the API, Redis and a real worker process (temporary PostgreSQL database).
Saves bench/results/calibration-<model>.json with `mean_control_error` and `max_control_error`.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.saving import save_results
from core.calibration import control_error, solve
from core.policy import parse_rules
from core.settings import PROJECT_ROOT, Settings
from core.summary import Summaries

TARGETS = (0.1, 0.3, 0.5, 0.7, 0.9)


def labelled_prompts(seed: int, per_class: int) -> list[tuple[list[dict[str, str]], str]]:
    from workers.training.data import generate

    examples = generate(seed, examples_per_class=per_class, respond_factor=1.0)
    rows = [(list(ex.messages), ex.label) for ex in examples]
    random.Random(seed).shuffle(rows)
    return rows


def score_in_process(model_dir: Path, prompts: list[Any]) -> tuple[Summaries, float]:
    from workers.engine.model import load_model
    from workers.engine.scoring import ScoreItem, score_prompts

    lm = load_model(model_dir)
    list(score_prompts(lm, [ScoreItem(p) for p in prompts[:32]]))  # warm-up
    started = time.perf_counter()
    rows = [s.summary.as_row() for s in score_prompts(lm, [ScoreItem(p) for p in prompts])]
    elapsed = time.perf_counter() - started
    return Summaries.from_rows(rows), len(prompts) / elapsed


def control_errors(summ: Summaries, labels: list[str], method: str) -> dict[str, Any]:
    n = len(summ)
    cut = int(n * 0.8)
    cal, hold = summ.take(np.arange(cut)), summ.take(np.arange(cut, n))
    cal_labels, hold_labels = labels[:cut], labels[cut:]
    from core.categories import CATEGORIES

    table: dict[str, dict[str, float]] = {}
    errors = []
    for target in TARGETS:
        solution = solve(
            cal,
            dict.fromkeys(CATEGORIES, target),
            method=method,
            target_kind="labelled",
            labels=cal_labels,
        )
        measured = control_error(solution, hold, labels=hold_labels)
        table[str(target)] = {c: measured[c]["error"] for c in CATEGORIES}
        errors.extend(measured[c]["error"] for c in CATEGORIES)
    return {"mean": float(np.mean(errors)), "max": float(np.max(errors)), "by_target": table}


def through_the_queue(model_dir: Path, prompts: list[Any]) -> float:
    """Prompts/s of a calibration run submitted to the API and scored by a real worker."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.tasks_client import CeleryTaskSender
    from bench.live_stack import SECRET, live_stack
    from db.repositories.policies import create_policy
    from db.repositories.tenants import create_tenant
    from db.session import create_session_factory, session_scope

    with live_stack(model_dir, label="benchcal") as stack:
        url = stack.database_url
        with session_scope(create_session_factory(url)) as session:
            tenant, key = create_tenant(session=session, name="bench", secret=SECRET)
            create_policy(
                session=session,
                tenant_id=tenant.id,
                name="default",
                rules=parse_rules({"mode": "threshold", "categories": {}}),
                actor="bench",
                is_default=True,
            )
        settings = Settings(
            database_url=url,
            broker_url=stack.broker_url,
            secret_key=SECRET,
            environment="test",
            model_dir=model_dir,
            log_format="text",
        )
        with TestClient(create_app(settings, task_sender=CeleryTaskSender(settings))) as client:
            headers = {"Authorization": f"Bearer {key}"}
            body = {
                "policy": "default",
                "targets": {"safety": 0.5},
                "prompts": [{"prompt": p} for p in prompts],
            }
            started = time.perf_counter()
            location = client.post("/v1/calibrations", json=body, headers=headers).headers[
                "Location"
            ]
            while (run := client.get(location, headers=headers).json())["status"] in (
                "queued",
                "running",
            ):
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            if run["status"] != "succeeded":
                raise RuntimeError(run)
    return len(prompts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = (
        PROJECT_ROOT
        / "var"
        / "models"
        / ("demo" if (PROJECT_ROOT / "var/models/demo/config.json").exists() else "tiny")
    )
    parser.add_argument("--model", type=Path, default=default)
    parser.add_argument("--per-class", type=int, default=900, help="prompts per class (6 classes)")
    parser.add_argument("--queue-prompts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    rows = labelled_prompts(args.seed, args.per_class)
    prompts = [r[0] for r in rows]
    labels = [r[1] for r in rows]
    summ, in_process = score_in_process(args.model, prompts)
    errors = {m: control_errors(summ, labels, m) for m in ("threshold", "greedy_bias")}
    queued = through_the_queue(args.model, prompts[: args.queue_prompts])
    out = {
        "model": args.model.name,
        "prompts": len(prompts),
        "split": "80/20",
        "targets": list(TARGETS),
        "mean_control_error": errors["threshold"]["mean"],
        "max_control_error": errors["threshold"]["max"],
        "control_error_by_method": errors,
        "in_process_prompts_per_s": in_process,
        "queue_prompts_per_s": queued,
        "queue_vs_in_process": queued / in_process,
    }
    print(
        f"model {args.model.name}: {len(prompts)} prompts, 80/20 split, labelled targets {TARGETS}"
    )
    for method, e in errors.items():
        print(
            f"  {method:12s} control error mean {100 * e['mean']:.2f} pp, max {100 * e['max']:.2f} pp"
        )
    print(
        f"  scoring in-process {in_process:.1f} prompts/s; through API+queue+worker {queued:.1f} prompts/s ({queued / in_process:.2f}x)"
    )
    save_results(f"calibration-{args.model.name}.json", out)


if __name__ == "__main__":
    main()
