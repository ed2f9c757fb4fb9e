"""The shard-set commit protocol on a local folder and on the real S3 test server (no Ray, milliseconds each):
part whole, then its completion record, then the manifest; a rerun keeps what its records vouch for and rewrites the
rest; another configuration is refused; readers see only what the manifest names."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from pipeline.errors import ShardError
from pipeline.io import fs as lfs
from pipeline.io import verified
from pipeline.io.atomic import sha256_file
from pipeline.io.reader import ShardSet, verify
from pipeline.io.writer import ShardSetWriter, shard_file
from schemas import logit_shard
from schemas.manifest import Manifest

N, SIZE = 5, 2  # 3 shards: 2 + 2 + 1 rows


@pytest.fixture(params=["local", "s3"])
def folder(request, tmp_path):
    """An empty output folder: a local path or a fresh prefix on the S3 test server."""
    if request.param == "local":
        return str(tmp_path / "out")
    bucket = request.getfixturevalue("s3").bucket("lf-commit")
    return f"{bucket}/{request.node.name.replace('[', '-').rstrip(']')}/out"


def _table(shard: int) -> pa.Table:
    """A valid logit shard (k=0) whose rows are samples ``shard*SIZE …``."""
    idx = list(range(shard * SIZE, min((shard + 1) * SIZE, N)))
    n = len(idx)
    cols = {"sample_index": idx, "sample_id": [f"s{i}" for i in idx], "status": ["ok"] * n,
            "response_sha256": ["0" * 64] * n, "input_ids": [[i, 10 * i] for i in idx], "response_start": [1] * n,
            "char_start": [[0]] * n, "char_end": [[1]] * n, "n_positions": [1] * n, "topk_ids": [b""] * n,
            "topk_logprobs": [b""] * n}
    return pa.table(cols, schema=logit_shard.schema({"codec": "none", "k": "0"}))


def _manifest() -> Manifest:
    return Manifest(kind="logits", shard_schema=logit_shard.NAME, shard_schema_version=logit_shard.VERSION, name="m",
                    config_fingerprint="fp", shard_size=SIZE, num_samples=N, plan_fingerprint="plan", shards=[])


def _writer(folder, fp="fp", overwrite=False) -> ShardSetWriter:
    return ShardSetWriter(folder, fp, {"k": fp}, overwrite=overwrite)


def _write_all(w: ShardSetWriter, shards=range(3)) -> None:
    for i in shards:
        w.write_shard(i, _table(i), tokens=i)


def test_commit_order_part_then_record_then_manifest(folder, monkeypatch):
    import pipeline.io.writer as writer_mod

    order = []
    real_parquet, real_text = writer_mod.write_parquet, writer_mod.write_text
    monkeypatch.setattr(writer_mod, "write_parquet", lambda t, *a, **k: (order.append(lfs.location(t).name),
                                                                          real_parquet(t, *a, **k))[1])
    monkeypatch.setattr(writer_mod, "write_text", lambda t, *a: (order.append(lfs.location(t).name),
                                                                 real_text(t, *a))[1])
    w = _writer(folder)
    _write_all(w)
    assert not (w.folder / "manifest.json").exists()  # parts and records alone publish nothing
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardSet(folder)
    w.finalize(_manifest())
    assert order == ["_run.json", "part-00000.parquet", "part-00000.json", "part-00001.parquet", "part-00001.json",
                     "part-00002.parquet", "part-00002.json", "manifest.json"]
    s = ShardSet(folder)
    assert verify(folder) == [] and s.read(2).column("input_ids").to_pylist() == [[4, 40]]
    assert [b.num_rows for b in s.iter_batches(0, batch_rows=1)] == [1, 1]
    with s.open(1) as f:
        assert f.seekable() and f.size() == s.manifest.shards[1].bytes
    assert s.path(0).url == (lfs.location(folder) / "part-00000.parquet").url
    entry = s.manifest.shards[0]
    assert (entry.bytes, entry.sha256) == (s.path(0).size(), sha256_file(s.path(0)))


def test_rerun_keeps_recorded_parts_and_rewrites_the_rest(folder):
    w = _writer(folder)
    _write_all(w)
    part0, part1, part2 = (w.folder / shard_file(i) for i in range(3))
    before = {i: (w.folder / shard_file(i)).info().mtime_ns for i in range(3)}
    # a killed writer: part 1 written but not its record; part 2's record names other bytes
    (w.folder / "_progress" / "part-00001.json").delete()
    rec2 = w.folder / "_progress" / "part-00002.json"
    rec2.put(json.dumps(json.loads(rec2.read_text()) | {"sha256": "0" * 64}).encode())
    w2 = _writer(folder)
    assert [i for i in range(3) if w2.complete(i) is None] == [1, 2]
    assert w2.complete(0).sha256 == sha256_file(part0)
    _write_all(w2, [1, 2])
    m = w2.finalize(_manifest())
    assert part0.info().mtime_ns == before[0]  # kept, not rewritten
    assert [e.sha256 for e in m.shards] == [sha256_file(p) for p in (part0, part1, part2)]
    assert verify(folder) == []


def test_a_part_whose_size_differs_from_its_record_is_rewritten(folder):
    w = _writer(folder)
    _write_all(w)
    part = w.folder / shard_file(1)
    part.put(part.read_bytes()[:-3])  # truncated after its record was written
    assert _writer(folder).complete(1, verify=False) is None


def test_another_configuration_is_refused_unless_overwrite(folder):
    w = _writer(folder)
    _write_all(w, [0])
    with pytest.raises(ShardError, match=r"written by another configuration \(differs in: k\)"):
        _writer(folder, fp="other")
    w2 = _writer(folder, fp="other", overwrite=True)
    assert w2.complete(0) is None and json.loads((w2.folder / "_run.json").read_text())["fingerprint"] == "other"


def test_readers_see_only_the_manifest_and_name_a_corrupted_or_missing_part(folder):
    w = _writer(folder)
    _write_all(w)
    w.finalize(_manifest())
    (w.folder / "part-00099.parquet").put(b"leftover of a killed writer")  # never listed, never read
    verified.forget()
    assert verify(folder) == []
    part = w.folder / shard_file(1)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1
    part.put(bytes(data))
    (w.folder / shard_file(2)).delete()
    verified.forget()  # S3 mtimes have 1 s resolution: a same-size rewrite in the second it was checked hides
    problems = verify(folder)
    assert len(problems) == 2
    assert "part-00001.parquet: sha256 mismatch" in problems[0] and lfs.location(folder).url in problems[0]
    assert "part-00002.parquet: missing" in problems[1]
    with pytest.raises(ShardError, match="sha256 mismatch"):
        ShardSet(folder).read(1)
