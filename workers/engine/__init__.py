"""The inference engine: torch and transformers live here and nowhere else in the service.

Modules (import them directly; this package imports nothing, so `workers.engine.types` stays
free of torch):

* `model` — `load_model(path) -> LoadedModel`: weights, left-padding tokenizer, checked manifest;
  `ModelLoadError` for an unservable directory.
* `processor` — `RefusalPolicyProcessor`: per-row bias/threshold rule at step 0, control tokens
  masked afterwards; `first_token_summary` from raw logits.
* `sampling` — `sample_next`: greedy / temperature / top-p, one random stream per row.
* `batch` — `Engine.generate(requests) -> (results, stats)`: mixed-policy batched decoding.
* `scoring` — `score_prompts(lm, items)`: streamed prefill-only summaries for calibration.
* `types` — `GenerationRequest`, `RowPolicy`, `SamplingParams`, `GenerationResult`,
  `FirstTokenSummary`, `BatchStats`, `stack_summaries`.
"""
