"""Load a model's tokenizer (and a causal LM) from a spec, and the fingerprints that tie artifacts to them.

A spec is a local folder, a Hub id, or ``tiny:<name>`` (a tiny model built and cached on first use). Capture, align
and train load through here; where the weights go (GPUs, dtype, attention kernel) is capture's business
(:mod:`pipeline.capture.model`).
"""

from __future__ import annotations

import hashlib
import json
import sys

from pipeline.errors import ModelLoadError
from pipeline.modeling import canonical, fingerprint
from pipeline.modeling.probe import load_verified


def resolve_model_path(spec: str) -> str:
    """``tiny:<name>`` → the cached tiny model folder; anything else is passed to from_pretrained unchanged."""
    if spec.startswith("tiny:"):
        from pipeline.tiny.models import ensure_tiny

        return str(ensure_tiny(spec.removeprefix("tiny:")))
    return spec


def load_tokenizer(spec: str, revision: str | None = None, trust_remote_code: bool = False):
    """The model's tokenizer (fast, with offsets); ModelLoadError naming the model on failure."""
    try:  # AutoTokenizer, then checks that it spells text back
        tok = load_verified(resolve_model_path(spec), revision=revision, trust_remote_code=trust_remote_code)
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


def load_causal_lm(spec: str, **kwargs):
    """``AutoModelForCausalLM.from_pretrained`` of the spec with ``kwargs`` (dtype, revision, placement...), in eval
    mode without KV cache; ModelLoadError naming the model on failure."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_model_path(spec), **kwargs)
    except Exception as e:
        raise ModelLoadError(f"cannot load the model {spec!r}: {e}") from None
    model.config.use_cache = False  # teacher forcing: a KV cache would only hold memory
    return model.eval()


def model_fingerprint(spec: str, revision: str | None = None) -> tuple[str, str]:
    """(hash, method) of the model's config and weights, without reading the weights (``fingerprint.py``)."""
    return fingerprint.model_fingerprint(resolve_model_path(spec), revision)


def tokenizer_fingerprint(tok) -> str:
    """Hash of the tokenizer's definition (vocab, merges, normaliser, specials): the one align checks."""
    return canonical.tokenizer_fingerprint(tok)


def template_fingerprint(tok) -> str:
    """Hash of the chat template (None when the tokenizer has none): it changes how samples render."""
    return hashlib.sha256(json.dumps(getattr(tok, "chat_template", None)).encode()).hexdigest()[:16]
