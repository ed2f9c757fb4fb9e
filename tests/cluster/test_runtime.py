"""What a submission carries (entrypoint, runtime env, stable id) and the client-side checks; no cluster needed."""

import shlex
import socket
import time

import pytest
import yaml

from pipeline.align.config import AlignConfig
from pipeline.capture.config import CaptureConfig
from pipeline.cli import main
from pipeline.cluster import auth, runtime
from pipeline.cluster.submit import Cluster, submit
from pipeline.errors import ConfigError, SubmitError
from pipeline.registry import JOBS, Job

ROOT = runtime.project_root()
CAPTURE = {"input": "/data/prompts.jsonl", "output": "/shared/runs", "model": "tiny:tiny-gpt2-bpe", "k": 8,
           "codec": "quantized", "quant_step": 0.05, "limit": None, "append_eos": False, "name": "none-like"}
ALIGN = {"pivot": "/shared/runs/pivot", "pivot_model": "tiny:tiny-llama-pivot", "output": "/shared/runs",
         "sources": [{"shards": "/shared/runs/a", "model": "tiny:a"}, {"shards": "/shared/runs/b", "model": "m b",
                                                                       "vocab_map": None}],
         "max_distance": 3, "cooc": False}


def _args(command: str) -> list[str]:
    return shlex.split(command)[3:]  # after `python -m jobs.<module>`


@pytest.mark.parametrize("cls, data, job", [(CaptureConfig, CAPTURE, "capture"), (AlignConfig, ALIGN, "align")])
def test_a_config_outside_the_project_travels_inline_and_loads_back_equal(tmp_path, cls, data, job):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    command = runtime.entrypoint(job, str(path), ["k=9"] if job == "capture" else [])
    assert command.startswith(f"python -m {JOBS[job].entry} ")
    want = cls.load(path, ["k=9"] if job == "capture" else [])
    assert cls.load(None, _args(command)) == want  # what the cluster parses is what was validated here


def test_a_config_inside_the_project_travels_by_path(tmp_path):
    command = runtime.entrypoint("publish", str(ROOT / "jobs/configs/publish.yaml"), ["repo_id=o/n", "private=false"])
    assert command == "python -m jobs.publish_shards jobs/configs/publish.yaml repo_id=o/n private=false"
    ignored = ROOT / "runs" / "x.yaml"  # excluded from the package: inline
    assert runtime._shipped(ROOT, ignored) is False and runtime._shipped(ROOT, ROOT / "pipeline/cli.py") is True
    assert runtime.entrypoint("capture", None, ["input=a b", "k=3"]) == "python -m jobs.capture_logits 'input=a b' k=3"


def test_runtime_env_ships_the_repo_without_environments_outputs_or_caches():
    env = runtime.runtime_env()
    assert env["working_dir"] == str(ROOT) and (ROOT / "jobs" / "capture_logits.py").is_file()
    assert {".venv", "runs", ".cache", ".git", "__pycache__"} <= set(env["excludes"])


def test_submission_id_is_a_fingerprint_of_job_and_config(tmp_path):
    a = runtime.submission_id("capture", CaptureConfig.load(None, ["input=x", "output=y", "model=m"]))
    path = tmp_path / "c.yaml"
    path.write_text("input: x\noutput: y\nmodel: m\n")
    assert a == runtime.submission_id("capture", CaptureConfig.load(path, []))  # same work, any spelling
    assert a.startswith("logitfuse-capture-") and len(a) == len("logitfuse-capture-") + 12
    assert a != runtime.submission_id("capture", CaptureConfig.load(None, ["input=x", "output=y", "model=m", "k=4"]))


def test_unknown_job_bad_config_and_missing_job_module(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["submit", "fuse", "c.yaml", "--address", "http://127.0.0.1:1"])
    assert "invalid choice: 'fuse'" in capsys.readouterr().err
    with pytest.raises(SubmitError, match="unknown job 'fuse'; one of: capture, align, train, publish"):
        submit("fuse", None, [], cluster=Cluster(None, "x"))
    with pytest.raises(ConfigError, match="unknown config key 'topk'"):  # refused here, before any network
        submit("capture", None, ["input=a", "output=b", "model=c", "topk=3"], address="http://127.0.0.1:1")
    monkeypatch.setitem(JOBS, "ghost", Job("ghost", "A job not in this checkout.", "jobs.ghost_job:GhostConfig",
                                           "jobs.ghost_job:run", "jobs.ghost_job", "jobs/configs/ghost.yaml"))
    with pytest.raises(SubmitError, match="jobs.ghost_job is not in this checkout"):
        runtime.config_class("ghost")


