"""Build the two tokenizer families the tests and the quickstart need, trained in seconds on synthetic text.

- ``bpe``: GPT-2 style byte-level BPE (``Ġ`` marks a leading space, every byte is in the alphabet).
- ``sp``: SentencePiece style BPE (``▁`` marks a leading space, ``<0x..>`` byte fallback for unseen characters),
  shipped with a chat template so the chat-template path of capture is exercised.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.errors import ConfigError
from pipeline.tiny.corpus import text_lines

SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _byte_level_bpe(vocab_size: int, lines: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok


def _sentencepiece_bpe(vocab_size: int, lines: list[str]) -> Tokenizer:
    def setup(tok: Tokenizer) -> Tokenizer:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                         decoders.Metaspace(replacement="▁", prepend_scheme="first")])
        return tok

    trained = setup(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=SPECIALS, limit_alphabet=200,
                                  show_progress=False)
    trained.train_from_iterator(lines, trainer)
    model = json.loads(trained.to_str())["model"]
    # SentencePiece layout: specials, then the 256 byte tokens <0x00>..<0xFF> as ordinary vocabulary, then pieces.
    pieces = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    vocab = {t: i for i, (t, _) in enumerate(pieces[: len(SPECIALS)])}
    vocab.update({f"<0x{b:02X}>": len(SPECIALS) + b for b in range(256)})
    for t, _ in pieces[len(SPECIALS):]:
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = setup(Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True)))
    tok.add_special_tokens(SPECIALS)
    return tok


def build_tokenizer(kind: str, vocab_size: int = 1024, seed: int = 0, n_lines: int = 3000,
                    lines: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train a tokenizer of family ``kind`` ("bpe" or "sp") on deterministic synthetic text (or on ``lines``)."""
    lines = text_lines(n_lines, seed) if lines is None else lines
    if kind == "bpe":
        core = _byte_level_bpe(vocab_size, lines)
        extra = {}
    elif kind == "sp":
        core = _sentencepiece_bpe(vocab_size, lines)
        extra = {"chat_template": CHAT_TEMPLATE}
    else:
        raise ConfigError(f"tokenizer kind must be 'bpe' or 'sp', got {kind!r}")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", **extra)
    return tok
