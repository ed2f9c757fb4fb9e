"""Canonical form of a tokenizer's vocabulary: the bytes each token stands for, and a fingerprint of the tokenizer.

Token strings are spelled differently by each family: GPT-2 byte-level BPE writes byte 0x20 as ``Ġ`` and 0x0A as
``Ċ``, SentencePiece writes a space as ``▁`` and unknown bytes as ``<0xNN>``, WordPiece marks continuations with
``##``. Two tokenizers can only be compared once every token is turned back into the bytes of text it produces;
that is what :func:`canonicalize` does, reading the scheme from the backend tokenizer's JSON. Special tokens
(``<|endoftext|>``, ``</s>``…) produce no text and are flagged apart, with an empty byte string.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from pipeline.errors import AlignmentError

SPACE_MARK = "\u2581"  # ▁
ROLES = ("eos", "bos", "pad", "unk", "sep", "cls", "mask")  # in the order special tokens are matched by role
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable Latin-1 bytes stand for themselves, the others are shifted to U+0100 onwards."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, shift = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


@dataclass(frozen=True)
class CanonicalVocab:
    """Every id of a tokenizer with the bytes it stands for (``b""`` for special tokens and unused ids)."""

    token_bytes: tuple[bytes, ...]
    tokens: tuple[str, ...]  # the raw token strings ("" for unused ids)
    special: np.ndarray  # bool [V]: produces no text (special added tokens, unused ids)
    byte_fallback: np.ndarray  # bool [V]: a ``<0xNN>`` token
    scheme: str  # byte_level | metaspace | wordpiece | plain
    prepends_space: bool  # the tokenizer adds a space (▁ / Ġ) before the first word of a text
    roles: dict[str, int] = field(default_factory=dict)  # eos/bos/... -> id

    def __len__(self) -> int:
        return len(self.token_bytes)

    def decode(self, ids) -> bytes:
        """Concatenated bytes of ``ids``, special tokens skipped."""
        tb = self.token_bytes
        return b"".join(tb[i] for i in ids)

    def texts(self, ids=None) -> list[str]:
        """Token bytes as strings for edit distances: UTF-8, a byte that is not valid UTF-8 counts as one char."""
        tb = self.token_bytes if ids is None else [self.token_bytes[i] for i in ids]
        return [as_text(b) for b in tb]


def as_text(b: bytes) -> str:
    """Bytes → str for string metrics; invalid UTF-8 bytes become lone surrogates (one char each), reversibly."""
    return b.decode("utf-8", errors="surrogateescape")


def backend(tok) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` behind a HF fast tokenizer (or ``tok`` itself)."""
    if isinstance(tok, Tokenizer):
        return tok
    bt = getattr(tok, "backend_tokenizer", None)
    if bt is None:
        raise AlignmentError(f"{type(tok).__name__} has no backend tokenizer JSON; load it with use_fast=True")
    return bt


def _components(node) -> list[dict]:
    """A pre-tokenizer/normalizer/decoder node and, for Sequences, everything inside it."""
    if not isinstance(node, dict):
        return []
    out = [node]
    for key in ("pretokenizers", "normalizers", "decoders"):
        for child in node.get(key) or []:
            out.extend(_components(child))
    return out


def _scheme(spec: dict) -> tuple[str, bool, bool, str]:
    """(scheme, byte_fallback, prepends_space, wordpiece prefix) read from the backend JSON."""
    pre, norm, dec = (_components(spec.get(k)) for k in ("pre_tokenizer", "normalizer", "decoder"))
    model = spec.get("model") or {}
    types = {c.get("type") for c in pre + dec}
    byte_fallback = bool(model.get("byte_fallback")) or "ByteFallback" in types
    prepends = False
    for c in pre:
        if c.get("type") == "ByteLevel" and c.get("add_prefix_space"):
            prepends = True
        if c.get("type") == "Metaspace" and (c.get("prepend_scheme") in ("first", "always")
                                              or c.get("add_prefix_space")):
            prepends = True
    # Llama-2 style: no pre-tokenizer, the normalizer replaces spaces by ▁ and prepends one
    replaces_space = any(c.get("type") == "Replace" and c.get("content") == SPACE_MARK for c in norm)
    prepends |= any(c.get("type") == "Prepend" and c.get("prepend") == SPACE_MARK for c in norm)
    if "ByteLevel" in types:
        return "byte_level", byte_fallback, prepends, ""
    if "Metaspace" in types or replaces_space:
        return "metaspace", byte_fallback, prepends, ""
    if model.get("type") == "WordPiece" or "WordPiece" in types:
        return "wordpiece", byte_fallback, prepends, model.get("continuing_subword_prefix") or "##"
    return "plain", byte_fallback, prepends, ""