def test_addresses():
    assert auth.normalize_address("127.0.0.1:8265/") == "http://127.0.0.1:8265"
    assert auth.normalize_address("https://head:8265") == "https://head:8265"
    for bad in ("ray://head:10001", "auto", "ftp://x"):
        with pytest.raises(SubmitError, match="address"):
            auth.normalize_address(bad)


def test_no_address(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(SubmitError, match="no cluster address: pass --address"):
        auth.normalize_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert auth.normalize_address(None) == "http://head:8265"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_and_silent_addresses_fail_fast_naming_the_address():
    port = _free_port()  # nothing listens there
    t = time.monotonic()
    with pytest.raises(SubmitError, match=rf"cannot reach the Ray dashboard at http://127.0.0.1:{port} "
                                          r"\(connection refused\)"):
        auth.auth_mode(f"http://127.0.0.1:{port}")
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(SubmitError, match=rf"the Ray dashboard at {address} did not answer within 0.5 s"):
            auth.auth_mode(address, timeout=0.5)
    assert time.monotonic() - t < 5


def test_credentials_in_an_address_are_never_printed(capsys):
    assert auth.redact("at http://user:s3cret@head:8265/api and https://tok@h/x") == \
        "at http://***@head:8265/api and https://***@h/x"
    assert auth.redact("http://head:8265 user@example.org") == "http://head:8265 user@example.org"
    address = f"http://user:s3cret@127.0.0.1:{_free_port()}"
    for argv in (["status", "some-job"], ["logs", "some-job"], ["submit", "capture", "input=x.jsonl", "model=m"]):
        assert main([*argv, "--address", address, "--timeout", "1"]) == 2
        err = capsys.readouterr().err
        assert "s3cret" not in err and "http://***@127.0.0.1" in err, err


def test_token_lookup_follows_rays_order(tmp_path, monkeypatch):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert auth.find_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home\n")
    assert auth.find_token() == ("from-home", "~/.ray/auth_token")
    (tmp_path / "t").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "t"))
    assert auth.find_token() == ("from-path", "RAY_AUTH_TOKEN_PATH")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert auth.find_token() == ("from-env", "RAY_AUTH_TOKEN")


class _Job:
    def __init__(self, sid, status):
        self.submission_id, self.status = sid, status


class _Client:
    """A Jobs API stand-in holding some jobs; records submissions."""

    def __init__(self, jobs):
        self.jobs, self.submitted = [_Job(*j) for j in jobs], []

    def list_jobs(self):
        return self.jobs

    def submit_job(self, **kw):
        self.submitted.append(kw)
        return kw["submission_id"]


def test_resubmitting_the_same_work_attaches_or_retries(monkeypatch):
    args = ("capture", None, ["input=x", "output=y", "model=m"])
    sid = runtime.submission_id("capture", CaptureConfig.load(None, args[2]))
    for status in ("RUNNING", "SUCCEEDED"):
        client = _Client([(sid, status)])
        s = submit(*args, cluster=Cluster(client, "http://h:8265"))
        assert (s.submission_id, s.status, s.submitted, client.submitted) == (sid, status, False, [])
    client = _Client([(sid, "FAILED"), (f"{sid}-2", "STOPPED")])
    s = submit(*args, cluster=Cluster(client, "http://h:8265"), gpus=1, cpus=0.5)
    assert s.submitted and s.submission_id == f"{sid}-3"
    (kw,) = client.submitted
    assert kw["entrypoint"] == "python -m jobs.capture_logits input=x output=y model=m"
    assert kw["runtime_env"] == runtime.runtime_env()
    assert (kw["entrypoint_num_gpus"], kw["entrypoint_num_cpus"]) == (1, 0.5)
    assert kw["metadata"] == {"logitfuse_job": "capture", "logitfuse_id": sid}
    with pytest.raises(SubmitError, match="submission id 'mine' is already used by a job that ended FAILED"):
        submit(*args, sid="mine", cluster=Cluster(_Client([("mine", "FAILED")]), "http://h:8265"))


@pytest.mark.parametrize("path", sorted((ROOT / "jobs" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_submits_by_path(path):
    job = {"capture": "capture", "align": "align", "train": "train", "publish": "publish"}[path.stem.split("_")[0]]
    cfg = runtime.load_config(job, str(path), [])
    rel = path.relative_to(ROOT)
    assert runtime.entrypoint(job, str(path), ["a=1"]) == f"python -m {JOBS[job].entry} {rel} a=1"
    assert runtime.submission_id(job, cfg).startswith(f"logitfuse-{job}-")
