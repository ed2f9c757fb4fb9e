"""Loading tokenizers: the spelling probe guards every tokenizer; SentencePiece-only folders load like SentencePiece."""

import io
import json
import sys

import pytest
from tokenizers import normalizers

from pipeline.errors import ModelLoadError
from pipeline.modeling.load import load_tokenizer
from pipeline.modeling.probe import PROBE_TEXTS, check_spelling
from pipeline.tiny.corpus import multilingual_lines, text_lines

spm = pytest.importorskip("sentencepiece")
MORE_TEXTS = ("a  b", " x", "x\n y", "\n\n  z  ", "日本 語  한국어", "   ")


def _train_sp(folder, **options):
    """A tiny Llama-style SentencePiece BPE model (byte fallback, dummy prefix), trained in well under a second."""
    lines = text_lines(1500, seed=2) + multilingual_lines(300, seed=2) + ["def f(x):\n    return  x  +  1\n"] * 20
    buf = io.BytesIO()
    settings = dict(vocab_size=700, model_type="bpe", byte_fallback=True, add_dummy_prefix=True,
                    remove_extra_whitespaces=False, normalization_rule_name="identity",
                    allow_whitespace_only_pieces=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                    minloglevel=2) | options
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, **settings)
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    return folder


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory):
    return _train_sp(tmp_path_factory.mktemp("sp") / "model")


@pytest.mark.parametrize("config", [None, {"tokenizer_class": "LlamaTokenizer"}])
def test_sentencepiece_only_folder_tokenises_like_sentencepiece(sp_folder, tmp_path, config):
    from transformers import AutoTokenizer

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes((sp_folder / "tokenizer.model").read_bytes())
    if config:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    texts = PROBE_TEXTS + MORE_TEXTS
    plain = AutoTokenizer.from_pretrained(folder)  # what transformers alone gives: not SentencePiece's ids
    assert any(plain(t, add_special_tokens=False)["input_ids"] != sp.encode(t) for t in texts)
    tok = load_tokenizer(str(folder))
    for t in texts:
        assert tok(t, add_special_tokens=False)["input_ids"] == sp.encode(t), t
    enc = tok(" x  y", return_offsets_mapping=True, add_special_tokens=False)
    assert enc["offset_mapping"][-1] == (4, 5) and tok.decode(enc["input_ids"]) == " x  y"


def test_sentencepiece_only_folder_without_the_package_says_what_to_install(sp_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # as if not installed: import raises ImportError
    with pytest.raises(ModelLoadError, match=r"only a SentencePiece tokenizer.model .*pip install sentencepiece"):
        load_tokenizer(str(sp_folder))


def test_sentencepiece_normalisation_it_cannot_reproduce_is_refused(tmp_path):
    folder = _train_sp(tmp_path / "collapsing", remove_extra_whitespaces=True)
    with pytest.raises(ModelLoadError, match=r"collapsing: its tokenizer.model normalises text .*save a tokenizer"):
        load_tokenizer(str(folder))


def test_every_project_tokenizer_spells_the_probe(bpe, sp, multilingual):
    for tok in (bpe, sp, multilingual):
        check_spelling(tok, "project tokenizer")


def test_a_tokenizer_that_rewrites_text_is_refused(bpe, tmp_path):
    bpe.save_pretrained(tmp_path / "lower")
    spec = json.loads((tmp_path / "lower" / "tokenizer.json").read_text())
    spec["normalizer"] = json.loads(normalizers.Lowercase().__getstate__())  # an uncased tokenizer
    (tmp_path / "lower" / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ModelLoadError, match=r"lower: the tokenizer does not spell its input back: .* at byte 0"):
        load_tokenizer(str(tmp_path / "lower"))
    load_tokenizer(str(_save(bpe, tmp_path / "same")))  # the unchanged tokenizer loads


def _save(tok, folder):
    tok.save_pretrained(folder)
    return folder


def _unk_tokenizer(pre_tokenizer):
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))  # no byte fallback
    core.pre_tokenizer = pre_tokenizer
    core.train_from_iterator(text_lines(500, seed=4), trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"],
                                                                          show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")


def test_unknown_characters_may_become_unk():
    """A tokenizer without byte fallback spells what it knows; <unk> stands for the characters it does not."""
    from tokenizers import pre_tokenizers

    with pytest.raises(ModelLoadError, match="does not spell"):  # whitespace split: it drops the spaces
        check_spelling(_unk_tokenizer(pre_tokenizers.Whitespace()), "whitespace-split")
    tok = _unk_tokenizer(pre_tokenizers.Split(" ", behavior="isolated"))
    assert tok.unk_token_id in tok(PROBE_TEXTS[1], add_special_tokens=False)["input_ids"]
    check_spelling(tok, "with unk")
