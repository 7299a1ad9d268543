"""Mixed-policy batched decoding: rows of different tenants share one forward pass.

Our own decoding loop over the model with a KV cache (nanoGPT-style) rather than
`model.generate`, because every row brings its own policy, temperature, top-p, token budget and
random stream. Per step: forward the last token of every live row, apply
`RefusalPolicyProcessor`, draw with `sample_next`, stop rows at EOS or their budget and drop
finished rows from the batch (and the cache) so long rows do not pay for short ones.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import torch
from transformers import DynamicCache

from core.settings import get_settings
from workers.engine.model import LoadedModel, load_model
from workers.engine.processor import RefusalPolicyProcessor, SummaryTensors
from workers.engine.sampling import sample_next
from workers.engine.types import (
    BatchStats,
    FirstTokenSummary,
    GenerationRequest,
    GenerationResult,
)


@dataclass(frozen=True)
class PaddedBatch:
    """Left-padded prompts and the position ids generate would use for them."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    lengths: list[int]


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> PaddedBatch:
    """Left-pad token lists; positions count real tokens only (as `generate` does)."""
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, L)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill_(mask == 0, 0)  # (B, L)
    return PaddedBatch(ids.to(device), mask.to(device), pos.to(device), lengths)


def summaries_to_rows(
    summary: SummaryTensors, p: torch.Tensor, temperature: list[float]
) -> list[FirstTokenSummary]:
    """Per-row `FirstTokenSummary` from batch tensors (one device->host copy each).

    Greedy rows (temperature 0) have no L_T of their own: their summary is taken at T = 1.
    """
    s, m, l1, lt = (x.double().cpu().tolist() for x in summary)
    probs = p.cpu().tolist()
    temps = [t if t > 0 else 1.0 for t in temperature]
    return [
        FirstTokenSummary(tuple(s[i]), m[i], l1[i], lt[i], temps[i], tuple(probs[i]))
        for i in range(len(m))
    ]


class RequestTooLong(ValueError):
    """A prompt plus its token budget that does not fit the model's context."""


