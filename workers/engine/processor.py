"""The per-row refusal policy, applied to a batch's logits at the first decoding step.

Order of processing for one decoding step (written once, here):

1. the model gives raw logits `z` (B, V), cast to float32;
2. step 0 only: record each row's first-token summary from the raw `z` (s_c, m, L_1, L_T at the
   row's temperature, see DESIGN section 5; a category the model has no token for is a virtual
   column of -inf, see `with_absent_column`), then apply the row's rule — `bias` rows add b_c to
   the refusal-token logits; `threshold` rows either force the most probable category with
   p_c >= tau_c (every other logit -inf) or mask every refusal token;
3. steps >= 1: mask every refusal token and the respond token (they only ever come first);
4. the sampler (`sampling.sample_next`, called by `continuous.py`) applies temperature and top-p
   and draws, per row.

`RefusalPolicyProcessor` is a transformers `LogitsProcessor`, so it also plugs into
`model.generate(logits_processor=...)`, where it runs before the temperature/top-p warpers.
Per-row state is a few (B,) / (B, C) tensors; no Python loop over rows or categories runs in
`__call__`. Under continuous batching (`continuous.py`) the state follows the persistent batch
the way vLLM V1's logits processors do: a group of joining rows takes its first step in its own
processor, which is then appended to the running one (`add_rows`); rows that leave are dropped
(`keep_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from transformers import LogitsProcessor

from workers.engine.types import RowPolicy

NEG_INF = float("-inf")


class SummaryTensors(NamedTuple):
    """First-token summaries of a batch (see DESIGN section 5), float32 on the logits' device."""

    s: torch.Tensor  # (B, C) refusal-token logits
    m: torch.Tensor  # (B,) max non-refusal logit
    l1: torch.Tensor  # (B,) logsumexp of the non-refusal logits
    lt: torch.Tensor  # (B,) logsumexp of the non-refusal logits / T (T = 1 for greedy rows)


def with_absent_column(z: torch.Tensor, refusal_ids: torch.Tensor) -> torch.Tensor:
    """`z` (B, V), plus one -inf column when a refusal id points at V.

    A category the model has no token for points one past the vocabulary (`LoadedModel`): its
    logit is -inf, so p_c = 0, no bias or threshold can make it win, and nothing else moves.
    """
    if int(refusal_ids.max()) < z.shape[1]:
        return z
    return torch.cat([z, z.new_full((z.shape[0], 1), NEG_INF)], dim=1)  # (B, V + 1)


def first_token_summary(
    logits: torch.Tensor, refusal_ids: torch.Tensor, temperature: torch.Tensor
) -> SummaryTensors:
    """Summaries of raw logits (B, V); `temperature` (B,) with 0 meaning greedy."""
    z = with_absent_column(logits.float(), refusal_ids)  # (B, V) or (B, V + 1)
    s = z.index_select(1, refusal_ids)  # (B, C)
    rest = z.index_fill(1, refusal_ids, NEG_INF)  # (B, V) non-refusal tokens only
    m = rest.amax(dim=-1)  # (B,)
    l1 = rest.logsumexp(dim=-1)  # (B,)
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature)).to(z)  # (B,)
    lt = (rest / t[:, None]).logsumexp(dim=-1)  # (B,)
    return SummaryTensors(s, m, l1, lt)


def refusal_probabilities(s: torch.Tensor, l1: torch.Tensor) -> torch.Tensor:
    """p_c = exp(s_c) / (exp(L_1) + sum_k exp(s_k)), in float64 as core computes it; (B, C)."""
    s64, l64 = s.double(), l1.double()
    log_z = torch.logaddexp(l64, s64.logsumexp(dim=-1))  # (B,)
    return (s64 - log_z[:, None]).exp()  # (B, C)


