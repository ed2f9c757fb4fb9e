"""Load a tokenizer and check, at load time, that it spells text back byte for byte.

* **Spelling** (every tokenizer): fixed probe texts (runs of spaces, tabs, blank lines, leading spaces, digits,
  accents, CJK, Hangul, emoji) are encoded and the canonical bytes of their tokens (:mod:`pipeline.modeling.canonical`)
  must equal the text (after the one space a SentencePiece-style tokenizer prepends). A token the tokenizer cannot
  spell (``<unk>``) may stand for any non-empty run of text. A tokenizer that drops or rewrites text (lower-casing,
  collapsed spaces) is refused: its vocab map and offsets would not describe the text the model saw.
* **SentencePiece-only folders** (:mod:`pipeline.modeling.sp_model`): the converted tokenizer gets SentencePiece's own
  text pipeline and must give the ids the ``sentencepiece`` library gives on the probe texts; without
  ``sentencepiece`` the folder is refused with what to install (transformers would fail with an unrelated tiktoken
  error).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.errors import ModelLoadError
from pipeline.modeling.canonical import canonicalize
from pipeline.modeling.sp_model import (SP_MODEL, first_difference, make_faithful, require_sentencepiece,
                                        sentencepiece_only)

PROBE_TEXTS = (
    "Hello world!  Two  spaces,   three, \ttab\n\nblank line\n    indented: x = f(1, 2)  # 3.14\n",
    "  leading spaces; trailing   \n naïve café — 日本語のテキスト, 한국어 문장, emoji 🙂👍🏽 and 12345678.",
    " one leading space",
)


def load_verified(path: str, revision: str | None = None, trust_remote_code: bool = False):
    """``AutoTokenizer.from_pretrained(path)``, refused (ModelLoadError) when it does not spell the probe texts back;
    a SentencePiece-only folder is made to tokenise like the ``sentencepiece`` library, or refused."""
    from transformers import AutoTokenizer

    sp_only = sentencepiece_only(path)
    if sp_only:
        require_sentencepiece(path)
    tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    if not getattr(tok, "is_fast", False):
        return tok  # the caller refuses slow tokenizers: no offsets
    if sp_only:
        make_faithful(tok, Path(path) / SP_MODEL, PROBE_TEXTS)
    check_spelling(tok, path)
    return tok


def check_spelling(tok, where: str) -> None:
    """The canonical bytes of the tokens of each probe text must spell the text (module doc)."""
    canon = canonicalize(tok)
    unk = getattr(tok, "unk_token_id", None)
    for text in PROBE_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        want = (" " + text if canon.prepends_space else text).encode("utf-8")
        pattern = b"".join(b"(?:.+?)" if i == unk else re.escape(canon.token_bytes[i]) for i in ids)
        if re.fullmatch(pattern, want, flags=re.DOTALL) is None and re.fullmatch(pattern, text.encode("utf-8"),
                                                                                     flags=re.DOTALL) is None:
            got = canon.decode(ids)
            i = first_difference(want, got)
            raise ModelLoadError(
                f"{where}: the tokenizer does not spell its input back: the bytes of its tokens for the probe text "
                f"differ at byte {i} (text {want[max(0, i - 12):i + 12]!r}, tokens {got[max(0, i - 12):i + 12]!r}); "
                f"logitfuse needs a tokenizer whose tokens are the text's bytes (a normaliser that lower-cases, "
                f"collapses spaces or drops characters cannot be aligned), or a tokenizer.json that matches the model")
