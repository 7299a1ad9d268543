"""Calibration runs as a service: opening a run, solving it from its stored summaries,
proposing the solved policy version and applying it.

Shared by the worker (after scoring) and the API (`POST .../solve` re-solves with new targets,
never touching the model): both only need the summaries stored in `calibration_items`.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from core.calibration import InvalidTarget, Solution, control_error, solve
from core.calibration_problem import method_of, target_kind_of
from core.categories import CATEGORIES
from core.policy import BIAS_OFF, CategoryRule, PolicyRules, bias_vector, threshold_vector
from core.summary import Summaries
from db.actors import calibration_actor
from db.errors import Conflict
from db.models import CalibrationRun, Policy, PolicyVersion
from db.repositories import calibrations as runs
from db.repositories.calibrations import NewCalibrationItem, NewCalibrationRun
from db.repositories.policies import (
    Change,
    NewVersion,
    PolicyRef,
    activate_version,
    create_version,
    get_policy,
    get_policy_by_name,
)


def _summaries(rows: list[tuple[dict[str, Any], str | None]]) -> tuple[Summaries, list[str | None]]:
    return Summaries.from_rows([r[0] for r in rows]), [r[1] for r in rows]


def initial_values(rules: PolicyRules, method: str) -> np.ndarray:
    """The active version's thresholds (threshold method) or biases, as the solver's start."""
    return threshold_vector(rules) if method == "threshold" else bias_vector(rules)


def _solved_rule(rule: CategoryRule, method: str, target: float, value: float) -> CategoryRule:
    """`rule` with its solved value and target rate: a threshold above 1 (or none) switches the
    category off, an infinite bias is "off"."""
    value, target = float(value), float(target)
    if method == "threshold":
        finite = math.isfinite(value)
        changes: dict[str, object] = {
            "enabled": finite and value <= 1.0,
            "threshold": min(max(value, 0.0), 1.0) if finite else 1.0,
        }
    else:
        changes = {"enabled": True, "bias": value if math.isfinite(value) else BIAS_OFF}
    return rule.model_copy(update={"target_rate": target, **changes})


def proposed_rules(rules: PolicyRules, solution: Solution) -> PolicyRules:
    """The active rules with each targeted category's solved value and target rate."""
    solved = {
        name: _solved_rule(rules.rule(name), solution.method, result.target, result.value)
        for name, result in solution.categories.items()
    }
    return rules.with_rules(solved, mode="threshold" if solution.method == "threshold" else "bias")


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
        method=method_of(method),
        target_kind=target_kind_of(run.target_kind),
        labels=cal_labels if labelled else None,
        initial=initial_values(active.rules, method),
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
    version = create_version(
        session=session,
        ref=PolicyRef(run.tenant_id, policy.id),
        new=NewVersion(
            proposed_rules(active.rules, solution), calibration_actor(run.id), _reason(solution)
        ),
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
        raise Conflict(f"calibration run is {run.status}; only a finished run can be applied")
    version = session.get(PolicyVersion, run.produced_version_id)
    assert version is not None
    return activate_version(
        session=session,
        ref=PolicyRef(tenant_id, run.policy_id),
        version=version.version,
        change=Change(actor, f"apply calibration {run.id}"),
    )


def open_run(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    policy_name: str,
    items: list[NewCalibrationItem],
    new: NewCalibrationRun,
) -> CalibrationRun:
    """A new queued run with its items; the method defaults to the active version's mode.

    Labelled targets need a calibration prompt with each targeted label (`InvalidTarget`)."""
    policy = get_policy_by_name(session=session, tenant_id=tenant_id, name=policy_name)
    if new.method is None:
        active = policy.active_version
        mode = "threshold" if active and active.mode == "threshold" else "greedy_bias"
        new = replace(new, method=mode)
    if new.target_kind == "labelled":
        for name in new.targets:
            if not any(i.label == name and i.split == "calibration" for i in items):
                raise InvalidTarget(
                    f"targets.{name}", f"no calibration prompt is labelled {name!r}"
                )
    run = runs.create_run(session=session, tenant_id=tenant_id, policy_id=policy.id, new=new)
    runs.add_items(session=session, run_id=run.id, items=items)
    return run


def finish_run(*, session: Session, run_id: uuid.UUID) -> PolicyVersion:
    """After scoring: solve the run's own targets, store the result and propose the version
    (activated at once when the run asked for `auto_apply`)."""
    run = runs.load_run(session=session, run_id=run_id)
    result, version = solve_and_propose(
        session=session, run=run, targets=run.targets, method=run.method
    )
    runs.store_result(session=session, run_id=run_id, result=result, produced_version_id=version.id)
    if run.auto_apply:
        apply_run(
            session=session,
            tenant_id=run.tenant_id,
            run_id=run_id,
            actor=calibration_actor(run_id),
        )
    return version


def solve_again(
    *,
    session: Session,
    tenant_id: uuid.UUID,
    run_id: uuid.UUID,
    targets: dict[str, float],
    method: str | None,
) -> CalibrationRun:
    """Re-solve a finished run for new targets from its stored summaries (never the model) and
    replace its result and proposed version."""
    run = runs.get_run(session=session, tenant_id=tenant_id, run_id=run_id)
    if run.status != "succeeded":
        raise Conflict(f"calibration run is {run.status}; re-solving needs a finished run")
    method = method or run.method
    result, version = solve_and_propose(session=session, run=run, targets=targets, method=method)
    runs.replace_result(
        session=session,
        run_id=run.id,
        result=result,
        produced_version_id=version.id,
        targets=targets,
        method=method,
    )
    return run
