"""Run folders on object storage without Ray (the real S3 test server): checkpoints load back from s3 through the
ranged DCP reader, the latest complete one is found there, the model folder is uploaded with its completion record
last, and metrics resume from what the store holds."""

import json

import pyarrow.fs as pafs
import torch

from pipeline.io.fs import location
from pipeline.train import checkpoint
from pipeline.train.metrics import MetricsLog
from pipeline.train.storage import COMPLETE, folder_complete, upload_folder


class _Ckpt:
    """What ``ray.train.get_checkpoint()`` returns: a filesystem and a path on it."""

    def __init__(self, loc):
        self.filesystem, self.path = loc.fs, loc.path


def _objects(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))
    return model, opt, sched


def test_checkpoint_on_s3_loads_back_and_only_complete_ones_are_latest(s3, tmp_path):
    run = location(s3.bucket("ckpt")) / "run"
    model, opt, sched = _objects(0)
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
    sched.step()
    checkpoint.save(tmp_path / "c", 0, model, opt, sched)
    want_rng = torch.rand(3)  # what the saved RNG state draws next
    for step in (2, 4, 6):  # what Ray Train uploads per report; 6 is cut short (no state.json)
        upload_folder(tmp_path / "c", run / "ray" / f"checkpoint-{step:07d}", complete=False)
        if step < 6:
            checkpoint.finish(_Ckpt(run / "ray" / f"checkpoint-{step:07d}"), {"step": step, "world": 1})
    found = checkpoint.latest(run / "ray")
    assert found.url == f"{run.url}/ray/checkpoint-0000004"
    assert checkpoint.latest(run / "nothing") is None

    back, opt2, sched2 = _objects(1)
    state = checkpoint.load(found, 0, back, opt2, sched2)
    assert state["step"] == 4 and torch.equal(torch.rand(3), want_rng)  # this rank's RNG state was restored
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    assert sched2.state_dict() == sched.state_dict()
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_model_folder_upload_writes_the_completion_record_last(s3, tmp_path):
    dest = location(s3.bucket("model")) / "run" / "model"
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "sub" / "w.bin").write_bytes(b"x" * 1000)
    (dest / "old.safetensors").put(b"old")  # a leftover of an earlier attempt is replaced
    upload_folder(tmp_path / "m", dest)
    assert folder_complete(dest)
    record = json.loads((dest / COMPLETE).read_text())["files"]
    assert set(record) == {"config.json", "sub/w.bin"} and record["sub/w.bin"]["bytes"] == 1000
    assert sorted(i.path.rsplit("/model/", 1)[1] for i in dest.list(recursive=True)
                  if i.type == pafs.FileType.File) == sorted([COMPLETE, "config.json", "sub/w.bin"])
    (dest / COMPLETE).delete()
    assert not folder_complete(dest)


def test_metrics_on_s3_resume_from_the_stored_lines(s3):
    run = location(s3.bucket("metrics")) / "run"
    log = MetricsLog(run.url, 0, [])
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
    log.sync()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]
    log.close()
    resumed = MetricsLog(run, 3, [])  # a checkpoint at step 3: 4 and 5 are logged again
    for step in (4, 5, 6):
        resumed.write({"step": step, "loss": 0.0})
    resumed.close()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
