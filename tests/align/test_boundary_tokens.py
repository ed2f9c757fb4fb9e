"""Tokens that straddle the prompt/response boundary: capture records their true start, align never pairs them.

A Llama-3 style byte-level pivot (its pre-tokenizer keeps ``.\\n\\n`` whole) predicts ``.\\n\\n`` for the first
response position when the prompt ends with ``.\\n`` and the response starts with ``\\n``; the SentencePiece-style
source predicts ``\\n``. Both tokens are the first response target, but they do not start at the same byte.
"""

import numpy as np
import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.align.offsets import align_offsets
from pipeline.align.shards import known_starts
from pipeline.capture.inputs import Sample
from pipeline.capture.render import tokenize_sample
from pipeline.modeling.canonical import canonicalize
from pipeline.tiny.corpus import text_lines
from pipeline.tiny.tokenizers import SPECIALS

# Llama-3's pre-tokenizer pattern: punctuation keeps the newlines that follow it (``.\n\n`` is one pre-token)
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PROMPT, RESPONSE = "Compute 2 + 2.\n", "\nThe answer is 4."


@pytest.fixture(scope="module")
def llama3_style():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([line.replace("\n", ".\n\n") for line in text_lines(2000, seed=5)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _capture(tok):
    return tokenize_sample(tok, Sample("boundary", (("user", PROMPT), ("assistant", RESPONSE))), max_length=64,
                           overlength="error", use_template=False)


def _byte_starts(tok, t) -> np.ndarray:
    """Ground truth from the token bytes alone: where each target token starts, in bytes from the response's start."""
    canon = canonicalize(tok)
    lengths = [len(canon.token_bytes[i]) for i in t.input_ids]
    text = (PROMPT + RESPONSE).encode()
    prepended = sum(lengths) - len(text)  # a SentencePiece-style "▁" before the first word
    starts = np.cumsum([0, *lengths])[:-1] - prepended - len(PROMPT.encode())
    return starts[t.response_start:]


def test_capture_records_the_true_start_inside_the_prompt(llama3_style, sp):
    piv, src = _capture(llama3_style), _capture(sp)
    assert llama3_style.convert_ids_to_tokens(piv.input_ids[piv.response_start]) == ".ĊĊ"
    assert piv.char_start[0] == PROMPT.rindex(".") - len(PROMPT) < 0 and piv.char_end[0] == 1
    assert src.char_start[0] == 0  # the source's "\n" does start at the response's first byte
    for tok, t in ((llama3_style, piv), (sp, src)):
        assert np.array_equal(_byte_starts(tok, t)[1:], t.char_start[1:])  # ASCII text: chars are bytes


def test_align_never_pairs_tokens_that_start_at_different_bytes(llama3_style, sp):
    piv, src = _capture(llama3_style), _capture(sp)
    al = align_offsets(src.char_start, src.char_end, piv.char_start, piv.char_end)
    assert al.src_index[0] == -1  # ".\n\n" (from the prompt) is not paired with "\n"
    hit = np.flatnonzero(al.src_index >= 0)
    # everything after it that starts where a source token starts still aligns
    assert hit.tolist() == [j for j in range(1, len(piv.char_start)) if piv.char_start[j] in src.char_start]
    assert np.array_equal(_byte_starts(llama3_style, piv)[hit], _byte_starts(sp, src)[al.src_index[hit]])


def test_v1_shards_first_start_is_unknown(llama3_style, sp):
    """logit_shard v1 clipped the start to 0: the pair looked like 1:n at byte 0. Its first position is masked."""
    piv, src = _capture(llama3_style), _capture(sp)
    clipped = [max(a, 0) for a in piv.char_start]
    wrong = align_offsets(src.char_start, src.char_end, clipped, piv.char_end)
    assert wrong.src_index[0] == 0  # what v1 data paired
    al = align_offsets(src.char_start, src.char_end, known_starts(clipped, True), piv.char_end)
    assert al.src_index[0] == -1 and np.array_equal(al.src_index[1:], wrong.src_index[1:])
    assert known_starts(src.char_start, False) == src.char_start
