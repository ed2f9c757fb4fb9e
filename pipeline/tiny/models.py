"""Tiny GPT-2 / Llama shaped causal LMs with the project's own tokenizers, built once and cached on disk.

``ensure_tiny(name)`` returns a local folder that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load, exactly like a downloaded checkpoint, so every job is exercised on the real
loading path. Weights are random (seeded); the fusion benchmark trains its own sources on top of these.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers

from pipeline.errors import ConfigError
from pipeline.tiny.tokenizers import build_tokenizer


@dataclass(frozen=True)
class TinySpec:
    """Shape of one tiny model and its tokenizer."""

    arch: str  # "gpt2" | "llama"
    tokenizer: str  # "bpe" | "sp"
    vocab_size: int = 1024
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    max_positions: int = 512
    tokenizer_seed: int = 0
    seed: int = 0


TINY_MODELS: dict[str, TinySpec] = {
    "tiny-gpt2-bpe": TinySpec("gpt2", "bpe", vocab_size=1024, tokenizer_seed=0, seed=0),
    "tiny-llama-sp": TinySpec("llama", "sp", vocab_size=1024, tokenizer_seed=1, seed=1),
    # The pivot: a third tokenizer (byte-level BPE trained on other text, other vocab size) and shape.
    "tiny-llama-pivot": TinySpec("llama", "bpe", vocab_size=1280, hidden=96, tokenizer_seed=2, seed=2),
}


def cache_root() -> Path:
    """Where built artifacts live: $LOGITFUSE_CACHE or ~/.cache/logitfuse."""
    return Path(os.environ.get("LOGITFUSE_CACHE", Path.home() / ".cache" / "logitfuse"))


def _config(spec: TinySpec, tok) -> transformers.PretrainedConfig:
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    if spec.arch == "gpt2":
        return transformers.GPT2Config(n_embd=spec.hidden, n_layer=spec.layers, n_head=spec.heads,
                                       n_positions=spec.max_positions, **common)
    if spec.arch == "llama":
        return transformers.LlamaConfig(hidden_size=spec.hidden, intermediate_size=spec.hidden * 3,
                                        num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                                        num_key_value_heads=spec.heads,
                                        max_position_embeddings=spec.max_positions, **common)
    raise ConfigError(f"tiny model arch must be 'gpt2' or 'llama', got {spec.arch!r}")


def build(spec: TinySpec, out: Path) -> None:
    """Train the tokenizer, initialise the model with ``spec.seed`` and save both to ``out``."""
    tok = build_tokenizer(spec.tokenizer, spec.vocab_size, seed=spec.tokenizer_seed)
    torch.manual_seed(spec.seed)
    model = transformers.AutoModelForCausalLM.from_config(_config(spec, tok))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "logitfuse_tiny.json").write_text(json.dumps(asdict(spec), indent=1))


def ensure_tiny(name: str) -> Path:
    """Path of the cached tiny model ``name``; built atomically on first use."""
    if name not in TINY_MODELS:
        raise ConfigError(f"unknown tiny model {name!r}; known: {sorted(TINY_MODELS)}")
    spec = TINY_MODELS[name]
    key = hashlib.sha256(json.dumps([asdict(spec), transformers.__version__]).encode()).hexdigest()[:12]
    path = cache_root() / "tiny" / f"{name}-{key}"
    if (path / "logitfuse_tiny.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=path.parent))
    try:
        build(spec, tmp)
        try:
            os.rename(tmp, path)  # atomic: a concurrent builder that lost the race keeps the winner's copy
        except OSError:
            if not (path / "logitfuse_tiny.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