class RefusalPolicyProcessor(LogitsProcessor):
    """Applies each row's refusal rule at step 0 and masks control tokens afterwards.

    Built for the rows that take their first step together. After step 0, `summary`,
    `probabilities` and `forced` hold what that step saw and decided for them; later steps only
    mask, so rows may join (`add_rows`) and leave (`keep_rows`) between steps.
    """

    def __init__(
        self,
        *,
        refusal_ids: torch.Tensor,
        control_ids: torch.Tensor,
        threshold_mode: torch.Tensor,
        bias: torch.Tensor,
        threshold: torch.Tensor,
        temperature: torch.Tensor,
    ) -> None:
        b, c = bias.shape
        if refusal_ids.shape != (c,) or threshold.shape != (b, c):
            raise ValueError(f"policy tensors disagree: bias {bias.shape}, thr {threshold.shape}")
        if threshold_mode.shape != (b,) or temperature.shape != (b,):
            raise ValueError("threshold_mode and temperature must be (B,)")
        dev = refusal_ids.device
        self.refusal_ids = refusal_ids  # (C,)
        self.control_ids = control_ids.to(dev)  # (C + 1 [+ decision suffix],): masked after step 0
        self.threshold_mode = threshold_mode.to(dev, torch.bool)  # (B,)
        self.bias = bias.to(dev, torch.float32)  # (B, C)
        self.threshold = threshold.to(dev, torch.float64)  # (B, C)
        self.temperature = temperature.to(dev, torch.float32)  # (B,)
        self.step = 0
        self.summary: SummaryTensors | None = None
        self.probabilities: torch.Tensor | None = None  # (B, C) float64
        self.forced: torch.Tensor | None = None  # (B,) bool: threshold row forced to refuse

    @classmethod
    def from_rows(
        cls,
        *,
        refusal_ids: torch.Tensor,
        control_ids: torch.Tensor,
        policies: Sequence[RowPolicy],
        temperatures: Sequence[float],
    ) -> RefusalPolicyProcessor:
        """The one place rows' policies become tensors, on the device of `refusal_ids`."""
        dev = refusal_ids.device
        return cls(
            refusal_ids=refusal_ids,
            control_ids=control_ids,
            threshold_mode=torch.tensor([p.mode == "threshold" for p in policies], device=dev),
            bias=torch.tensor([p.bias for p in policies], dtype=torch.float32, device=dev),
            threshold=torch.tensor(
                [p.threshold for p in policies], dtype=torch.float64, device=dev
            ),
            temperature=torch.tensor(temperatures, dtype=torch.float32, device=dev),
        )

    @classmethod
    def empty(
        cls, *, refusal_ids: torch.Tensor, control_ids: torch.Tensor
    ) -> RefusalPolicyProcessor:
        """A processor of zero rows past their first step: the start of a running batch."""
        c, dev = refusal_ids.shape[0], refusal_ids.device
        out = cls(
            refusal_ids=refusal_ids,
            control_ids=control_ids,
            threshold_mode=torch.zeros(0, dtype=torch.bool, device=dev),
            bias=torch.zeros((0, c), device=dev),
            threshold=torch.zeros((0, c), dtype=torch.float64, device=dev),
            temperature=torch.zeros(0, device=dev),
        )
        out.step = 1
        return out

    @property
    def rows(self) -> int:
        return int(self.bias.shape[0])

    def add_rows(self, joining: RefusalPolicyProcessor) -> None:
        """Append the rows of `joining` (which took its first step already) after this batch's."""
        if joining.step == 0 or (self.step == 0 and self.rows):
            raise ValueError("rows join a running batch only after their first step")
        self.threshold_mode = torch.cat([self.threshold_mode, joining.threshold_mode])  # (B,)
        self.bias = torch.cat([self.bias, joining.bias])  # (B, C)
        self.threshold = torch.cat([self.threshold, joining.threshold])  # (B, C)
        self.temperature = torch.cat([self.temperature, joining.temperature])  # (B,)
        self.step = max(self.step, 1)

    def keep_rows(self, indices: torch.Tensor) -> None:
        """Keep only the rows at `indices` (long, on the device), in that order."""
        self.threshold_mode = self.threshold_mode.index_select(0, indices)  # (B',)
        self.bias = self.bias.index_select(0, indices)  # (B', C)
        self.threshold = self.threshold.index_select(0, indices)  # (B', C)
        self.temperature = self.temperature.index_select(0, indices)  # (B',)

    def __call__(self, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        z = scores.float()
        out = self._first_step(z) if self.step == 0 else self._later_step(z)
        self.step += 1
        return out

    def _first_step(self, logits: torch.Tensor) -> torch.Tensor:
        vocab = logits.shape[1]
        z = with_absent_column(logits, self.refusal_ids)  # (B, V) or (B, V + 1)
        summary = first_token_summary(z, self.refusal_ids, self.temperature)
        p = refusal_probabilities(summary.s, summary.l1)  # (B, C)
        # A token of logit -inf (no token for the category) is never eligible, even at tau = 0.
        eligible = (p >= self.threshold) & (summary.s > NEG_INF)  # (B, C)
        any_eligible = eligible.any(dim=-1)  # (B,)
        # Most probable eligible category: compare s_c (same order as p_c, no underflow ties).
        keys = torch.where(eligible, summary.s, NEG_INF)  # (B, C)
        best = keys.amax(dim=-1, keepdim=True)  # (B, 1)
        choice = (eligible & (keys == best)).to(torch.uint8).argmax(dim=-1)  # (B,) first best
        forced = self.threshold_mode & any_eligible  # (B,)

        # Refusal columns: bias rows add b_c; threshold rows keep (forced) or mask (respond).
        masked = torch.where(any_eligible, 0.0, NEG_INF)[:, None].expand_as(self.bias)  # (B, C)
        add = torch.where(self.threshold_mode[:, None], masked, self.bias)  # (B, C)
        out = z.clone()
        out[:, self.refusal_ids] = out[:, self.refusal_ids] + add  # (B, V)

        # Forced rows: every logit -inf except the chosen refusal token (set to 0).
        token = self.refusal_ids[choice][:, None]  # (B, 1)
        keep = torch.where(forced[:, None], 0.0, out.gather(1, token))  # (B, 1)
        out.masked_fill_(forced[:, None], NEG_INF)
        out.scatter_(1, token, keep)

        self.summary, self.probabilities, self.forced = summary, p, forced
        return out[:, :vocab]  # (B, V)

    def _later_step(self, z: torch.Tensor) -> torch.Tensor:
        return z.index_fill(1, self.control_ids, NEG_INF)  # (B, V)
