"""Load a causal LM and its tokenizer for capture; fingerprints that tie shards to the exact model."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from pipeline.errors import ConfigError, ModelLoadError


def resolve_device(device: str) -> str:
    """``auto`` → cuda when available, else cpu; ``cuda`` without a GPU is a ConfigError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible; use device=auto or device=cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` → bf16 on GPU, fp32 on CPU."""
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if dtype not in table:
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return table[dtype]


def resolve_model_path(spec: str) -> str:
    """``tiny:<name>`` → the cached tiny model folder; anything else is passed to from_pretrained unchanged."""
    if spec.startswith("tiny:"):
        from pipeline.tiny.models import ensure_tiny

        return str(ensure_tiny(spec.removeprefix("tiny:")))
    return spec


def load_tokenizer(spec: str):
    """The model's tokenizer (fast, with offsets); ModelLoadError naming the model on failure."""
    from pipeline.align.probe import load_verified  # AutoTokenizer, then checks that it spells text back

    try:
        tok = load_verified(resolve_model_path(spec))
    except Exception as e:  # transformers raises OSError, ValueError, KeyError... for a bad folder
        raise ModelLoadError(f"cannot load the tokenizer of {spec!r}: {e}") from None
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"tokenizer of {spec!r} is not a fast tokenizer: character offsets are needed")
    return tok


def check_vocab(tok, model_vocab: int, spec: str) -> None:
    """Every id the tokenizer can produce must index the model's embedding. A model with more rows than its
    tokenizer has ids is normal (padding rows, e.g. to a multiple of 64): said on stderr, not refused."""
    ids = max(tok.get_vocab().values()) + 1  # added tokens included
    if ids > model_vocab:
        raise ModelLoadError(f"the tokenizer of {spec!r} has {ids} ids but the model's embedding has {model_vocab} "
                             f"rows: ids >= {model_vocab} have no embedding; give the model its own tokenizer")
    if ids < model_vocab:
        print(f"{spec}: the model has {model_vocab} embedding rows, its tokenizer {ids} ids; the other "
              f"{model_vocab - ids} are padding rows (never a target)", file=sys.stderr)


def load_model(spec: str, device: str, dtype: torch.dtype):
    """The causal LM in eval mode on ``device``; ModelLoadError naming the model on failure."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(spec), dtype=dtype)
    except Exception as e:
        raise ModelLoadError(f"cannot load the model {spec!r}: {e}") from None
    return model.to(device).eval()


def model_fingerprint(spec: str) -> str:
    """Hash of the model's config and weight files (names, sizes, and the bytes of small files)."""
    path = Path(resolve_model_path(spec))
    h = hashlib.sha256()
    if not path.is_dir():
        h.update(spec.encode())  # a Hub id: the commit is not known offline
        return h.hexdigest()[:16]
    for f in sorted(path.iterdir()):
        if f.suffix in {".json", ".safetensors", ".bin"} and f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            if f.stat().st_size < (64 << 20):
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tok) -> str:
    """Hash of the tokenizer's definition (vocab, merges, normaliser, specials): the one align checks."""
    from pipeline.align.canonical import tokenizer_fingerprint as canonical_fingerprint

    return canonical_fingerprint(tok)


def template_fingerprint(tok) -> str:
    """Hash of the chat template (None when the tokenizer has none): it changes how samples render."""
    return hashlib.sha256(json.dumps(getattr(tok, "chat_template", None)).encode()).hexdigest()[:16]
