"""capture → align → validate → inspect with every path on the real S3 test server: shards byte-identical (same
sha256) to the same run on local paths; a corrupted and a missing object named by `validate`; a capture SIGKILLed
while writing to s3:// and rerun ends identical to an uninterrupted run."""

from __future__ import annotations

import json

import pytest

from pipeline.align.config import AlignConfig, SourceSpec
from pipeline.align.job import run_align
from pipeline.capture.config import CaptureConfig
from pipeline.capture.job import run_capture
from pipeline.cli import main
from pipeline.errors import ShardError
from pipeline.io.fs import location
from pipeline.io.lock import lock_location
from pipeline.io.reader import ShardSet
from tests.reliability.test_kills import start_then_kill

pytestmark = pytest.mark.ray
COMMON = ["limit=24", "shard_size=8", "progress=false"]
MODELS = (("tiny-llama-pivot", 0), ("tiny-gpt2-bpe", 6))


def _pipeline(data: str, out: str) -> dict:
    """Capture the pivot and one source, align the source; the three manifests."""
    caps = {m: run_capture(CaptureConfig.load(None, [f"input={data}", f"output={out}", f"model=tiny:{m}", f"k={k}",
                                                      *COMMON])) for m, k in MODELS}
    root = location(out)
    aligned = run_align(AlignConfig(pivot=str(root / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot",
                                    output=out, progress=False,
                                    sources=[SourceSpec(shards=str(root / "tiny-gpt2-bpe"), model="tiny:tiny-gpt2-bpe")]))
    return caps | {f"aligned/{k}": v for k, v in aligned.items()}


@pytest.fixture(scope="module")
def runs(ray_session, s3, tiny_jsonl, tmp_path_factory):
    bucket = s3.bucket("lf-jobs")
    data = location(f"{bucket}/input/data.jsonl")
    data.put(open(tiny_jsonl, "rb").read())
    local = _pipeline(tiny_jsonl, str(tmp_path_factory.mktemp("local")))
    remote = _pipeline(data.url, f"{bucket}/run")
    return local, remote, f"{bucket}/run"


def test_s3_run_equals_the_local_run(runs):
    local, remote, out = runs
    assert sorted(local) == sorted(remote) == ["aligned/tiny-gpt2-bpe", "tiny-gpt2-bpe", "tiny-llama-pivot"]
    for name in local:
        assert [(s.file, s.rows, s.tokens, s.bytes, s.sha256) for s in remote[name].shards] == \
               [(s.file, s.rows, s.tokens, s.bytes, s.sha256) for s in local[name].shards], name
        assert len(remote[name].shards) == 3
    assert (location(out) / "aligned" / "tiny-gpt2-bpe" / "vocab_map.parquet").is_file()
    for name in local:  # no lock object left behind
        assert not lock_location(location(out) / name).exists()


def test_validate_and_inspect_on_s3(runs, capsys):
    _, _, out = runs
    folder = f"{out}/tiny-gpt2-bpe"
    assert main(["validate", folder]) == 0 and f"OK {folder}" in capsys.readouterr().out
    assert main(["inspect", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["samples"] == 24
    assert location(f"{folder}/inspect.png").size() > 1000  # rendered locally, then put
    assert main(["inspect", f"{out}/aligned/tiny-gpt2-bpe", "--json"]) == 0


def test_validate_names_a_corrupted_and_a_missing_object(runs, s3, capsys):
    _, _, out = runs
    src, bad = location(f"{out}/tiny-gpt2-bpe"), location(f"{out}-faults/bad-copy")  # outside the run's root
    for name in ("manifest.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"):
        (bad / name).put((src / name).read_bytes())
    data = bytearray((bad / "part-00001.parquet").read_bytes())
    data[len(data) // 2] ^= 1
    (bad / "part-00001.parquet").put(bytes(data))
    (bad / "part-00002.parquet").delete()
    assert main(["validate", bad.url]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"INVALID {bad.url}/part-00001.parquet: sha256 mismatch") for line in lines), lines
    assert any(line.startswith(f"INVALID {bad.url}/part-00002.parquet: missing") for line in lines), lines


@pytest.mark.parametrize("fault", ["corrupted", "missing"])
def test_train_refuses_a_corrupted_or_missing_s3_shard_before_any_step(runs, fault, tmp_path):
    from pipeline.train.config import TrainConfig, TrainSource
    from pipeline.train.job import run_train

    _, _, out = runs
    src, bad = location(f"{out}/tiny-llama-pivot"), location(f"{out}-faults/pivot-{fault}")
    for name in ("manifest.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"):
        (bad / name).put((src / name).read_bytes())
    if fault == "missing":
        (bad / "part-00001.parquet").delete()
    else:
        data = bytearray((bad / "part-00001.parquet").read_bytes())
        data[len(data) // 2] ^= 1
        (bad / "part-00001.parquet").put(bytes(data))
    cfg = TrainConfig(pivot_model="tiny:tiny-llama-pivot", pivot_shards=bad.url,
                      sources=[TrainSource(shards=f"{out}/aligned/tiny-gpt2-bpe")], output=str(tmp_path),
                      run_name="refused", max_steps=2, progress=False)
    cfg.validate()
    want = "sha256 mismatch" if fault == "corrupted" else "missing"
    with pytest.raises(ShardError, match=f"cannot train: {bad.url}/part-00001.parquet: {want}"):
        run_train(cfg)
    assert not (tmp_path / "refused" / "ray").exists()  # no step, no checkpoint


def test_sigkill_while_writing_to_s3_then_rerun_equals_uninterrupted(ray_session, s3, tiny_jsonl, tmp_path, capsys):
    out = f"{s3.bucket('lf-kill')}/run"
    args = [f"input={tiny_jsonl}", "model=tiny:tiny-gpt2-bpe", "k=6", "limit=16", "shard_size=1",
            "progress=false"]
    clean = run_capture(CaptureConfig.load(None, args + [f"output={out}-faults/clean"]))
    killed = location(f"{out}-faults/killed")
    folder = killed / "tiny-gpt2-bpe"
    records = lambda: sum(e.base_name.startswith("part-") for e in (folder / "_progress").list())  # noqa: E731
    start_then_kill(["jobs.capture_logits", *args, f"output={killed.url}"], lambda: records() >= 2,
                    log=tmp_path / "driver.log")
    done_before = records()
    assert 2 <= done_before < 16
    with pytest.raises(ShardError, match="no manifest.json"):
        ShardSet(folder)  # nothing of the killed run is visible
    assert lock_location(folder).exists()  # the dead driver's lock object
    resumed = run_capture(CaptureConfig.load(None, args + [f"output={killed.url}"]))
    assert "taking over the lock" in capsys.readouterr().err and not lock_location(folder).exists()
    assert resumed.stats["shards_computed"] == 16 - done_before
    assert [(s.file, s.rows, s.tokens, s.sha256) for s in resumed.shards] == \
           [(s.file, s.rows, s.tokens, s.sha256) for s in clean.shards]
    assert list(ShardSet(folder).iter_rows()) == list(ShardSet(f"{out}-faults/clean/tiny-gpt2-bpe").iter_rows())


def test_publish_stage_only_reads_shards_from_s3(runs, tmp_path):
    local, _, out = runs
    staged = tmp_path / "staged"
    assert main(["publish", out, "--repo-id", "org/name", "--stage-only", str(staged)]) == 0
    for name in ("tiny-gpt2-bpe", "aligned-tiny-gpt2-bpe"):
        s = ShardSet(staged / "logitfuse" / name)  # the staged repo is a complete shard set, checksums unchanged
        want = local[name.replace("aligned-", "aligned/")]
        assert [e.sha256 for e in s.manifest.shards] == [e.sha256 for e in want.shards]
    assert (staged / "logitfuse" / "aligned-tiny-gpt2-bpe" / "vocab_map.parquet").is_file()
