"""Plain data crossing the engine's boundary: requests in, per-row results out (no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from core.categories import CATEGORIES
from core.policy import (
    POLICY_MODES,
    PolicyMode,
    PolicyRules,
    bias_vector,
    refusal_messages,
    threshold_vector,
)
from core.sampling import SamplingParams as SamplingParams  # re-exported: engine callers
from core.summary import Summaries, SummaryRow, summary_row

FinishReason = Literal["stop", "length"]


class RequestTooLong(ValueError):
    """A prompt plus its token budget that does not fit the model's context."""


@dataclass(frozen=True)
class RowPolicy:
    """One row's refusal rule: per-category biases (-inf = off) or thresholds (inf = off), and
    per category the text to answer when it refuses (None: the model writes its own)."""

    mode: PolicyMode = "bias"
    bias: tuple[float, ...] = (0.0,) * len(CATEGORIES)
    threshold: tuple[float, ...] = (math.inf,) * len(CATEGORIES)
    refusal_messages: tuple[str | None, ...] = (None,) * len(CATEGORIES)

    def __post_init__(self) -> None:
        if self.mode not in POLICY_MODES:
            raise ValueError(f"mode must be 'bias' or 'threshold', not {self.mode!r}")
        if len(self.bias) != len(CATEGORIES) or len(self.threshold) != len(CATEGORIES):
            raise ValueError(f"bias and threshold need {len(CATEGORIES)} entries (CATEGORIES)")
        if len(self.refusal_messages) != len(CATEGORIES):
            raise ValueError(f"refusal_messages needs {len(CATEGORIES)} entries (CATEGORIES)")
        if any(math.isnan(b) or b == math.inf for b in self.bias):
            raise ValueError("a bias is finite or -inf (switched off)")
        if any(math.isnan(t) for t in self.threshold):
            raise ValueError("a threshold cannot be NaN")

    @classmethod
    def from_rules(cls, rules: PolicyRules) -> RowPolicy:
        """From a policy's rules (mode, bias, threshold and message per category)."""
        return cls(
            mode=rules.mode,
            bias=tuple(float(x) for x in bias_vector(rules)),
            threshold=tuple(float(x) for x in threshold_vector(rules)),
            refusal_messages=refusal_messages(rules),
        )


@dataclass(frozen=True)
class GenerationRequest:
    """One row of a batch: a prompt (text or chat messages), its policy and its sampling."""

    prompt: str | Sequence[dict[str, str]]
    policy: RowPolicy = field(default_factory=RowPolicy)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str | None = None


@dataclass(frozen=True)
class FirstTokenSummary:
    """What the first decoding step saw for one prompt (DESIGN section 5), from raw logits."""

    s: tuple[float, ...]  # (C,) refusal-token logits
    m: float
    l1: float
    lt: float
    temperature: float
    probabilities: tuple[float, ...]  # (C,) p_c at temperature 1

    def as_row(self) -> SummaryRow:
        """JSON-ready, as stored (`core.summary.summary_row`)."""
        return summary_row(self.s, self.m, self.l1, self.lt, self.temperature)


@dataclass(frozen=True)
class GenerationResult:
    """One row's outcome: the summary, the decision that was emitted, the text and timings."""

    request_id: str | None
    summary: FirstTokenSummary
    decision: int  # -1 = respond, else index into CATEGORIES
    first_token_id: int
    text: str  # generated text without the control token
    token_ids: tuple[int, ...]  # every generated id, control token first
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason  # "stop" also for a policy's refusal message
    seed: int | None
    first_token_ms: float
    total_ms: float
    batch_rows: int = 1  # the most rows this one decoded alongside (itself included)

    @property
    def refused(self) -> bool:
        return self.decision >= 0

    @property
    def category(self) -> str | None:
        return CATEGORIES[self.decision] if self.decision >= 0 else None


@dataclass(frozen=True)
class BatchStats:
    """Counters of one engine call, for metrics and the benchmark."""

    rows: int
    prompt_tokens: int
    padded_prompt_tokens: int
    generated_tokens: int
    prefill_s: float
    decode_s: float


def stack_summaries(summaries: Sequence[FirstTokenSummary]) -> Summaries:
    """Rows of summaries as one `core.summary.Summaries` (arrays of N rows)."""
    return Summaries(
        s=np.array([x.s for x in summaries], dtype=np.float64).reshape(-1, len(CATEGORIES)),
        m=np.array([x.m for x in summaries], dtype=np.float64),
        l1=np.array([x.l1 for x in summaries], dtype=np.float64),
        lt=np.array([x.lt for x in summaries], dtype=np.float64),
        temperature=np.array([x.temperature for x in summaries], dtype=np.float64),
    )


@dataclass
class BatchCounters:
    """Totals since a running batch was made, for `BatchStats` and the benchmarks."""

    rows: int = 0
    prompt_tokens: int = 0
    padded_prompt_tokens: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