def token_to_bytes(token: str, scheme: str, wordpiece_prefix: str = "##") -> bytes:
    """The bytes one (non-special) token string stands for under ``scheme``."""
    if scheme == "byte_level":
        try:
            return bytes(UNICODE_TO_BYTE[c] for c in token)
        except KeyError:  # a token outside the byte alphabet (hand-added): take it literally
            return token.encode("utf-8")
    if scheme == "metaspace":
        return token.replace(SPACE_MARK, " ").encode("utf-8")
    if scheme == "wordpiece" and token.startswith(wordpiece_prefix):
        # A word-initial WordPiece token implies a word boundary but not which one; only "##" is dropped.
        return token[len(wordpiece_prefix):].encode("utf-8")
    return token.encode("utf-8")


def _roles(tok) -> dict[str, int]:
    out = {}
    for role in ROLES:
        i = getattr(tok, f"{role}_token_id", None)
        if isinstance(i, int) and i >= 0:
            out[role] = i
    return out


def canonicalize(tok) -> CanonicalVocab:
    """Canonical bytes of every id of ``tok`` (HF fast tokenizer or ``tokenizers.Tokenizer``)."""
    bt = backend(tok)
    spec = json.loads(bt.to_str())
    scheme, byte_fallback, prepends, wp_prefix = _scheme(spec)
    vocab = bt.get_vocab(with_added_tokens=True)
    size = max(vocab.values(), default=-1) + 1
    added = {a["id"]: a for a in spec.get("added_tokens") or []}
    roles = {} if isinstance(tok, Tokenizer) else _roles(tok)
    special_ids = set(getattr(tok, "all_special_ids", []) or [])
    tokens, token_bytes = [""] * size, [b""] * size
    special = np.ones(size, dtype=bool)  # ids no token uses stay "special": they produce no text
    is_byte = np.zeros(size, dtype=bool)
    for token, i in vocab.items():
        tokens[i] = token
        m = _BYTE_TOKEN.fullmatch(token) if byte_fallback else None
        if m:  # checked first: SentencePiece layouts often register <0xNN> as special added tokens
            token_bytes[i], special[i], is_byte[i] = bytes([int(m.group(1), 16)]), False, True
        elif (i in added and added[i].get("special")) or i in special_ids:
            continue
        elif i in added:  # a non-special added token matches its content literally
            token_bytes[i], special[i] = token.encode("utf-8"), False
        else:
            token_bytes[i], special[i] = token_to_bytes(token, scheme, wp_prefix), False
    return CanonicalVocab(tuple(token_bytes), tuple(tokens), special, is_byte, scheme, prepends, roles)


def tokenizer_fingerprint(tok) -> str:
    """sha256 of the backend JSON (vocab, merges, normaliser…; padding/truncation settings left out) and specials."""
    spec = json.loads(backend(tok).to_str())
    spec.pop("padding", None)  # runtime settings: they do not change which ids stand for which text
    spec.pop("truncation", None)
    specials = {} if isinstance(tok, Tokenizer) else {
        "roles": {r: None if getattr(tok, f"{r}_token", None) is None else str(getattr(tok, f"{r}_token"))
                  for r in ROLES},
        "special": sorted(getattr(tok, "all_special_tokens", []) or []),
    }
    blob = json.dumps({"backend": spec, "specials": specials}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
