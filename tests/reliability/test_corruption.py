"""Corrupted shard sets: every reader (ShardSet, inspect, validate, publish, align, train) refuses, naming the file.

Faults: a flipped byte in each structural region of a Parquet shard (magic, page header, data page, footer, footer
length), truncations, deletions, manifest edits. Each is applied to a copy of one session capture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.errors import LogitfuseError, ShardError
from pipeline.io.reader import ShardSet
from tests.conftest import flip_byte
from tests.reliability.conftest import byte_offsets, copy_set

pytestmark = [pytest.mark.ray, pytest.mark.fault("corruption")]
SOURCE, SHARD = "tiny-gpt2-bpe", "part-00001.parquet"


def _flip(region: str, column: str = "input_ids"):
    def apply(d: Path):
        p = d / SHARD
        flip_byte(p, at=byte_offsets(p, column)[region], mask=0x10)
    return apply


def _truncate(keep):
    def apply(d: Path):
        p = d / SHARD
        data = p.read_bytes()
        p.write_bytes(data[:keep(len(data))])
    return apply


def _edit_manifest(edit):
    def apply(d: Path):
        m = json.loads((d / "manifest.json").read_text())
        edit(m)
        (d / "manifest.json").write_text(json.dumps(m))
    return apply


def _silent_flip(d: Path) -> None:
    """A flip inside input_ids that Parquet itself does not notice: the file decodes, to other token ids."""
    p = d / SHARD
    good = pq.read_table(p).column("input_ids").to_pylist()
    start = byte_offsets(p)["page-header"]
    for at in range(start, start + 4000):
        flip_byte(p, at=at, mask=0x01)
        try:
            if pq.read_table(p).column("input_ids").to_pylist() != good:
                return
        except Exception:  # noqa: BLE001 — this flip is one Parquet catches; try the next byte
            pass
        flip_byte(p, at=at, mask=0x01)
    raise AssertionError("no silently decodable flip found")


CASES = {
    **{f"flip-{r}": _flip(r) for r in ("magic-head", "page-header", "data-page", "footer", "footer-length",
                                       "magic-tail")},
    "flip-logprob-page": _flip("data-page", "topk_logprobs"),
    "flip-silent-input-ids": _silent_flip,
    "truncate-tail": _truncate(lambda n: n - 100),
    "truncate-half": _truncate(lambda n: n // 2),
    "truncate-empty": _truncate(lambda n: 0),
    "delete-shard": lambda d: (d / SHARD).unlink(),
    "delete-manifest": lambda d: (d / "manifest.json").unlink(),
    "manifest-sha256": _edit_manifest(lambda m: m["shards"][1].update(sha256="0" * 64)),
    "manifest-bytes": _edit_manifest(lambda m: m["shards"][1].update(bytes=m["shards"][1]["bytes"] + 1)),
    "manifest-drop-entry": _edit_manifest(lambda m: m["shards"].pop(1)),
    "manifest-samples": _edit_manifest(lambda m: m.update(num_samples=m["num_samples"] + m["shard_size"])),
    "manifest-not-json": lambda d: (d / "manifest.json").write_text('{"shards": ['),
}
# what a message must name: the shard, or the manifest when the manifest itself is the fault
NAMED = {c: ("manifest.json" if c.startswith("manifest-") and c not in ("manifest-sha256", "manifest-bytes")
             else SOURCE if c == "delete-manifest" else SHARD) for c in CASES}


@pytest.fixture(scope="module")
def corrupted(fusion_shards, tmp_path_factory):
    """One corrupted copy of the source's shard folder per case (the pivot and aligned sets stay good)."""
    root = tmp_path_factory.mktemp("corrupt")
    out = {}
    for case, apply in CASES.items():
        d = copy_set(fusion_shards / SOURCE, root / case / SOURCE)
        apply(d)
        out[case] = d
    return out


def test_the_silent_flip_is_silent_to_parquet(corrupted, fusion_shards):
    """The fault this issue started from: Parquet decodes the flipped shard without complaint, to other ids."""
    bad = pq.read_table(corrupted["flip-silent-input-ids"] / SHARD).column("input_ids")
    assert bad != pq.read_table(fusion_shards / SOURCE / SHARD).column("input_ids")


def _read(d):
    s = ShardSet(d)
    return [s.read(i) for i in range(len(s))]


