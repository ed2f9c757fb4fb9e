"""Folders holding only a SentencePiece ``tokenizer.model`` (no ``tokenizer.json``), common for older checkpoints.

transformers converts such a model to a fast tokenizer, but the pipeline it builds is not SentencePiece's: without a
``tokenizer_config.json`` naming the class it drops the leading ``▁``, and with one (a ``Metaspace`` pre-tokenizer)
it splits a text that starts with spaces differently (``"  x"``: SentencePiece ``▁▁▁x``, transformers ``▁▁x``).
:func:`make_faithful` gives the converted tokenizer SentencePiece's own text pipeline (prepend ``▁`` when the model
says ``add_dummy_prefix``, every space → ``▁``, no pre-tokenizer: the layout of the original Llama-2
``tokenizer.json``) and then checks it against the ``sentencepiece`` library on the probe texts, token for token. A
model whose normalisation it cannot reproduce (``remove_extra_whitespaces``, NFKC rules) is refused with what to do.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ModelLoadError

SP_MODEL, TOKENIZER_JSON = "tokenizer.model", "tokenizer.json"
SPACE_MARK = "\u2581"


def first_difference(a, b) -> int:
    """Index of the first element where sequences ``a`` and ``b`` differ (the shorter length if one extends the
    other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def sentencepiece_only(path: str) -> bool:
    """Whether ``path`` is a local folder with a SentencePiece ``tokenizer.model`` and no ``tokenizer.json``."""
    p = Path(path)
    return p.is_dir() and (p / SP_MODEL).is_file() and not (p / TOKENIZER_JSON).is_file()


def require_sentencepiece(path: str) -> None:
    """ModelLoadError saying what to install when the ``sentencepiece`` package is missing."""
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            f"{path} holds only a SentencePiece {SP_MODEL} (no {TOKENIZER_JSON}): reading it needs the "
            f"'sentencepiece' package (pip install sentencepiece), or save the tokenizer's {TOKENIZER_JSON} into "
            f"the folder on a machine that has it") from None


def _spec(model_file: Path):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    return proto.normalizer_spec


def make_faithful(tok, model_file: Path, texts: tuple[str, ...]) -> None:
    """Give ``tok`` (converted from ``model_file``) SentencePiece's text pipeline, then check it on ``texts``."""
    import sentencepiece as spm
    from tokenizers import decoders, normalizers

    norm = _spec(model_file)
    where = model_file.parent
    if norm.remove_extra_whitespaces or norm.name not in ("identity", ""):
        raise ModelLoadError(
            f"{where}: its {SP_MODEL} normalises text (rule {norm.name!r}, remove_extra_whitespaces="
            f"{norm.remove_extra_whitespaces}), which logitfuse does not reproduce byte for byte; save a "
            f"{TOKENIZER_JSON} for it (transformers' save_pretrained) and check it tokenises like SentencePiece")
    steps = [normalizers.Replace(" ", SPACE_MARK)]
    if norm.add_dummy_prefix:
        steps.insert(0, normalizers.Prepend(SPACE_MARK))
    bt = tok.backend_tokenizer
    bt.normalizer = normalizers.Sequence(steps)
    bt.pre_tokenizer = None
    bt.decoder = decoders.Sequence([decoders.Replace(SPACE_MARK, " "), decoders.ByteFallback(), decoders.Fuse()]
                                   + ([decoders.Strip(" ", 1, 0)] if norm.add_dummy_prefix else []))
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    for text in texts:
        want, got = sp.encode(text), tok(text, add_special_tokens=False)["input_ids"]
        if want != got:
            i = first_difference(want, got)
            raise ModelLoadError(
                f"{where}: the tokenizer converted from {SP_MODEL} does not tokenise like SentencePiece (probe "
                f"{text[:24]!r}…, first difference at token {i}: SentencePiece {sp.id_to_piece(want[i:i + 4])}, "
                f"converted {tok.convert_ids_to_tokens(got[i:i + 4])}); save a {TOKENIZER_JSON} that matches "
                f"SentencePiece into the folder, then load again")
