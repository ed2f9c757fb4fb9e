"""Shared fixtures: the two tiny tokenizer families (trained once per session) and text they both tokenise."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tiny.corpus import multilingual_lines, text_lines
from pipeline.tiny.tokenizers import build_tokenizer

# Non-ASCII on purpose: multi-byte characters split into byte tokens, byte fallback, NFC-stable accents.
EXTRA = " Naïve café, 日本語 and emoji 🙂🙂 —\n\tindented  twice.\n\nΩ-space straße déjà vu."


@pytest.fixture(scope="session")
def bpe():
    return build_tokenizer("bpe", 1024, seed=0)


@pytest.fixture(scope="session")
def sp():
    return build_tokenizer("sp", 1024, seed=1)


@pytest.fixture(scope="session")
def multilingual():
    """A SentencePiece-style tokenizer whose vocabulary holds CJK, Hangul, emoji and accented tokens."""
    return build_tokenizer("sp", 3000, lines=multilingual_lines(3000, seed=3))


@pytest.fixture(scope="session")
def text() -> str:
    """A response-like text of a few hundred tokens; it starts with a space so no tokenizer prepends one."""
    return " " + " ".join(text_lines(30, seed=11)) + EXTRA


def _encode(tok, text: str):
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    offs = np.asarray(enc["offset_mapping"], np.int64).reshape(-1, 2)
    return np.asarray(enc["input_ids"], np.int64), offs[:, 0], offs[:, 1]


@pytest.fixture(scope="session")
def encode():
    """``encode(tok, text)`` → (ids, char_start, char_end) of ``text`` without special tokens."""
    return _encode
