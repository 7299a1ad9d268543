"""Live traffic for the auto-tuner, simulated from recorded real-prompt first-token summaries.

`tests/data/first_token_scores.json` holds the tiny model's first-token summaries of 366
real-ish prompts (the hand-written probe of every class and the engine tests' prompt set;
`python -m tests.data.record_first_token_scores` records them again). Requests arrive as a
Poisson process, each one a recorded summary drawn uniformly with replacement, so the traffic
distribution is the recorded set itself and a threshold's *expected* refusal rate on it is known
exactly: the share of the recorded prompts its rules refuse. That, not one window's noisy
observed rate, is what "within 5 points of the target" is measured on.

The tuner runs in the issue's setting by default: one policy with only `safety` on, threshold
mode, a 30% target, a round every 15 s reading a 60 s window, 150 requests at least, 4 requests a
second. Traffic has flowed for one window when the first round runs (the operator switches
auto-tune on, or sets a target, on a live policy), unless the setting says it starts cold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from core.autotune import WINDOW_PARTS, TuneGuards, propose_threshold, replayed_refusals
from core.categories import CATEGORIES, category_index
from core.policy import PolicyRules, parse_rules
from core.summary import Summaries

SCORES = Path(__file__).parents[1] / "data" / "first_token_scores.json"
CATEGORY = "safety"


def recorded_summaries() -> Summaries:
    rows = json.loads(SCORES.read_text())["rows"]
    return Summaries.from_rows([r["summary"] for r in rows])


RECORDED = recorded_summaries()


def safety_scores(logodds: np.ndarray) -> Summaries:
    """Summaries whose only refusal logit is `safety`'s, with p_safety = sigmoid(`logodds`)."""
    n = len(logodds)
    s = np.full((n, len(CATEGORIES)), -np.inf)
    s[:, category_index(CATEGORY)] = logodds
    zero = np.zeros(n)  # L_1 = 0: p_safety = exp(s) / (1 + exp(s))
    return Summaries(s, zero, zero, zero, np.ones(n))


def safety_only(threshold: float, target: float) -> PolicyRules:
    """Threshold-mode rules with only `safety` on, auto-tuned toward `target`."""
    off = {name: {"enabled": False} for name in CATEGORIES if name != CATEGORY}
    tuned = {"threshold": threshold, "target_rate": target, "auto_tune": True}
    return parse_rules({"mode": "threshold", "categories": {**off, CATEGORY: tuned}})


def expected_rate(rules: PolicyRules) -> float:
    """The rate `rules` refuse `safety` on the traffic distribution (the recorded set)."""
    return _expected_rate(rules.rule(CATEGORY).threshold)


@cache
def _expected_rate(threshold: float) -> float:
    rules = safety_only(threshold, 0.0)
    return replayed_refusals(RECORDED, rules, CATEGORY) / len(RECORDED)


@dataclass(frozen=True)
class Setting:
    target: float = 0.30
    round_seconds: float = 15.0
    window_seconds: float = 60.0
    requests_per_second: float = 4.0
    rounds: int = 80  # 20 minutes
    #: Traffic flowed for one window before the first round (False: it starts with the tuner).
    warm: bool = True
    guards: TuneGuards = field(default_factory=lambda: TuneGuards(min_samples=150))


@dataclass(frozen=True)
class Run:
    """One simulated run: the expected rate of the threshold in force after each round (index
    0: the start, before round 1) and the thresholds themselves."""

    start: float
    seed: int
    thresholds: list[float]
    rates: list[float]

    def rounds_to_within(self, target: float, tolerance: float) -> int | None:
        """The first round after which the expected rate is within `tolerance` of `target`
        and stays there to the end (0: from the start); None if it never settles there."""
        off = [i for i, r in enumerate(self.rates) if abs(r - target) > tolerance]
        first = off[-1] + 1 if off else 0
        return first if first < len(self.rates) else None

    def reversals_from(self, round_index: int) -> int:
        """How often the direction of the threshold's moves reverses from `round_index` on."""
        steps = np.sign(np.diff(self.thresholds[round_index:]))
        moves = steps[steps != 0]
        return int((moves[1:] != moves[:-1]).sum())


def simulate(start: float, seed: int, setting: Setting = Setting()) -> Run:
    """The tuner over `setting.rounds` rounds of Poisson traffic, starting at `start`."""
    rng = np.random.default_rng(seed)
    before = setting.window_seconds if setting.warm else 0.0
    span = before + setting.rounds * setting.round_seconds
    count = rng.poisson(setting.requests_per_second * span)
    arrivals = np.sort(rng.uniform(-before, span - before, count))
    drawn = rng.integers(0, len(RECORDED), count)  # which recorded prompt each request is
    rules = safety_only(start, setting.target)
    thresholds, rates = [start], [expected_rate(rules)]
    for k in range(1, setting.rounds + 1):
        now = k * setting.round_seconds
        bounds = np.linspace(now - setting.window_seconds, now, WINDOW_PARTS + 1)
        rows = np.searchsorted(arrivals, bounds, side="right")  # (WINDOW_PARTS + 1,)
        decision = propose_threshold(
            RECORDED.take(drawn[rows[0] : rows[-1]]),
            rules=rules,
            category=CATEGORY,
            guards=setting.guards,
            parts=np.diff(rows).tolist(),
        )
        if decision.changed:
            rule = rules.rule(CATEGORY).model_copy(update={"threshold": decision.new_threshold})
            rules = rules.with_rules({CATEGORY: rule})
        thresholds.append(rules.rule(CATEGORY).threshold)
        rates.append(expected_rate(rules))
    return Run(start, seed, thresholds, rates)