def _rows(d):
    return list(ShardSet(d).iter_rows())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reader", ["read", "iter_rows"])
def test_shardset_readers_refuse(corrupted, case, reader):
    with pytest.raises(ShardError) as e:
        (_read if reader == "read" else _rows)(corrupted[case])
    assert NAMED[case] in str(e.value)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["inspect", "validate", "publish"])
def test_commands_refuse_naming_the_file(corrupted, case, command, tmp_path, capsys):
    d = str(corrupted[case])
    argv = {"inspect": ["inspect", d, "--json", "--png", str(tmp_path / "x.png")], "validate": ["validate", d],
            "publish": ["publish", d, "--repo-id", "org/name", "--stage-only", str(tmp_path / "staged")]}[command]
    code = main(argv)
    out = capsys.readouterr()
    assert code == (1 if command == "validate" else 2)
    text = out.out if command == "validate" else out.err
    assert NAMED[case] in text and "Traceback" not in text, text
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "staged" / "README.md").exists()


def _align(fusion_shards, source: Path, out: Path):
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align

    return run_align(AlignConfig(pivot=str(fusion_shards / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot",
                                 output=str(out), progress=False,
                                 sources=[SourceSpec(shards=str(source), model=f"tiny:{SOURCE}")]))


ALIGN_DEFAULT = ("flip-silent-input-ids", "truncate-tail", "manifest-sha256")


@pytest.mark.parametrize("case", [c if c in ALIGN_DEFAULT else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_align_refuses_a_corrupted_source(corrupted, fusion_shards, case, tmp_path):
    with pytest.raises(LogitfuseError) as e:
        _align(fusion_shards, corrupted[case], tmp_path)
    assert NAMED[case] in str(e.value)
    assert not (tmp_path / "aligned" / SOURCE / "manifest.json").exists()


@pytest.mark.parametrize("region", ["page-header", "data-page", "footer"])
def test_train_refuses_a_corrupted_aligned_shard(fusion_shards, region, tmp_path):
    from pipeline.train.config import TrainConfig
    from pipeline.train.job import run_train

    aligned = copy_set(fusion_shards / "aligned" / SOURCE, tmp_path / "aligned" / SOURCE)
    p = aligned / SHARD
    flip_byte(p, at=byte_offsets(p, "src_index")[region], mask=0x10)
    cfg = TrainConfig.from_dict({"pivot_model": "tiny:tiny-llama-pivot", "output": str(tmp_path / "runs"),
                                 "pivot_shards": str(fusion_shards / "tiny-llama-pivot"), "max_steps": 1,
                                 "progress": False, "sources": [{"shards": str(aligned)}]})
    with pytest.raises(ShardError, match=rf"{SOURCE}/{SHARD}: sha256 mismatch"):
        run_train(cfg)
    assert not list((tmp_path / "runs").rglob("metrics.jsonl"))


def _reseal_with_bad_blob(d: Path) -> str:
    """A blob that is not a zstd frame, in a shard whose manifest was re-sealed (a buggy producer, not a flip):
    verification passes, the codec refuses. Returns the sample id."""
    import pyarrow as pa

    from pipeline.io.atomic import sha256_file

    path = d / SHARD
    table = pq.read_table(path)
    blobs = table.column("topk_logprobs").to_pylist()
    row = next(i for i, n in enumerate(table.column("n_positions").to_pylist()) if n)
    blobs[row] = b"not a zstd frame" * 4
    i = table.schema.get_field_index("topk_logprobs")
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(blobs, pa.binary())), path)
    m = json.loads((d / "manifest.json").read_text())
    m["shards"][1] |= {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    (d / "manifest.json").write_text(json.dumps(m))
    return table.column("sample_id")[row].as_py()


def test_a_blob_that_does_not_decode_names_shard_and_sample(fusion_shards, tmp_path, capsys):
    d = copy_set(fusion_shards / SOURCE, tmp_path / SOURCE)
    sample = _reseal_with_bad_blob(d)
    assert main(["inspect", str(d), "--json", "--png", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"{d / SHARD}: sample {sample!r}: log-prob blob" in err, err
    with pytest.raises(LogitfuseError, match=rf"{SHARD}: sample {sample!r}: log-prob blob"):
        _align(fusion_shards, d, tmp_path / "al")
