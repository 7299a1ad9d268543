"""Continuous batching: rows join the running batch between decode steps and leave when done.

A `RunningBatch` owns the KV cache of the rows decoding together. `admit(rows)` prefills the
joining rows as their own left-padded batch, takes their first (control) token through their own
`RefusalPolicyProcessor`, and merges the survivors into the running batch: the narrower cache is
left-padded with masked columns, so every row keeps its own positions. `step()` decodes one
token for every running row. Finished rows leave the batch and its cache at once, and cache
columns that no row attends to any more are cut off the left.

A greedy or seeded row therefore computes what it would compute alone, in any mix and whenever
it joins: its own positions, masked padding, its own random stream (one draw per step).
A row whose category refuses with a policy-given message leaves right after its first token.
For a model whose manifest keeps `[respond]` out of the answer's context (a refusal head on an
unchanged base model), a row that responds takes its first answer token from the same first-step
logits (control tokens masked) and goes on from the prompt alone: its answer is the base model's.
A responding row's answer may not open with the manifest's banned openers (`openers.py`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from workers.engine.cache_rows import drop_unused_columns, keep_columns, merge_rows
from workers.engine.forward import decode_logits, decodes_directly, prefill_logits
from workers.engine.model import LoadedModel
from workers.engine.prefill import (
    decision_logits,
    left_pad,
    suffix_adapter,
    summaries_to_rows,
    with_decision_suffix,
)
from workers.engine.processor import NEG_INF, RefusalPolicyProcessor
from workers.engine.sampling import sample_next
from workers.engine.types import (
    BatchCounters,
    FinishReason,
    FirstTokenSummary,
    GenerationRequest,
    GenerationResult,
)


@dataclass(frozen=True)
class Joining:
    """A request entering the batch: its key (the caller's handle) and its prompt's token ids."""

    key: int
    request: GenerationRequest
    encoded: list[int]

    @property
    def kv_tokens(self) -> int:
        """The cache tokens it may come to hold: prompt plus its whole budget."""
        return len(self.encoded) + self.request.sampling.max_new_tokens


@dataclass
class _Row:
    """Host-side state of one running row."""

    joining: Joining
    seed: int | None
    started: float
    first_token_at: float = 0.0
    summary: FirstTokenSummary | None = None
    decision: int = -1
    generated: list[int] = field(default_factory=list)
    peak_rows: int = 1
    #: It responded and its answer may still open with a banned opener (`openers.py`).
    opening: bool = False


@dataclass(frozen=True)
class RowEvent:
    """One row's token of one step; the first event carries the decision, the last the result."""

    key: int
    token: int
    decision: int | None = None  # set on the row's first token: -1 respond, else category
    probabilities: tuple[float, ...] | None = None  # set with `decision`
    result: GenerationResult | None = None  # set when the row is done


class RunningBatch:
    """The rows decoding together and their KV cache; see the module docstring."""

    def __init__(self, loaded: LoadedModel) -> None:
        if getattr(loaded.model.config.get_text_config(), "sliding_window", None):
            # A sliding-window cache keeps only its last columns: merging by left-padding would
            # shift rows' windows. Such models need a paged engine (docs/scaling.md, vLLM).
            raise ValueError(f"{loaded.name}: continuous batching needs full-attention caches")
        self.lm = loaded
        self._category_of = {
            tid: i for i, tid in enumerate(loaded.manifest.category_ids) if tid is not None
        }
        self._eos = frozenset(loaded.eos_ids)
        self._direct = decodes_directly(loaded.model)  # `forward.py`
        self.counters = BatchCounters()
        self._reset()

    def _reset(self) -> None:
        dev = self.lm.device
        self.rows: list[_Row] = []
        self.cache: DynamicCache | None = None
        self.attn = torch.zeros((0, 0), dtype=torch.long, device=dev)  # (B, W)
        self.pos = torch.zeros(0, dtype=torch.long, device=dev)  # (B,)
        self.tokens = torch.zeros(0, dtype=torch.long, device=dev)  # (B,) next input
        self.temperature = torch.zeros(0, device=dev)  # (B,)
        self.top_p = torch.zeros(0, device=dev)  # (B,)
        self.gens: list[torch.Generator | None] = []
        self.processor = RefusalPolicyProcessor.empty(
            refusal_ids=self.lm.refusal_ids, control_ids=self.lm.answer_masked_ids
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def kv_tokens(self) -> int:
        """Cache tokens reserved by the running rows (prompt plus budget each)."""
        return sum(r.joining.kv_tokens for r in self.rows)

    def abandon(self) -> list[int]:
        """Drop every row (after a failed step); returns their keys."""
        keys = [r.joining.key for r in self.rows]
        self._reset()
        return keys

    @torch.inference_mode()
    def admit(self, joining: Sequence[Joining]) -> list[RowEvent]:
        """Prefill `joining`, take each one's first token; rows not done join the batch."""
        if not joining:
            return []
        lm, dev = self.lm, self.lm.device
        t0 = time.perf_counter()
        sp = [j.request.sampling for j in joining]
        seeds = [s.seed if s.seed is not None else secrets.randbits(63) for s in sp]
        gens: list[torch.Generator | None] = [
            torch.Generator().manual_seed(seed) if s.temperature > 0 else None
            for s, seed in zip(sp, seeds, strict=True)
        ]
        temps = [s.temperature for s in sp]
        temperature = torch.tensor(temps, dtype=torch.float32, device=dev)  # (N,)
        top_p = torch.tensor([s.top_p for s in sp], dtype=torch.float32, device=dev)  # (N,)
        processor = RefusalPolicyProcessor.from_rows(
            refusal_ids=lm.refusal_ids,
            control_ids=lm.answer_masked_ids,
            policies=[j.request.policy for j in joining],
            temperatures=temps,
        )
        # The first step reads the manifest's decision suffix, if any; the answer never sees it:
        # its cache columns are dropped below, and the answer's first token comes from the
        # prompt's last position.
        suffix = lm.manifest.decision_ids
        batch = left_pad(with_decision_suffix(lm, [j.encoded for j in joining]), lm.pad_id, dev)
        cache = DynamicCache(config=lm.model.config)
        with suffix_adapter(lm):
            kept = prefill_logits(lm.model, batch, cache, 1 + len(suffix), direct=self._direct)
        logits = processor(batch.input_ids, decision_logits(lm, kept[:, -1, :]))  # (N, V)
        # The first (control) token is drawn without top-p, so a sampled bias row refuses with
        # exactly core's `sampled_bias_probabilities`; top-p applies to the answer's tokens.
        first = sample_next(logits, temperature, torch.ones_like(top_p), gens)  # (N,)
        assert processor.summary is not None and processor.probabilities is not None
        summaries = summaries_to_rows(processor.summary, processor.probabilities, temps)
        now = time.perf_counter()

        rows = [
            _Row(j, seed if s.temperature > 0 else None, t0, now, summary)
            for j, seed, s, summary in zip(joining, seeds, sp, summaries, strict=True)
        ]
        answer_start = self._answer_from_prompt(kept[:, 0, :], first, temperature, top_p, gens)
        events, keep = [], []
        for i, (row, token) in enumerate(zip(rows, first.tolist(), strict=True)):
            row.decision = self._category_of.get(token, -1)
            row.opening = lm.opener_ban is not None and token == lm.manifest.respond_id
            event = self._append(row, token, now)
            events.append(
                RowEvent(
                    row.joining.key,
                    token,
                    decision=row.decision,
                    probabilities=row.summary.probabilities if row.summary else None,
                    result=event,
                )
            )
            if event is None and i in answer_start:
                first[i] = answer_start[i]
                event = self._append(row, answer_start[i], now)
                events.append(RowEvent(row.joining.key, answer_start[i], result=event))
            if event is None:
                keep.append(i)
        c = self.counters
        c.rows += len(joining)
        c.prompt_tokens += sum(batch.lengths)
        c.padded_prompt_tokens += int(batch.input_ids.numel())
        c.generated_tokens += len(events)
        c.prefill_s += now - t0
        if keep:
            idx = torch.tensor(keep, device=dev)
            width = batch.input_ids.shape[1] - len(suffix)  # the prompt's columns only
            if suffix:
                keep_columns(cache, width)
            cache.batch_select_indices(idx)
            processor.keep_rows(idx)
            self._join(
                [rows[i] for i in keep],
                cache,
                batch.attention_mask[:, :width].index_select(0, idx),
                batch.position_ids[:, width - 1].index_select(0, idx),
                first.index_select(0, idx),
                temperature.index_select(0, idx),
                top_p.index_select(0, idx),
                [gens[i] for i in keep],
                processor,
            )
        return events

    def _answer_from_prompt(
        self,
        raw: torch.Tensor,  # (N, V) first-step logits as the model gave them
        first: torch.Tensor,  # (N,)
        temperature: torch.Tensor,  # (N,)
        top_p: torch.Tensor,  # (N,)
        gens: list[torch.Generator | None],
    ) -> dict[int, int]:
        """Row -> first answer token, for rows that responded when `[respond]` stays out of the
        answer's context: drawn from the same logits with every control token masked, as the next
        step would (the row's own sampling and random stream; other rows draw nothing)."""
        if self.lm.manifest.respond_in_context:
            return {}
        responded = (first == self.lm.manifest.respond_id).nonzero().flatten().tolist()
        if not responded:
            return {}
        idx = torch.tensor(responded, device=raw.device)
        masked = raw.index_select(0, idx).float().index_fill(1, self.lm.answer_masked_ids, NEG_INF)
        if self.lm.opener_ban is not None:
            masked[:, self.lm.opener_ban.banned(())] = NEG_INF  # every answer is empty here
        drawn = sample_next(
            masked, temperature[idx], top_p[idx], [gens[i] for i in responded]
        ).tolist()
        return dict(zip(responded, drawn, strict=True))

    def _join(
        self,
        rows: list[_Row],
        cache: DynamicCache,
        attn: torch.Tensor,  # (N, L)
        pos: torch.Tensor,  # (N,)
        tokens: torch.Tensor,  # (N,)
        temperature: torch.Tensor,  # (N,)
        top_p: torch.Tensor,  # (N,)
        gens: list[torch.Generator | None],
        processor: RefusalPolicyProcessor,
    ) -> None:
        if self.cache is None:
            self.cache, self.attn = cache, attn
        else:
            self.attn = merge_rows(self.cache, self.attn, cache, attn)  # (B + N, W)
        self.rows += rows
        self.pos = torch.cat([self.pos, pos])  # (B + N,)
        self.tokens = torch.cat([self.tokens, tokens])  # (B + N,)
        self.temperature = torch.cat([self.temperature, temperature])  # (B + N,)
        self.top_p = torch.cat([self.top_p, top_p])  # (B + N,)
        self.gens += gens
        self.processor.add_rows(processor)

    @torch.inference_mode()
    def step(self) -> list[RowEvent]:
        """One decode step for every running row; done rows leave the batch."""
        if not self.rows:
            return []
        t0 = time.perf_counter()
        self.attn = torch.cat([self.attn, self.attn.new_ones((len(self.rows), 1))], dim=-1)
        self.pos = self.pos + 1  # (B,)
        assert self.cache is not None
        raw = decode_logits(
            self.lm.model, self.tokens, self.attn, self.pos, self.cache, direct=self._direct
        )
        logits = self.processor(None, raw)  # (B, V)
        self._ban_openers(logits)
        self.tokens = sample_next(logits, self.temperature, self.top_p, self.gens)  # (B,)
        now = time.perf_counter()
        events, keep = [], []
        n = len(self.rows)
        for j, (row, token) in enumerate(zip(self.rows, self.tokens.tolist(), strict=True)):
            row.peak_rows = max(row.peak_rows, n)
            result = self._append(row, token, now)
            events.append(RowEvent(row.joining.key, token, result=result))
            if result is None:
                keep.append(j)
        self.counters.generated_tokens += len(self.rows)
        self.counters.decode_steps += 1
        if len(keep) < len(self.rows):
            self._keep(keep)
        self.counters.decode_s += time.perf_counter() - t0
        return events

    def _ban_openers(self, logits: torch.Tensor) -> None:
        """Mask, in place, what each responding row's answer (after `[respond]`) may not take."""
        if self.lm.opener_ban is not None:
            answers = [r.generated[1:] if r.opening else None for r in self.rows]
            self.lm.opener_ban.mask(logits, answers)

    def _keep(self, keep: list[int]) -> None:
        """Drop finished rows from the batch and the cache; cut columns nobody attends to."""
        if not keep:
            self._reset()
            return
        idx = torch.tensor(keep, device=self.lm.device)
        assert self.cache is not None
        self.cache.batch_select_indices(idx)
        self.processor.keep_rows(idx)
        self.attn, self.pos, self.tokens, self.temperature, self.top_p = (
            x.index_select(0, idx)
            for x in (self.attn, self.pos, self.tokens, self.temperature, self.top_p)
        )
        self.rows = [self.rows[j] for j in keep]
        self.gens = [self.gens[j] for j in keep]
        self.attn = drop_unused_columns(self.cache, self.attn)  # (B, W')

    def _append(self, row: _Row, token: int, now: float) -> GenerationResult | None:
        """Record `token`; the row's result when it is done (EOS, budget or a policy message)."""
        row.generated.append(token)
        if row.opening and self.lm.opener_ban and len(row.generated) > self.lm.opener_ban.depth:
            row.opening = False  # the answer is past every opener
        request = row.joining.request
        if len(row.generated) == 1 and row.decision >= 0:
            message = request.policy.refusal_messages[row.decision]
            if message is not None:
                return self._result(row, "stop", now, text=message)
        if not request.sampling.ignore_eos and token in self._eos:
            return self._result(row, "stop", now)
        if len(row.generated) >= request.sampling.max_new_tokens:
            return self._result(row, "length", now)
        return None

    def _result(
        self, row: _Row, finish: FinishReason, now: float, *, text: str | None = None
    ) -> GenerationResult:
        ids = row.generated
        assert row.summary is not None
        if text is None:
            text = self.lm.answer_text(ids)
        return GenerationResult(
            request_id=row.joining.request.request_id,
            summary=row.summary,
            decision=row.decision,
            first_token_id=ids[0],
            text=text,
            token_ids=tuple(ids),
            prompt_tokens=len(row.joining.encoded),
            completion_tokens=len(ids),
            finish_reason=finish,
            seed=row.seed,
            first_token_ms=(row.first_token_at - row.started) * 1e3,
            total_ms=(now - row.started) * 1e3,
            batch_rows=row.peak_rows,
        )
