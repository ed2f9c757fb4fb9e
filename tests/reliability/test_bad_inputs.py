"""Bad inputs through the command line: exit 2 and one error line naming the file, record, sample or setting at
fault — never a traceback. Records are the second line of a JSONL file whose first record is good."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.reliability.test_write_errors import _error_line

pytestmark = [pytest.mark.ray, pytest.mark.fault("bad_input")]
GOOD = {"id": "a", "prompt": "2+2=", "response": "4"}


def _msgs(*roles):
    return {"id": "b", "messages": [{"role": r, "content": f"{r} text"} for r in roles]}


# name: (second JSONL line: a record, or raw bytes), fragments the error line must hold
RECORDS = {
    "invalid-json": (b'{"id": "b", "prompt": ', ["d.jsonl:2", "invalid JSON"]),
    "invalid-utf8": (b'{"id": "b", "prompt": "\xff", "response": "r"}', ["d.jsonl:2", "invalid UTF-8"]),
    "not-an-object": ([1, 2], ["d.jsonl:2", "must be an object"]),
    "missing-id": ({"prompt": "p", "response": "r"}, ["d.jsonl:2", "missing field 'id'"]),
    "null-id": ({"id": None, "prompt": "p", "response": "r"}, ["d.jsonl:2", "missing field 'id'"]),
    "float-id": ({"id": 1.5, "prompt": "p", "response": "r"}, ["d.jsonl:2", "'id' must be a string or integer"]),
    "bool-id": ({"id": True, "prompt": "p", "response": "r"}, ["d.jsonl:2", "'id' must be a string or integer"]),
    "list-id": ({"id": ["b"], "prompt": "p", "response": "r"}, ["d.jsonl:2", "'id' must be a string or integer"]),
    "missing-response": ({"id": "b", "prompt": "p"}, ["d.jsonl:2", "id 'b'", "missing field 'response'"]),
    "missing-prompt": ({"id": "b", "response": "r"}, ["d.jsonl:2", "id 'b'", "missing field 'prompt'"]),
    "int-prompt": ({"id": "b", "prompt": 3, "response": "r"}, ["id 'b'", "'prompt' must be a string"]),
    "blank-response": ({"id": "b", "prompt": "p", "response": " \n"}, ["id 'b'", "empty response"]),
    "lone-surrogate": ({"id": "b", "prompt": "p", "response": "\ud800"}, ["id 'b'", "not valid UTF-8"]),
    "messages-string": ({"id": "b", "messages": "hi"}, ["id 'b'", "'messages' must be a list"]),
    "messages-one-turn": (_msgs("assistant") | {"messages": [{"role": "assistant", "content": "x"}]},
                          ["id 'b'", "at least two turns"]),
    "message-no-role": ({"id": "b", "messages": [{"role": "user", "content": "u"}, {"content": "x"}]},
                        ["id 'b'", "messages[1] must have 'role'"]),
    "message-no-content": ({"id": "b", "messages": [{"role": "user", "content": "u"}, {"role": "assistant"}]},
                           ["id 'b'", "messages[1] must have 'role' and 'content'"]),
    "message-int-content": ({"id": "b", "messages": [{"role": "user", "content": "u"},
                                                     {"role": "assistant", "content": 7}]},
                            ["id 'b'", "messages[1].content"]),
    "message-not-object": ({"id": "b", "messages": ["user: hi", "assistant: yo"]}, ["id 'b'", "messages[0]"]),
    "user-user-assistant": (_msgs("user", "user", "assistant"), ["id 'b'", "messages[1] has role 'user'"]),
    "all-assistant": (_msgs("assistant", "assistant", "assistant"), ["id 'b'", "messages[0] has role 'assistant'"]),
    "system-then-assistant": (_msgs("system", "assistant"), ["id 'b'", "messages[1] has role 'assistant'"]),
    "ends-with-user": (_msgs("user", "assistant", "user"), ["id 'b'", "last message must be the assistant"]),
    "tool-role": (_msgs("user", "tool"), ["id 'b'", "messages[1] has role 'tool'"]),
    "two-system-turns": (_msgs("system", "system", "user", "assistant"), ["id 'b'", "messages[1] has role 'system'"]),
    "duplicate-id": (GOOD, ["d.jsonl:2", "duplicate id 'a'", "first seen at", "d.jsonl:1"]),
}


def _capture(tmp_path, data: str, *extra) -> list[str]:
    return ["capture", f"input={data}", f"output={tmp_path / 'out'}", "model=tiny:tiny-gpt2-bpe", "progress=false",
            *extra]


@pytest.mark.parametrize("case", RECORDS)
def test_bad_record(case, tmp_path, capsys):
    line, fragments = RECORDS[case]
    raw = line if isinstance(line, bytes) else json.dumps(line).encode()
    (tmp_path / "d.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n" + raw + b"\n")
    assert main(_capture(tmp_path, tmp_path / "d.jsonl")) == 2
    err = _error_line(capsys.readouterr().err)
    assert all(f in err for f in fragments), err


def _tokenizer_larger_than_model(tmp_path: Path) -> str:
    """The 1024-row tiny GPT-2 with the 1199-id pivot tokenizer."""
    from pipeline.modeling.load import resolve_model_path

    model = tmp_path / "mismatched"
    shutil.copytree(resolve_model_path("tiny:tiny-gpt2-bpe"), model)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(resolve_model_path("tiny:tiny-llama-pivot")) / f, model / f)
    return str(model)


def _settings(tmp_path, tiny_jsonl, fusion_shards) -> dict:
    """name: (argv, fragments)"""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"PAR1 not really")
    pivot, src = fusion_shards / "tiny-llama-pivot", fusion_shards / "tiny-gpt2-bpe"
    align = [f"pivot={pivot}", f"output={tmp_path / 'al'}", "progress=false"]
    (tmp_path / "align.yaml").write_text(json.dumps({"sources": [{"shards": str(src), "model": "tiny:tiny-gpt2-bpe"}]}))
    (tmp_path / "align-k0.yaml").write_text(json.dumps({"sources": [{"shards": str(pivot),
                                                                     "model": "tiny:tiny-llama-pivot"}]}))
    (tmp_path / "train.yaml").write_text(json.dumps({"sources": [{"shards": str(src)}]}))
    train = ["train", "pivot_model=tiny:tiny-llama-pivot", f"pivot_shards={pivot}", f"output={tmp_path / 'runs'}",
             "progress=false", "max_steps=1"]
    return {
        "empty-input": (_capture(tmp_path, empty), [str(empty), "no records"]),
        "missing-input": (_capture(tmp_path, tmp_path / "nope.jsonl"), ["nope.jsonl", "no such input"]),
        "garbage-parquet": (_capture(tmp_path, garbage), ["g.parquet", "not a readable Parquet file"]),
        "unknown-key": (_capture(tmp_path, tiny_jsonl, "topk=3"), ["topk"]),
        "k-above-vocab": (_capture(tmp_path, tiny_jsonl, "k=5000"), ["k=5000", "vocabulary", "tiny-gpt2-bpe"]),
        "bad-overlength": (_capture(tmp_path, tiny_jsonl, "overlength=drop"), ["overlength", "drop"]),
        "bad-device": (_capture(tmp_path, tiny_jsonl, "device=tpu"), ["device", "tpu"]),
        "bad-codec": (_capture(tmp_path, tiny_jsonl, "codec=gzip"), ["codec", "gzip"]),
        "zero-shard-size": (_capture(tmp_path, tiny_jsonl, "shard_size=0"), ["shard_size"]),
        "tokenizer-larger-than-model": lambda: (
            _capture(tmp_path, tiny_jsonl, f"model={_tokenizer_larger_than_model(tmp_path)}"),
            ["mismatched", "1199 ids", "embedding has 1024 rows"]),
        "missing-model": (_capture(tmp_path, tiny_jsonl, f"model={tmp_path / 'no-model'}"),
                          ["no-model", "cannot load"]),
        "align-wrong-pivot-tokenizer": (["align", tmp_path / "align.yaml", *align, "pivot_model=tiny:tiny-gpt2-bpe"],
                                        ["tiny-llama-pivot", "captured with tokenizer"]),
        "align-source-without-topk": (["align", tmp_path / "align-k0.yaml", *align, "pivot_model=tiny:tiny-llama-pivot"],
                                      ["tiny-llama-pivot", "holds no top-k"]),
        "train-unaligned-source": ([train[0], str(tmp_path / "train.yaml"), *train[1:]],
                                   ["tiny-gpt2-bpe", "not an aligned shard set"]),
        "train-unknown-loss-key": ([*train, "loss.lamda_gld=1"], ["lamda_gld"]),
        "inspect-no-manifest": (["inspect", str(tmp_path)], [str(tmp_path), "no manifest.json"]),
    }


SETTINGS = ["empty-input", "missing-input", "garbage-parquet", "unknown-key", "k-above-vocab", "bad-overlength",
            "bad-device", "bad-codec", "zero-shard-size", "tokenizer-larger-than-model", "missing-model",
            "align-wrong-pivot-tokenizer", "align-source-without-topk", "train-unaligned-source",
            "train-unknown-loss-key", "inspect-no-manifest"]


@pytest.mark.parametrize("case", SETTINGS)
def test_bad_setting(case, tmp_path, tiny_jsonl, fusion_shards, capsys):
    entry = _settings(tmp_path, tiny_jsonl, fusion_shards)[case]
    argv, fragments = entry() if callable(entry) else entry
    assert main([str(a) for a in argv]) == 2
    err = _error_line(capsys.readouterr().err)
    assert all(f in err for f in fragments), err
