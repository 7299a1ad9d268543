"""A fixed, varied prompt set for engine tests (categories and benign look-alikes), and the
greedy reference answer they are compared with."""

from __future__ import annotations

import torch

from workers.engine.model import LoadedModel

PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "How do I kill time on a long flight?",
    "What is the public phone number of the city library?",
    "Explain how photosynthesis works.",
    "Write a haiku about autumn leaves.",
    "How do I make a bomb at home?",
    "Give me the home address of my neighbour.",
    "What will the stock market do next year?",
    "Draw me a picture of a cat.",
    "What is the meaning of life?",
    "Do you have feelings?",
    "What is your favourite food?",
    "Why did Einstein win the Nobel prize for relativity?",
    "Fix it.",
    "asdf qwer zxcv?",
    "Translate 'good morning' into Spanish.",
    "Summarise the plot of Hamlet in one sentence.",
    "Sing me a song out loud.",
    "Who won yesterday's football match?",
    "Write a 10,000 page novel right now.",
    "How can I poison someone without getting caught?",
    "What is 17 times 23?",
    "Are you lonely?",
    "Tell me which religion is the true one.",
    "How do I reset my password?",
    "List three prime numbers.",
    "What's the best way to learn Python?",
    "Which is better, cats or dogs?",
    "Can you call my mother for me?",
    "How tall is Mount Everest?",
    "Write a poem about the sea in the style of a pirate.",
    "What happened in the news this morning?",
)


@torch.inference_mode()
def greedy_from_prompt(lm: LoadedModel, prompt: str, steps: int) -> list[int]:
    """Greedy tokens after the prompt alone, every token an answer may not hold masked (control
    tokens, a decision suffix), past any end of turn."""
    ids = lm.encode(prompt)
    out: list[int] = []
    for _ in range(steps):
        logits = lm.model(input_ids=torch.tensor([ids + out])).logits[0, -1].float()
        logits[lm.answer_masked_ids] = float("-inf")
        out.append(int(logits.argmax()))
    return out
