"""A low-rank adapter that only the decision suffix passes through (an "activated LoRA").

The decision suffix comes after the prompt and its cache columns are dropped before the answer
(`prefill.py`), so weights used at the suffix's positions alone can change without changing any
answer: the prompt's keys and values stay the base model's, and the suffix reads them through
adapted projections in every block. Each block's linear layers are wrapped with a low-rank update
that is added only at the positions the shared `Gate` names, set around the first step's forward
(`at_positions`) and never for a prompt or an answer token.

On disk the model stays a plain transformers model; the update lives beside it in
`query_adapter.safetensors` with its shape in `query_adapter.json`, so plain transformers loads
the base model and our loader adds the update (`load_query_adapter`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

CONFIG_FILE = "query_adapter.json"
WEIGHTS_FILE = "query_adapter.safetensors"

#: The projections of a Llama-style block that get an update.
TARGETS: tuple[str, ...] = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


@dataclass
class Gate:
    """Where the update applies in the forward being run: None nowhere, else a weight per
    position broadcastable to the layers' input, (B, T, 1) or (1, T, 1), 1 where it applies."""

    positions: torch.Tensor | None = None


class GatedLowRank(torch.nn.Module):
    """`base(x) + scale * up(down(x))` at the gate's positions, `base(x)` elsewhere."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, gate: Gate) -> None:
        super().__init__()
        self.base, self.gate, self.scale = base, gate, alpha / rank
        w = base.weight
        self.down = torch.nn.Parameter(
            torch.randn(rank, base.in_features, dtype=w.dtype, device=w.device)
            / math.sqrt(base.in_features)
        )  # (r, in)
        self.up = torch.nn.Parameter(
            torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device)
        )  # (out, r): the update starts at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        at = self.gate.positions
        if at is None:
            return y
        return y + (self.scale * at) * ((x @ self.down.T) @ self.up.T)


@dataclass(frozen=True)
class QueryAdapter:
    """The wrapped layers of a model (by name) and their shared gate."""

    gate: Gate
    layers: dict[str, GatedLowRank]
    rank: int
    alpha: float

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.down, layer.up)]

    @contextmanager
    def at_positions(self, positions: torch.Tensor) -> Iterator[None]:
        """The update applies at `positions` for the forwards inside the block."""
        self.gate.positions = positions
        try:
            yield
        finally:
            self.gate.positions = None


def add_query_adapter(model: PreTrainedModel, rank: int, alpha: float) -> QueryAdapter:
    """Wrap every block's `TARGETS` in place (updates start at zero); base weights stay frozen."""
    gate, layers = Gate(), {}
    for p in model.parameters():
        p.requires_grad_(False)
    for i, block in enumerate(model.base_model.layers):
        for target in TARGETS:
            parent_name, name = target.split(".")
            parent = getattr(block, parent_name)
            wrapped = GatedLowRank(getattr(parent, name), rank, alpha, gate)
            setattr(parent, name, wrapped)
            layers[f"layers.{i}.{target}"] = wrapped
    return QueryAdapter(gate, layers, rank, alpha)


def find_query_adapter(model: PreTrainedModel) -> QueryAdapter | None:
    """The adapter wrapped into `model`, if any."""
    layers = {
        name.removeprefix(f"{model.base_model_prefix}."): m
        for name, m in model.named_modules()
        if isinstance(m, GatedLowRank)
    }
    if not layers:
        return None
    first = next(iter(layers.values()))
    rank = first.down.shape[0]
    return QueryAdapter(first.gate, layers, rank, first.scale * rank)


def suffix_positions(width: int, suffix: int, like: torch.Tensor) -> torch.Tensor:
    """(1, width, 1): 1 at the last `suffix` columns of a left-padded batch, 0 before."""
    at = torch.zeros((1, width, 1), dtype=like.dtype, device=like.device)
    at[:, width - suffix :] = 1
    return at


@contextmanager
def unwrapped(model: PreTrainedModel, adapter: QueryAdapter) -> Iterator[None]:
    """The model with its plain linear layers back (to save it as plain transformers)."""
    for name, layer in adapter.layers.items():
        parent, attr = _parent(model, name)
        setattr(parent, attr, layer.base)
    try:
        yield
    finally:
        for name, layer in adapter.layers.items():
            parent, attr = _parent(model, name)
            setattr(parent, attr, layer)


def _parent(model: PreTrainedModel, name: str) -> tuple[torch.nn.Module, str]:
    path, attr = name.rsplit(".", 1)
    return model.base_model.get_submodule(path), attr


def save_query_adapter(adapter: QueryAdapter, out_dir: Path) -> None:
    """`query_adapter.json` (rank, alpha, targets) and the updates' weights."""
    tensors = {}
    for name, layer in adapter.layers.items():
        tensors[f"{name}.down"] = layer.down.detach().contiguous()
        tensors[f"{name}.up"] = layer.up.detach().contiguous()
    save_file(tensors, str(out_dir / WEIGHTS_FILE))
    config = {"rank": adapter.rank, "alpha": adapter.alpha, "targets": list(TARGETS)}
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load_query_adapter(model: PreTrainedModel, path: Path) -> QueryAdapter | None:
    """Wrap `model` with the adapter saved in `path`, if there is one; raises ValueError when
    the files do not fit the model."""
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    if list(config.get("targets", [])) != list(TARGETS):
        raise ValueError(f"{config_file}: targets {config.get('targets')} are not {list(TARGETS)}")
    adapter = add_query_adapter(model, int(config["rank"]), float(config["alpha"]))
    tensors = load_file(str(path / WEIGHTS_FILE))
    expected = {f"{name}.{part}" for name in adapter.layers for part in ("down", "up")}
    if set(tensors) != expected:
        raise ValueError(f"{path / WEIGHTS_FILE}: its tensors do not match the model's blocks")
    with torch.no_grad():
        for name, layer in adapter.layers.items():
            for part in ("down", "up"):
                param = getattr(layer, part)
                value = tensors[f"{name}.{part}"]
                if value.shape != param.shape:
                    raise ValueError(
                        f"{path / WEIGHTS_FILE}: {name}.{part} has shape {value.shape}"
                    )
                param.copy_(value)
    return adapter
