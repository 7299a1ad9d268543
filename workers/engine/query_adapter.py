"""A low-rank adapter that only the decision suffix passes through (an "activated LoRA").

The decision suffix comes after the prompt and its cache columns are dropped before the answer
(`prefill.py`), so weights used at the suffix's positions alone can change without changing any
answer: the prompt's keys and values stay the base model's, and the suffix reads them through
adapted projections in every block. For the first step's forward only (`at_positions`), each
block's linear layers are swapped for wrappers that add a low-rank update at the positions the
shared `Gate` names; outside it the model is the plain model, so decode steps, answers and the
saved weights never see the adapter and pay nothing for it.

On disk the model stays a plain transformers model; the update lives beside it in
`query_adapter.safetensors` with its shape in `query_adapter.json`, so plain transformers loads
the base model and our loader adds the update (`load_query_adapter`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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
    """Where the update applies in the forward being run: at the `last` columns (a left-padded
    batch's suffix) when set, else at `positions` (a weight per position broadcastable to the
    layers' input, (B, T, 1), 1 where it applies), nowhere when neither is."""

    positions: torch.Tensor | None = None
    last: int = 0


class GatedLowRank(torch.nn.Module):
    """`base(x) + scale * up(down(x))` at the gate's positions, `base(x)` elsewhere.

    `dropout` (LoRA's) drops inputs of the update while gradients are recorded: in training only,
    never in the engine (inference mode) nor in a no-grad evaluation."""

    dropout: float = 0.0

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
        if k := self.gate.last:  # the update of the last k columns only: what the engine runs
            y[:, -k:] += self.scale * ((x[:, -k:] @ self.down.T) @ self.up.T)
            return y
        at = self.gate.positions
        if at is None:
            return y
        if self.dropout and torch.is_grad_enabled():
            x = torch.nn.functional.dropout(x, self.dropout)
        return y + (self.scale * at) * ((x @ self.down.T) @ self.up.T)


#: The attribute of a model that holds its adapter (a plain attribute: not a submodule, so not
#: part of its weights).
ATTRIBUTE = "rcs_query_adapter"


@dataclass(frozen=True)
class QueryAdapter:
    """The wrappers of a model's layers (by name under its base model) and their shared gate."""

    model: PreTrainedModel
    gate: Gate
    layers: dict[str, GatedLowRank]
    rank: int
    alpha: float

    @property
    def active(self) -> bool:
        """Inside `at_positions` or `at_last`: the model's projections are the wrappers."""
        return self.gate.positions is not None or self.gate.last > 0

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.down, layer.up)]

    def parameters_below(self, block: int) -> list[torch.nn.Parameter]:
        """The updates' parameters of the blocks below `block` (`layers.{i}.` with i < block)."""
        return [
            p
            for name, layer in self.layers.items()
            if int(name.split(".")[1]) < block
            for p in (layer.down, layer.up)
        ]

    def set_dropout(self, p: float) -> None:
        """LoRA dropout of every layer's update input while training (`GatedLowRank`)."""
        for layer in self.layers.values():
            layer.dropout = p

    def at_positions(self, positions: torch.Tensor) -> AbstractContextManager[None]:
        """The forwards inside the block add the update at `positions` (see `Gate`)."""
        return self._active(Gate(positions=positions))

    def at_last(self, columns: int) -> AbstractContextManager[None]:
        """The forwards inside the block add the update at their last `columns` columns."""
        return self._active(Gate(last=columns))

    @contextmanager
    def _active(self, where: Gate) -> Iterator[None]:
        self._swap(install=True)
        self.gate.positions, self.gate.last = where.positions, where.last
        try:
            yield
        finally:
            self.gate.positions, self.gate.last = None, 0
            self._swap(install=False)

    def _swap(self, *, install: bool) -> None:
        for name, wrapper in self.layers.items():
            path, attr = name.rsplit(".", 1)
            parent = self.model.base_model.get_submodule(path)
            setattr(parent, attr, wrapper if install else wrapper.base)


def add_query_adapter(model: PreTrainedModel, rank: int, alpha: float) -> QueryAdapter:
    """An adapter for every block's `TARGETS` (updates start at zero), kept on the model;
    base weights are frozen."""
    gate = Gate()
    for p in model.parameters():
        p.requires_grad_(False)
    layers = {
        f"layers.{i}.{target}": GatedLowRank(block.get_submodule(target), rank, alpha, gate)
        for i, block in enumerate(model.base_model.layers)
        for target in TARGETS
    }
    adapter = QueryAdapter(model, gate, layers, rank, alpha)
    object.__setattr__(model, ATTRIBUTE, adapter)  # not a submodule: never in the state dict
    return adapter


def find_query_adapter(model: PreTrainedModel) -> QueryAdapter | None:
    """The adapter added to `model`, if any."""
    adapter = model.__dict__.get(ATTRIBUTE)
    return adapter if isinstance(adapter, QueryAdapter) else None


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
