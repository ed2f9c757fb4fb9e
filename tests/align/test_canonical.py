import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer

from pipeline.errors import AlignmentError
from pipeline.modeling.canonical import as_text, canonicalize, token_to_bytes, tokenizer_fingerprint


@pytest.mark.parametrize("family", ["bpe", "sp"])
def test_token_bytes_reproduce_the_text(family, text, request, encode):
    tok = request.getfixturevalue(family)
    canon = canonicalize(tok)
    for t in (text, text.strip(), "x  y\n\n\tz 🙂", "日本語"):
        ids, _, _ = encode(tok, t)
        assert not canon.special[ids].any()
        lead = " " if canon.prepends_space and not t.startswith(" ") else ""  # ▁ the tokenizer adds itself
        assert canon.decode(ids) == (lead + t).encode("utf-8")


def test_schemes_and_flags(bpe, sp):
    b, s = canonicalize(bpe), canonicalize(sp)
    assert (b.scheme, b.prepends_space, s.scheme, s.prepends_space) == ("byte_level", False, "metaspace", True)
    vb, vs = bpe.get_vocab(), sp.get_vocab()
    assert b.token_bytes[vb["Ġ"]] == b" " and b.token_bytes[vb["Ċ"]] == b"\n"
    assert s.token_bytes[vs["<0x0A>"]] == b"\n" and s.byte_fallback[vs["<0x0A>"]] and not s.special[vs["<0x0A>"]]
    assert s.token_bytes[vs["▁"]] == b" "
    for canon, vocab in ((b, vb), (s, vs)):
        eos = vocab["<|endoftext|>"]
        assert canon.special[eos] and canon.token_bytes[eos] == b"" and canon.roles["eos"] == eos
        assert canon.special.sum() == 4  # the four special tokens, nothing else (byte tokens are text)
    assert len(b) == len(bpe) and len(s) == len(sp)


def test_wordpiece_and_legacy_sentencepiece_layouts():
    wp = Tokenizer(models.WordPiece({"[UNK]": 0, "hel": 1, "##lo": 2}, unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    canon = canonicalize(wp)
    assert canon.scheme == "wordpiece" and canon.token_bytes[2] == b"lo" and canon.token_bytes[1] == b"hel"
    # Llama-2 layout: no pre-tokenizer, the normalizer prepends ▁ and replaces spaces by ▁
    legacy = Tokenizer(models.BPE({"▁": 0, "a": 1, "▁a": 2}, [("▁", "a")]))
    legacy.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    canon = canonicalize(legacy)
    assert (canon.scheme, canon.prepends_space, canon.token_bytes[2]) == ("metaspace", True, b" a")


def test_token_to_bytes_and_as_text():
    assert token_to_bytes("ĠcafÃ©", "byte_level") == " café".encode()
    assert token_to_bytes("ðŁ", "byte_level") == b"\xf0\x9f"
    assert token_to_bytes("▁▁x", "metaspace") == b"  x"
    assert len(as_text(b"\xf0\x9f")) == 2 and as_text(b"\xc3\xa9") == "é"  # a stray byte counts as one char


def test_fingerprint_stable_and_distinct(bpe, sp, tmp_path):
    from pipeline.tiny.tokenizers import build_tokenizer

    fb = tokenizer_fingerprint(bpe)
    assert len(fb) == 64 and fb == tokenizer_fingerprint(build_tokenizer("bpe", 1024, seed=0))
    assert fb != tokenizer_fingerprint(sp) and fb != tokenizer_fingerprint(build_tokenizer("bpe", 1024, seed=5))
    bpe.save_pretrained(tmp_path)
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tmp_path)) == fb  # survives save/load
    other = Tokenizer.from_str(bpe.backend_tokenizer.to_str())
    other.enable_padding(pad_id=0)
    assert tokenizer_fingerprint(other) == tokenizer_fingerprint(Tokenizer.from_str(bpe.backend_tokenizer.to_str()))
    spec = json.loads(bpe.backend_tokenizer.to_str())
    spec["model"]["vocab"]["zzz_new"] = len(bpe) + 7
    assert tokenizer_fingerprint(Tokenizer.from_str(json.dumps(spec))) != \
        tokenizer_fingerprint(Tokenizer.from_str(bpe.backend_tokenizer.to_str()))


def test_slow_tokenizer_is_refused():
    with pytest.raises(AlignmentError, match="use_fast"):
        canonicalize(object())


def test_unused_ids_are_special():
    holes = Tokenizer(models.WordLevel({"a": 0, "b": 3}, unk_token="a"))
    canon = canonicalize(holes)
    assert len(canon) == 4 and np.array_equal(canon.special, [False, True, True, False])
