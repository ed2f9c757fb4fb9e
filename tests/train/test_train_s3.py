"""The train job with its run folder on the S3 test server: checkpoints, metrics, plots, summary and the model are
stored there, and a run stopped after a checkpoint resumes from there to the weights of an uninterrupted run."""

import json

import pyarrow.fs as pafs
import pytest
import torch

from pipeline.io.fs import location
from pipeline.train.config import TrainConfig
from pipeline.train.job import run_train
from pipeline.train.storage import COMPLETE, download_folder
from tests.train.test_train_job import train_yaml

pytestmark = pytest.mark.ray


def s3_weights(model, tmp_path) -> dict:
    """The final model's weights, downloaded from the store and loaded the way users load it."""
    from transformers import AutoModelForCausalLM

    local = tmp_path / model.name
    download_folder(model, local)
    return AutoModelForCausalLM.from_pretrained(local).state_dict()


# slow (~5 min on 2 cores): the default suite keeps train on S3 through tests/train/test_multinode.py; resume
# equality under a real SIGKILL is tested on local paths (tests/train/test_train_job.py)
@pytest.mark.slow
def test_run_on_s3_resumes_from_its_checkpoint_there_to_the_same_weights(s3, fusion_shards, tmp_path):
    out = location(s3.bucket("train")) / "runs"
    cfg = train_yaml(tmp_path, fusion_shards, output=out.url, num_workers=2, cpus_per_worker=0.5, max_steps=6,
                     checkpoint_every=2, batch_size=2, report_to=["tensorboard"])
    clean = run_train(TrainConfig.load(cfg, ["run_name=clean"]))
    assert clean["step"] == 6 and clean["model"] == f"{out.url}/clean/model"
    run = out / "clean"
    for name in ("summary.json", "loss_curves.png", f"model/{COMPLETE}", "model/config.json",
                 "ray/checkpoint-0000006/state.json", "ray/checkpoint-0000006/dcp/__1_0.distcp",
                 "ray/checkpoint-0000006/rng-1.pt", "ray/checkpoint-0000006/scheduler.pt"):
        assert (run / name).exists(), name
    assert any(i.type == pafs.FileType.File for i in (run / "tensorboard").list(recursive=True))
    assert json.loads((run / "summary.json").read_text())["step"] == 6

    # A run stopped after its checkpoint at step 4 and killed while Ray Train uploaded the one at step 6 (shards,
    # no state.json): its objects, as such a run leaves them on the store. The rerun resumes from step 4 there.
    stopped = out / "stopped"
    for step in (4, 6):
        pafs.copy_files(f"{run.path}/ray/checkpoint-{step:07d}", f"{stopped.path}/ray/checkpoint-{step:07d}",
                        source_filesystem=run.fs, destination_filesystem=run.fs)
    (stopped / "ray/checkpoint-0000006/state.json").delete(missing_ok=False)
    (stopped / "metrics.jsonl").put((run / "metrics.jsonl").read_bytes())  # steps 5 and 6 are logged again
    resumed = run_train(TrainConfig.load(cfg, ["run_name=stopped"]))
    assert resumed["step"] == 6
    a, b = s3_weights(run / "model", tmp_path / "a"), s3_weights(stopped / "model", tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise, CPU, fixed seeds
    steps = [json.loads(line)["step"] for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    assert json.loads((stopped / "ray/checkpoint-0000006/state.json").read_text())["nodes"]


def test_local_mode_stores_and_prunes_its_checkpoints_on_s3(s3, fusion_shards, tmp_path):
    # Local mode has no Ray Train storage: the loop uploads each checkpoint itself, state.json last, and prunes.
    out = location(s3.bucket("train-local")) / "runs"
    cfg = train_yaml(tmp_path, fusion_shards, output=out.url, num_workers=0, max_steps=6, checkpoint_every=2,
                     keep_checkpoints=2)
    result = run_train(TrainConfig.load(cfg, ["run_name=local"]))
    run = out / "local"
    assert result["step"] == 6 and (run / f"model/{COMPLETE}").exists()
    kept = sorted(i.path.rsplit("/", 1)[-1] for i in (run / "ray").list())
    assert kept == ["checkpoint-0000004", "checkpoint-0000006"]
    assert all((run / "ray" / k / name).exists() for k in kept for name in ("state.json", "dcp/.metadata", "rng-0.pt"))
