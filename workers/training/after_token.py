"""What the model writes after a forced `[respond]`: does it refuse anyway?

A follow-up study of refusal tokens found models that say `[respond]` and then refuse in the
text. This forces `[respond]` on held-out prompts labelled `respond` and counts answers whose
text reads as a refusal, with the service's own detector (`core.refusal_text`, also used on live
traffic). It is a phrase match, not a judgement: it flags, for a human to read.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.categories import RESPOND, RefusalManifest, token_for
from core.refusal_text import refuses_in_text
from workers.training.data import Example
from workers.training.evaluate import sample_answers


def respond_then_refuse(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    heldout: Sequence[Example],
    *,
    limit: int = 60,
    max_new_tokens: int = 32,
    manifest: RefusalManifest | None = None,
) -> dict[str, object]:
    """Share of forced-`[respond]` answers to distinct held-out respond prompts that refuse anyway."""
    single = [
        e.messages[0]["content"] for e in heldout if e.label == RESPOND and len(e.messages) == 1
    ]
    prompts = list(dict.fromkeys(single))[:limit]
    answers = sample_answers(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        first_token=token_for(RESPOND),
        manifest=manifest,
    )
    flagged = [(p, a) for p, a in zip(prompts, answers, strict=True) if refuses_in_text(a)]
    return {
        "n": len(prompts),
        "refused_in_text": len(flagged),
        "rate": len(flagged) / max(1, len(prompts)),
        "examples": flagged[:5],
    }
