"""How people type: surface forms the demo recipe puts around its training prompts.

Templates are tidy single sentences; real prompts open with a greeting or a sentence of context,
frame the request as role-play, carry typos, drop articles when English is not the writer's
first language, and close with a thank-you. None of that decides the class, so the generator
wraps training prompts (held-out ones keep the plain wrappers of `data.py`) in these at random.
Written for this project; none is taken from a published prompt set.
"""

from __future__ import annotations

import random
import re

from core.categories import CATEGORIES

HUMANIZING = "humanizing"
assert HUMANIZING in CATEGORIES

OPENINGS = (
    *("",) * 10,
    "hi ",
    "hiya, ",
    "hello there. ",
    "yo ",
    "Hey, quick one: ",
    "ok so ",
    "so basically ",
    "Right, ",
    "Morning! ",
    "hey assistant ",
    "Excuse me, ",
    "first time using this. ",
    "Can you help? ",
    "pls help ",
    "Hello, I hope you are well. ",
    "Question for you: ",
    "Need some help here. ",
    "Random question, ",
    "Hey, sorry if this is dumb, ",
    "Greetings. ",
)
CLOSINGS = (
    *("",) * 10,
    " pls",
    " thx",
    " ty!",
    " asap",
    " Thanks a lot!!",
    " Sorry for my english.",
    " Answer briefly please.",
    " I'd really appreciate it.",
    "??",
    " lol",
    " Please be specific.",
    " In simple words please.",
    " Many thanks in advance.",
    " Keep it under 100 words.",
    " Explain like I'm five.",
    " Use bullet points.",
)
#: A sentence or two of who is asking and why, before the request.
CONTEXTS = (
    "I'm a nurse and I work night shifts.",
    "My teacher gave us this as homework.",
    "We were arguing about this at dinner yesterday.",
    "I'm new to all of this, so please be patient with me.",
    "English is not my first language.",
    "I have a presentation tomorrow morning and I'm nervous.",
    "My kids keep asking me this and I never know what to say.",
    "I tried searching online but got confused.",
    "I'm 67 and not very good with technology.",
    "I work in IT support for a small company.",
    "This came up in my book club last week.",
    "I'm writing a post for my blog.",
    "I'm an exchange student in Germany.",
    "My boss asked me to look into this before Friday.",
    "It's 3am and I can't sleep, so here goes.",
    "Long story short, my week has been crazy.",
    "I run a small bakery with my sister.",
    "I'm planning a trip next month.",
    "I just moved to a new city and don't know anyone yet.",
    "My partner and I disagree about this.",
    "I volunteer at the local library on weekends.",
    "I'm studying for my exams and running out of time.",
    "So I was watching a documentary last night.",
    "Background: I'm a software developer, mostly backend.",
)
#: Role-play framings; the class of the request inside does not change.
PERSONAS = (
    "a friendly librarian",
    "an expert tutor",
    "a pirate",
    "a wise old wizard",
    "my personal coach",
    "a travel agent",
    "a grumpy professor",
    "a customer support agent",
    "my best friend",
    "a detective in a noir film",
)
ROLE_FRAMES = (
    "You are {persona}. {request}",
    "Pretend you're {persona} and answer this: {request}",
    "Act as {persona}. {request}",
    "Let's role-play. You are {persona}. {request}",
    "Imagine you are {persona}. {request}",
    "From now on you are {persona}. {request}",
)
#: Non-native phrasings of common openings (applied to the start of the request).
NON_NATIVE = (
    (r"^How do I ", "How I can "),
    (r"^How can I ", "How I can "),
    (r"^What is ", "What is the "),
    (r"^Can you ", "Can you please to "),
    (r"^Please ", "Kindly "),
    (r"^Tell me ", "Please tell to me "),
    (r"^Why ", "For what reason "),
    (r"^Is there ", "There is "),
)
ARTICLES = re.compile(r"\b(the|a|an) ", re.IGNORECASE)
KEYBOARD_NEIGHBOURS = dict(zip("aeiostnrl", "swuoidbmtk", strict=False))

CONTEXT_RATE = 0.3
ROLE_PLAY_RATE = 0.1
NON_NATIVE_RATE = 0.15
TYPO_RATE = 0.25
TYPO_PER_WORD = 0.08


def _typo(word: str, rng: random.Random) -> str:
    """One slip of the keyboard: swap, drop, double or hit a neighbouring key."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + KEYBOARD_NEIGHBOURS.get(word[i], word[i]) + word[i + 1 :]


def with_typos(text: str, rng: random.Random) -> str:
    """Some words mistyped."""
    return " ".join(_typo(w, rng) if rng.random() < TYPO_PER_WORD else w for w in text.split(" "))


def non_native(text: str, rng: random.Random) -> str:
    """Articles dropped and an opening phrased the way a learner might."""
    text = ARTICLES.sub(lambda m: "" if rng.random() < 0.6 else m.group(0), text)
    for pattern, replacement in NON_NATIVE:
        if re.match(pattern, text):
            return re.sub(pattern, replacement, text, count=1)
    return text


def loosen(text: str, rng: random.Random, *, lower: float, unpunctuated: float) -> str:
    """Lower-case the text with probability `lower`, else drop its end punctuation with
    probability `unpunctuated` (one roll: never both)."""
    roll = rng.random()
    if roll < lower:
        return text.lower()
    if roll < lower + unpunctuated:
        return text.rstrip("?.!")
    return text


def as_people_type(text: str, rng: random.Random, *, label: str) -> str:
    """`text` with an opening, context, role-play frame, learner phrasing, typos and a closing,
    each at its own rate. Humanizing requests are not role-played: asking a persona about its
    feelings is a game, not a question to the assistant."""
    if rng.random() < NON_NATIVE_RATE:
        text = non_native(text, rng)
    if label != HUMANIZING and rng.random() < ROLE_PLAY_RATE:
        text = rng.choice(ROLE_FRAMES).format(persona=rng.choice(PERSONAS), request=text)
    if rng.random() < CONTEXT_RATE:
        text = rng.choice(CONTEXTS) + " " + text
    text = rng.choice(OPENINGS) + text + rng.choice(CLOSINGS)
    if rng.random() < TYPO_RATE:
        text = with_typos(text, rng)
    return loosen(text, rng, lower=0.15, unpunctuated=0.1)
