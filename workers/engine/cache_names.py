"""The KV cache's name in a transformers forward pass, for every version the requirements allow.

transformers 5 renamed the forward keyword and the output field `past_key_values` to `cache`; the
old keyword still works with a FutureWarning and goes in 5.40. 4.57 knows only the old names. So
the engine and the training code pass and read the cache through these helpers.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

_KEYWORDS: dict[type, str] = {}  # module class -> its forward's cache keyword


def cache_kwargs(module: torch.nn.Module, kv_cache: Any) -> dict[str, Any]:
    """`{keyword: kv_cache}` for `module`'s forward: `cache` where it takes it, else the old name."""
    kind = type(module)
    if kind not in _KEYWORDS:
        parameters = inspect.signature(kind.forward).parameters
        _KEYWORDS[kind] = "cache" if "cache" in parameters else "past_key_values"
    return {_KEYWORDS[kind]: kv_cache}


def output_cache(output: Any) -> Any:
    """The cache a forward pass returned (`cache` in transformers 5, `past_key_values` before)."""
    found = getattr(output, "cache", None)
    return found if found is not None else output.past_key_values
