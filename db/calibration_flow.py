"""Solving a calibration run from its stored summaries and proposing a policy version.

Shared by the worker (after scoring) and the API (`POST .../solve` re-solves with new targets,
never touching the model): both only need the summaries stored in `calibration_items`.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.calibration import InvalidTarget, Solution, control_error, solve
from core.categories import CATEGORIES
from core.policy import bias_vector, parse_rules, threshold_vector, to_json
from core.summary import Summaries
from db.actors import calibration_actor
from db.models import CalibrationRun, Policy, PolicyVersion
from db.repositories import calibrations as runs
from db.repositories.policies import activate_version, create_version, get_policy

METHODS = ("threshold", "greedy_bias", "sampled_bias")


def _summaries(rows: list[tuple[dict[str, Any], str | None]]) -> tuple[Summaries, list[str | None]]:
    return Summaries.from_rows([r[0] for r in rows]), [r[1] for r in rows]


def initial_values(version: PolicyVersion, method: str) -> np.ndarray:
    """The active version's thresholds (threshold method) or biases, as the solver's start."""
    rules = parse_rules({"mode": version.mode, "categories": version.rules["categories"]})
    return threshold_vector(rules) if method == "threshold" else bias_vector(rules)


def proposed_rules(version: PolicyVersion, solution: Solution) -> dict[str, Any]:
    """The active rules with each targeted category's solved value and target rate."""
    current = version.rules["categories"]
    categories: dict[str, Any] = {name: dict(current.get(name, {})) for name in CATEGORIES}
    for name, result in solution.categories.items():
        rule = categories[name]
        rule["target_rate"] = result.target
        value = result.value
        if solution.method == "threshold":
            rule["enabled"] = math.isfinite(value) and value <= 1.0
            rule["threshold"] = min(max(value, 0.0), 1.0) if math.isfinite(value) else 1.0
        else:
            rule["enabled"] = True
            rule["bias"] = value if math.isfinite(value) else "off"
    mode = "threshold" if solution.method == "threshold" else "bias"
    return to_json(parse_rules({"mode": mode, "categories": categories}))


def check_served(summaries: Summaries, targets: dict[str, float]) -> None:
    """Refuse targets on a category the served model has no token for.

    Such a category's refusal logit is -inf on every prompt (a real token's logit is finite),
    so its rate is 0 whatever its value: no target but 0 can be met, and none is worth solving.
    """
    for name in targets:
        column = CATEGORIES.index(name) if name in CATEGORIES else None
        if column is not None and len(summaries) and np.isneginf(summaries.s[:, column]).all():
            raise InvalidTarget(
                f"targets.{name}",
                f"the served model has no token for {name!r}: it is never refused",
            )


def solve_and_propose(
    *, session: Session, run: CalibrationRun, targets: dict[str, float], method: str
) -> tuple[dict[str, Any], PolicyVersion]:
    """Solve on the calibration split, measure control error on the held-out split, and write
    the result as a new, not yet active, policy version."""
    policy = get_policy(session=session, tenant_id=run.tenant_id, policy_id=run.policy_id)
    active = policy.active_version
    assert active is not None, "a calibrated policy always has an active version"
    cal, cal_labels = _summaries(
        runs.scored_items(session=session, run_id=run.id, split="calibration")
    )
    check_served(cal, targets)
    labelled = run.target_kind == "labelled"
    solution = solve(
        cal,
        targets,
        method=method,  # type: ignore[arg-type]
        target_kind=run.target_kind,  # type: ignore[arg-type]
        labels=cal_labels if labelled else None,
        initial=initial_values(active, method),
    )
    result = solution.to_json()
    result["prompts"] = {"calibration": len(cal)}
    hold_rows = runs.scored_items(session=session, run_id=run.id, split="holdout")
    if hold_rows:
        hold, hold_labels = _summaries(hold_rows)
        try:
            result["control_error"] = control_error(
                solution, hold, labels=hold_labels if labelled else None
            )
        except InvalidTarget as exc:  # e.g. no held-out prompt carries a targeted label
            result["control_error"] = {"unavailable": str(exc)}
        result["prompts"]["holdout"] = len(hold)
    else:
        result["control_error"] = None
    rules = proposed_rules(active, solution)
    version = create_version(
        session=session,
        tenant_id=run.tenant_id,
        policy_id=policy.id,
        mode=rules["mode"],
        rules=rules,
        actor=calibration_actor(run.id),
        reason=_reason(solution),
        activate=False,
    )
    result["proposed_version"] = version.version
    return result, version


def _reason(solution: Solution) -> str:
    parts = [
        f"{name}: {r.value:.4g} -> {r.rate:.3f} (target {r.target:.3f}){'' if r.feasible else ' INFEASIBLE'}"
        for name, r in solution.categories.items()
    ]
    return f"calibration ({solution.method}, {solution.rounds} rounds): " + "; ".join(parts)


def apply_run(*, session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID, actor: str) -> Policy:
    """Activate the version a finished run proposed (audited by `activate_version`)."""
    run = runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id)
    if run.status != "succeeded" or run.produced_version_id is None:
        from db.errors import Conflict

        raise Conflict(f"calibration run is {run.status}; only a finished run can be applied")
    version = session.get(PolicyVersion, run.produced_version_id)
    assert version is not None
    return activate_version(
        session=session,
        tenant_id=tenant_id,
        policy_id=run.policy_id,
        version=version.version,
        actor=actor,
        reason=f"apply calibration {run.id}",
    )
