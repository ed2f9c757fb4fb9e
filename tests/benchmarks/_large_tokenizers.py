"""Two real-size tokenizers of different families for the align benchmark, trained locally (no downloads).

- ``bpe``: GPT-2 style byte-level BPE, 32768 ids, regex pre-tokenizer, ``Ġ``/``Ċ`` byte alphabet.
- ``sp``: Llama style SentencePiece BPE, 32000 ids, ``▁`` spaces, ``<0xNN>`` byte fallback, NFC normaliser.
- ``bpe150k`` / ``bpe100k``: byte-level BPEs of 150,000 and 100,000 ids (Qwen-2 / Llama-3 sized) for the vocab-map
  timing at real sizes, trained on 96 MB each.

They are trained on disjoint halves of the Python stdlib and site-packages sources and texts (as two real model
families are trained on different data), with every 10th stdlib file held out for benchmark text. Built once
(about a minute each for the 32k ones on two cores, several for the large ones) and cached under
~/.cache/logitfuse/bench_align/.
"""

from __future__ import annotations

import glob
import os
import sysconfig
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CACHE = Path(os.environ.get("LOGITFUSE_CACHE", Path.home() / ".cache" / "logitfuse")) / "bench_align"
SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"]
SIZES = {"bpe": 32768, "sp": 32000, "bpe150k": 150000, "bpe100k": 100000}
TRAIN_BYTES = {"bpe": 24 << 20, "sp": 24 << 20, "bpe150k": 96 << 20, "bpe100k": 96 << 20}  # enough for stable merges
EXTS = ("py", "txt", "rst", "md")


def _files() -> tuple[list[str], list[str]]:
    """(training files, held-out stdlib files), sorted for stable splits."""
    stdlib = sysconfig.get_paths()["stdlib"]
    held, train = [], []
    for root in dict.fromkeys([stdlib, sysconfig.get_paths()["purelib"]]):
        found = sorted(f for ext in EXTS for f in glob.glob(os.path.join(root, "**", f"*.{ext}"), recursive=True))
        if root == stdlib:
            found = [f for f in found if "site-packages" not in f]
            held += found[::10]
            found = [f for i, f in enumerate(found) if i % 10]
        train += found
    return train, held


def read_texts(files: list[str], budget: int) -> list[str]:
    """Texts of ``files`` in order until ``budget`` characters (unreadable or non-UTF-8 files skipped)."""
    out, total = [], 0
    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.append(text)
        total += len(text)
        if total >= budget:
            break
    return out


def held_out_text(n_chars: int) -> str:
    """Text none of the tokenizers saw: held-out stdlib files concatenated, cut to ``n_chars``."""
    return "\n".join(read_texts(_files()[1], n_chars))[:n_chars]


def _train(kind: str, texts: list[str]) -> Tokenizer:
    if kind.startswith("bpe"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(vocab_size=SIZES[kind], special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                     prepend_scheme="first")])
        bytes_ = [f"<0x{b:02X}>" for b in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=SIZES[kind], special_tokens=SPECIALS + bytes_, limit_alphabet=1000,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def load(kind: str) -> PreTrainedTokenizerFast:
    """The cached large tokenizer ``kind`` (a key of ``SIZES``), trained on first use."""
    path = CACHE / f"{kind.removesuffix(f'{SIZES[kind] // 1000}k')}{SIZES[kind] // 1000}k" / "tokenizer.json"
    if not path.exists():
        train = _files()[0]
        half = train[0::2] if kind in ("bpe", "bpe150k") else train[1::2]
        tok = _train(kind, read_texts(half, TRAIN_BYTES[kind]))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
        tok.save(str(tmp))
        os.replace(tmp, path)
    return PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