class Engine:
    """A loaded model plus the batched decoding loop; `generate` is the worker's entry point."""

    def __init__(self, loaded: LoadedModel, *, max_batch_size: int | None = None) -> None:
        self.loaded = loaded
        self.max_batch_size = max_batch_size or get_settings().max_batch_size
        self._category_of = {
            tid: i for i, tid in enumerate(loaded.manifest.category_ids) if tid is not None
        }

    @classmethod
    def from_dir(cls, path: str | None = None, **kwargs: str) -> Engine:
        return cls(load_model(path, **kwargs))

    def generate(
        self, requests: Sequence[GenerationRequest]
    ) -> tuple[list[GenerationResult], BatchStats]:
        """Run requests in batches of at most `max_batch_size`, grouped by prompt length.

        Raises `RequestTooLong` before any work when a prompt plus its budget exceeds the
        model's context; call `check` per request first to fail only that one.
        """
        if not requests:
            return [], BatchStats(0, 0, 0, 0, 0.0, 0.0)
        encoded = [self.loaded.encode(r.prompt) for r in requests]
        for req, ids in zip(requests, encoded, strict=True):
            self.check(req, ids)
        order = sorted(range(len(requests)), key=lambda i: len(encoded[i]))
        results: list[GenerationResult | None] = [None] * len(requests)
        parts: list[BatchStats] = []
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            rows, stats = self.generate_batch(
                [requests[i] for i in chunk], [encoded[i] for i in chunk]
            )
            for i, row in zip(chunk, rows, strict=True):
                results[i] = row
            parts.append(stats)
        totals = BatchStats(*(sum(col) for col in zip(*map(astuple, parts), strict=True)))
        return [r for r in results if r is not None], totals

    def check(self, request: GenerationRequest, encoded: list[int] | None = None) -> int:
        """Prompt token count; raises `RequestTooLong` if prompt + budget exceed the context."""
        ids = encoded if encoded is not None else self.loaded.encode(request.prompt)
        limit = self.loaded.max_positions
        total = len(ids) + request.sampling.max_new_tokens
        if limit is not None and total > limit:
            raise RequestTooLong(
                f"prompt ({len(ids)} tokens) + max_new_tokens "
                f"({request.sampling.max_new_tokens}) exceeds the model's context of {limit}"
            )
        return len(ids)

    @torch.inference_mode()
    def generate_batch(
        self, requests: Sequence[GenerationRequest], encoded: Sequence[list[int]] | None = None
    ) -> tuple[list[GenerationResult], BatchStats]:
        """Decode one batch in a single loop; rows keep their own policy and sampling."""
        lm = self.loaded
        dev = lm.device
        t0 = time.perf_counter()
        encoded = encoded if encoded is not None else [lm.encode(r.prompt) for r in requests]
        n = len(requests)
        sp = [r.sampling for r in requests]
        seeds = [s.seed if s.seed is not None else secrets.randbits(63) for s in sp]
        gens: list[torch.Generator | None] = [
            torch.Generator().manual_seed(seed) if s.temperature > 0 else None
            for s, seed in zip(sp, seeds, strict=True)
        ]
        temps = [s.temperature for s in sp]
        temperature = torch.tensor(temps, dtype=torch.float32, device=dev)  # (B,)
        top_p = torch.tensor([s.top_p for s in sp], dtype=torch.float32, device=dev)  # (B,)
        budget = [s.max_new_tokens for s in sp]
        stop_at_eos = [not s.ignore_eos for s in sp]
        eos = set(lm.eos_ids)
        processor = RefusalPolicyProcessor.from_rows(
            refusal_ids=lm.refusal_ids,
            control_ids=lm.control_ids,
            modes=[r.policy.mode for r in requests],
            biases=[r.policy.bias for r in requests],
            thresholds=[r.policy.threshold for r in requests],
            temperatures=temps,
        )

        batch = left_pad(encoded, lm.pad_id, dev)
        cache = DynamicCache(config=lm.model.config)
        out = lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = processor(batch.input_ids, out.logits[:, -1, :])  # (B, V) float32
        # The first (control) token is drawn without top-p, so a sampled bias row refuses with
        # exactly core's `sampled_bias_probabilities`; top-p applies to the answer's tokens.
        tokens = sample_next(logits, temperature, torch.ones_like(top_p), gens)  # (B,)
        t_first = time.perf_counter()

        generated: list[list[int]] = [[] for _ in range(n)]
        finish: list[str] = ["length"] * n
        done_at = [0.0] * n
        live = list(range(n))  # original row index of each batch position
        attn = batch.attention_mask
        pos = batch.position_ids[:, -1]  # (B,)
        while True:
            now = time.perf_counter()
            keep: list[int] = []
            for j, tok in enumerate(tokens.tolist()):
                i = live[j]
                generated[i].append(tok)
                if stop_at_eos[i] and tok in eos:
                    finish[i], done_at[i] = "stop", now
                elif len(generated[i]) >= budget[i]:
                    done_at[i] = now
                else:
                    keep.append(j)
            if not keep:
                break
            if len(keep) < len(live):  # drop finished rows from the batch and the cache
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                attn, pos, tokens, temperature, top_p = (
                    x.index_select(0, idx) for x in (attn, pos, tokens, temperature, top_p)
                )
                live = [live[j] for j in keep]
                gens = [gens[j] for j in keep]
            attn = torch.cat([attn, attn.new_ones((len(live), 1))], dim=-1)  # (B, L + t)
            pos = pos + 1  # (B,)
            out = lm.model(
                input_ids=tokens[:, None],  # (B, 1)
                attention_mask=attn,
                position_ids=pos[:, None],  # (B, 1)
                past_key_values=cache,
                use_cache=True,
            )
            logits = processor(None, out.logits[:, -1, :])  # (B, V)
            tokens = sample_next(logits, temperature, top_p, gens)  # (B,)
        t_end = time.perf_counter()

        assert processor.summary is not None and processor.probabilities is not None
        summaries = summaries_to_rows(processor.summary, processor.probabilities, temps)
        results = []
        for i, req in enumerate(requests):
            ids = generated[i]
            decision = self._category_of.get(ids[0], -1)
            body = ids[1:] if ids[0] in self._control_set else ids
            results.append(
                GenerationResult(
                    request_id=req.request_id,
                    summary=summaries[i],
                    decision=decision,
                    first_token_id=ids[0],
                    text=lm.decode([t for t in body if t not in eos]).lstrip(),
                    token_ids=tuple(ids),
                    prompt_tokens=batch.lengths[i],
                    completion_tokens=len(ids),
                    finish_reason=finish[i],  # type: ignore[arg-type]
                    seed=seeds[i] if sp[i].temperature > 0 else None,
                    first_token_ms=(t_first - t0) * 1e3,
                    total_ms=(done_at[i] - t0) * 1e3,
                )
            )
        stats = BatchStats(
            rows=n,
            prompt_tokens=sum(batch.lengths),
            padded_prompt_tokens=int(batch.input_ids.numel()),
            generated_tokens=sum(len(g) for g in generated),
            prefill_s=t_first - t0,
            decode_s=t_end - t_first,
        )
        return results, stats

    @property
    def _control_set(self) -> frozenset[int]:
        return frozenset(self.loaded.manifest.all_ids)
