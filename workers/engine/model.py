"""Loading a served model: a local transformers causal LM plus its refusal-token manifest.

Everything that can make a model unservable is checked here, at load, so a bad directory fails
when the worker starts and not at its first request: the manifest must exist, parse, and name
tokens that the tokenizer maps to exactly the manifest's ids inside the model's vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from core.categories import MANIFEST_FILENAME, InvalidManifest, RefusalManifest
from core.settings import Settings, get_settings
from workers.engine.openers import OpenerBan
from workers.engine.prompt_tokens import encode_prompt
from workers.engine.query_adapter import QueryAdapter, load_query_adapter

#: A prompt is plain text (sent as one user turn) or a list of chat messages.
Prompt = str | Sequence[Mapping[str, str]]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(ValueError):
    """A model directory that cannot be served (missing files, inconsistent manifest)."""


def resolve_device(setting: str = "auto") -> torch.device:
    """`auto` is CUDA when present, else CPU; never assumes a GPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("RCS_DEVICE=cuda but no CUDA device is available")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on a GPU that supports it, float32 otherwise (CPU)."""
    if setting != "auto":
        return _DTYPES[setting]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: weights on the device, left-padding tokenizer, checked manifest."""

    name: str
    path: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    manifest: RefusalManifest
    device: torch.device
    dtype: torch.dtype
    vocab_size: int  # width of the logits (the model's, may exceed len(tokenizer))
    pad_id: int
    eos_ids: tuple[int, ...]
    # (C,) long, on device, in CATEGORIES order; a category the model has no token for points
    # at `vocab_size`, a virtual logit that is always -inf (see processor.with_absent_column).
    refusal_ids: torch.Tensor
    control_ids: torch.Tensor  # (K + 1,) long: the K real refusal ids then respond
    # A low-rank update only the decision suffix passes through (`query_adapter.py`), if any.
    query_adapter: QueryAdapter | None = None

    @cached_property
    def answer_masked_ids(self) -> torch.Tensor:
        """Ids no answer token may be: the control tokens, then any decision suffix's."""
        if not self.manifest.decision_ids:
            return self.control_ids
        suffix = torch.tensor(self.manifest.decision_ids, device=self.control_ids.device)
        return torch.cat([self.control_ids, suffix])

    @cached_property
    def opener_ban(self) -> OpenerBan | None:
        """The openers a `[respond]` answer may not start with, as token ids; None: no ban."""
        openers = self.manifest.respond_banned_openers
        return OpenerBan.from_texts(self.tokenizer, openers) if openers else None

    @cached_property
    def max_positions(self) -> int | None:
        """The model's context length, when its config states one (read once: every request is
        checked against it, and transformers' config attributes are slow to read)."""
        value = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        return int(value) if value else None

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt (chat template when the tokenizer has one); control and role
        tokens typed in the prompt stay plain text (`prompt_tokens`)."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return encode_prompt(self.tokenizer, list(messages))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def answer_text(self, generated: Sequence[int]) -> str:
        """The text of generated ids: without the leading control token, EOS and leading space,
        and without NUL characters: a byte-level tokenizer can produce them and PostgreSQL text
        cannot hold them (the row, with every row written beside it, would fail)."""
        body = generated[1:] if generated and generated[0] in self.manifest.all_ids else generated
        eos = self.eos_ids
        return self.decode([t for t in body if t not in eos]).replace("\x00", "").lstrip()


def check_manifest_tokens(
    manifest: RefusalManifest, tokenizer: PreTrainedTokenizerBase, where: str
) -> None:
    """Every token of the manifest is exactly its id in the tokenizer, and encodes to it alone."""
    names = [t for t in manifest.category_tokens if t is not None] + [manifest.respond_token]
    pairs = [*zip(names, manifest.all_ids, strict=True)]
    pairs += zip(manifest.decision_tokens, manifest.decision_ids, strict=True)
    for token, tid in pairs:
        found = tokenizer.convert_tokens_to_ids(token)
        if found != tid:
            raise ModelLoadError(
                f"{where}: token {token!r} has id {tid} in the manifest but {found} in the tokenizer"
            )
        if tokenizer.encode(token, add_special_tokens=False) != [tid]:
            raise ModelLoadError(f"{where}: token {token!r} does not encode to the single id {tid}")


def read_manifest(
    path: Path, tokenizer: PreTrainedTokenizerBase, vocab_size: int
) -> RefusalManifest:
    """Parse `refusal_tokens.json` and check it against the tokenizer; raise `ModelLoadError`."""
    file = path / MANIFEST_FILENAME
    if not file.is_file():
        raise ModelLoadError(
            f"{path}: no {MANIFEST_FILENAME}; a served model needs its refusal-token manifest"
        )
    try:
        manifest = RefusalManifest.from_json(json.loads(file.read_text()), vocab_size=vocab_size)
    except (json.JSONDecodeError, InvalidManifest) as exc:
        raise ModelLoadError(f"{file}: {exc}") from exc
    check_manifest_tokens(manifest, tokenizer, str(file))
    return manifest


def load_model(
    path: Path | str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    settings: Settings | None = None,
) -> LoadedModel:
    """Load a model directory with no network access; device and dtype default to settings."""
    settings = settings or get_settings()
    path = Path(path) if path is not None else settings.resolved_model_dir()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: not a model directory (no config.json)")
    dev = resolve_device(device or settings.device)
    dt = resolve_dtype(dtype or settings.dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    vocab_size = int(config.get_text_config().vocab_size)
    manifest = read_manifest(path, tokenizer, vocab_size)  # before the (slow) weights
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dt)
    model.to(dev).eval()
    try:
        adapter = load_query_adapter(model, path)  # made on the model's device and dtype
    except (ValueError, KeyError, OSError) as exc:
        raise ModelLoadError(f"{path}: query adapter: {exc}") from exc
    if adapter is not None and not manifest.decision_ids:
        raise ModelLoadError(f"{path}: a query adapter needs the manifest's decision_suffix")

    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, list | tuple) else (() if eos is None else (int(eos),))
    ids = [vocab_size if i is None else i for i in manifest.category_ids]
    refusal = torch.tensor(ids, dtype=torch.long, device=dev)  # (C,)
    control = torch.tensor(manifest.all_ids, dtype=torch.long, device=dev)  # (K + 1,)
    return LoadedModel(
        name=path.name,
        path=path,
        model=model,
        tokenizer=tokenizer,
        manifest=manifest,
        device=dev,
        dtype=dt,
        vocab_size=vocab_size,
        pad_id=int(tokenizer.pad_token_id),
        eos_ids=eos_ids,
        refusal_ids=refusal,
        control_ids=control,
        query_adapter=adapter,
    )
