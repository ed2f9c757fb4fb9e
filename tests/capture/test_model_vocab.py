"""Tokenizer vs model vocabulary: a larger tokenizer is refused at load, a larger model (padding rows) is said."""

import pytest

from pipeline.errors import ModelLoadError
from pipeline.modeling.load import check_vocab, load_tokenizer


def test_tokenizer_larger_than_the_embedding_is_refused_and_padding_rows_are_said(capsys):
    tok = load_tokenizer("tiny:tiny-llama-pivot")
    n = max(tok.get_vocab().values()) + 1
    with pytest.raises(ModelLoadError, match=rf"has {n} ids but the model's embedding has {n - 1} rows"):
        check_vocab(tok, n - 1, "tiny:tiny-llama-pivot")
    check_vocab(tok, n, "tiny:tiny-llama-pivot")
    assert capsys.readouterr().err == ""
    check_vocab(tok, n + 64, "tiny:tiny-llama-pivot")
    assert f"the other 64 are padding rows" in capsys.readouterr().err
