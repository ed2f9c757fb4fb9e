import json

import pytest

from pipeline.capture.inputs import load_samples, plan_fingerprint
from pipeline.errors import InputError
from tests.conftest import write_jsonl


def test_sorted_by_id_and_messages(tmp_path):
    recs = [{"id": "b", "prompt": "p", "response": "r"},
            {"id": "a", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                     {"role": "assistant", "content": "x"}]}]
    samples = load_samples(write_jsonl(tmp_path / "d.jsonl", recs))
    assert [s.id for s in samples] == ["a", "b"]
    assert samples[0].response == "x" and samples[1].messages[0] == ("user", "p")


@pytest.mark.parametrize("rec, match", [
    ({"prompt": "p", "response": "r"}, "missing field 'id'"),
    ({"id": "x", "prompt": "p"}, "missing field 'response'"),
    ({"id": "x", "prompt": "p", "response": "  "}, "empty response"),
    ({"id": "x", "prompt": 3, "response": "r"}, "'prompt' must be a string"),
    ({"id": 1.5, "prompt": "p", "response": "r"}, "'id' must be a string or integer"),
    ({"id": "x", "prompt": "p", "response": "\ud800"}, "not valid UTF-8"),
    ({"id": "x", "messages": [{"role": "user", "content": "u"}, {"role": "user", "content": "v"}]},
     r"messages\[1\] has role 'user' where 'assistant'"),
    ({"id": "x", "messages": [{"role": r, "content": "c"} for r in ("user", "user", "assistant")]},
     r"messages\[1\] has role 'user' where 'assistant'"),
    ({"id": "x", "messages": [{"role": "assistant", "content": "c"}] * 3}, r"messages\[0\] has role 'assistant'"),
    ({"id": "x", "messages": [{"role": r, "content": "c"} for r in ("system", "assistant")]},
     r"messages\[1\] has role 'assistant' where 'user'"),
    ({"id": "x", "messages": [{"role": r, "content": "c"} for r in ("user", "assistant", "user")]},
     "last message must be the assistant"),
])
def test_bad_records_name_the_record(tmp_path, rec, match):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "ok", "prompt": "p", "response": "r"}, rec])
    with pytest.raises(InputError, match=match) as e:
        load_samples(path)
    assert "d.jsonl:2" in str(e.value)


def test_invalid_utf8_bytes_name_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"id": "a", "prompt": "p", "response": "r"}\n{"id": "b", "prompt": "\xff", "response": "r"}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: invalid UTF-8"):
        load_samples(str(p))


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "prompt": "p", "response": "r"}] * 2)
    with pytest.raises(InputError, match="duplicate id 'a'.*first seen at .*d.jsonl:1"):
        load_samples(path)


def test_parquet_and_hf_dataset_inputs_agree(tmp_path, tiny_records):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = load_samples(write_jsonl(tmp_path / "d.jsonl", tiny_records))
    pq.write_table(pa.Table.from_pylist(tiny_records), tmp_path / "d.parquet")
    datasets.Dataset.from_list(tiny_records).save_to_disk(str(tmp_path / "hf"))
    assert load_samples(str(tmp_path / "d.parquet")) == jsonl
    assert load_samples(str(tmp_path / "hf")) == jsonl
    assert plan_fingerprint(jsonl) == plan_fingerprint(load_samples(str(tmp_path / "hf")))


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="no such input"):
        load_samples(str(tmp_path / "nope.jsonl"))


def test_bad_input_fails_before_the_output_is_locked(tmp_path):
    """A capture whose input is missing or bad never holds the output folder, so a good job started next to it (the
    same output) cannot be turned away by its lock."""
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "p"}\n')  # no response
    for spec in (tmp_path / "missing.jsonl", bad):
        cfg = CaptureConfig.load(None, [f"input={spec}", f"output={tmp_path / 'out'}", "model=tiny:tiny-gpt2-bpe"])
        with pytest.raises(InputError, match=spec.name):
            run_capture(cfg)
        assert not (tmp_path / "out").exists()  # no lock, no folder
