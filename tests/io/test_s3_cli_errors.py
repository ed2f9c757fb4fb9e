"""`logitfuse capture`, `align`, `validate` and `inspect` with a bad object store: one clear error line each, naming
the URL, never the secret, before any work starts (no Ray, no model load)."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from pipeline.io import fs as lfs


@pytest.fixture()
def bucket(s3):
    return s3.bucket("lf-cli")


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("case", ["credentials", "bucket", "endpoint"])
def test_capture_names_the_url_without_the_secret(case, bucket, s3, tiny_jsonl, monkeypatch, capsys):
    out = f"{bucket}/out"
    if case == "credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-123")
    elif case == "bucket":
        out = "s3://lf-no-such-bucket/out"
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    lfs.clear_cache()
    try:
        rc = main(["capture", f"input={tiny_jsonl}", f"output={out}", "model=tiny:tiny-gpt2-bpe", "progress=false"])
    finally:
        monkeypatch.undo()
        lfs.clear_cache()
    line = _one_error(capsys)
    assert rc != 0 and line.startswith(f"error: {out}: ")
    want = {"credentials": "access denied: check the credentials", "bucket": "the bucket 'lf-no-such-bucket' does "
            "not exist", "endpoint": "the storage endpoint cannot be reached"}[case]
    assert want in line
    assert "wrong-secret-123" not in line and s3.secret_key not in line


def test_an_input_url_is_checked_too(bucket, capsys):
    rc = main(["capture", "input=s3://lf-no-such-bucket/data.jsonl", f"output={bucket}/out",
               "model=tiny:tiny-gpt2-bpe"])
    assert rc != 0 and "s3://lf-no-such-bucket/data.jsonl: the bucket" in _one_error(capsys)


def test_validate_and_inspect_name_a_missing_bucket_and_a_missing_manifest(bucket, capsys):
    assert main(["validate", "s3://lf-no-such-bucket/set"]) != 0
    assert "error: s3://lf-no-such-bucket/set: the bucket" in _one_error(capsys)
    assert main(["validate", f"{bucket}/nothing-here"]) == 1
    assert f"INVALID {bucket}/nothing-here: no manifest.json" in capsys.readouterr().out
    assert main(["inspect", f"{bucket}/nothing-here"]) != 0
    assert f"{bucket}/nothing-here: no manifest.json" in _one_error(capsys)


def test_capture_inputs_read_from_s3_equal_local(bucket, tiny_jsonl, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.capture.inputs import load_samples
    from pipeline.errors import InputError

    local = load_samples(tiny_jsonl)
    lfs.location(f"{bucket}/in/data.jsonl").put(open(tiny_jsonl, "rb").read())
    assert load_samples(f"{bucket}/in/data.jsonl") == local
    table = pa.Table.from_pylist([{"id": s.id, "prompt": s.messages[0][1], "response": s.response} for s in local])
    for i, half in enumerate((table.slice(0, 30), table.slice(30))):
        pq.write_table(half, tmp_path / f"{i}.parquet")
        lfs.location(f"{bucket}/in/pq/part-{i}.parquet").put((tmp_path / f"{i}.parquet").read_bytes())
    assert load_samples(f"{bucket}/in/pq") == local
    with pytest.raises(InputError, match=rf"{bucket}/in/none: no such input"):
        load_samples(f"{bucket}/in/none")
