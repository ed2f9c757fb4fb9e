"""Submit to a real Ray head started here (own process, token authentication on), spoken to only over HTTP.

The head runs as ``ray start --head --block`` in its own session; it is stopped by signalling that process (which
tears down the processes it started), never with ``ray stop``, which would stop every Ray on the machine, the test
session's own included.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from pipeline.cli import main
from pipeline.cluster.submit import check_succeeded, connect, submit, wait
from pipeline.errors import SubmitError
from pipeline.io.reader import verify

pytestmark = pytest.mark.ray
VENV_BIN = Path(sys.executable).parent  # the head's `python` is this environment's, like a node's image


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the `ray start --block` we started (it stops its own processes), then SIGKILL its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of that session only
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def head():
    """(dashboard address, token) of a fresh single-node cluster with 2 CPUs."""
    temp = Path(tempfile.mkdtemp(prefix="lfray-", dir="/tmp"))  # short: Ray's socket paths live under it
    gcs, dash, client, agent, agent_grpc, runtime_env, metrics = _free_ports(7)
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "2"}  # a test head has nothing to drain
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(dash), "--num-cpus", "2", "--disable-usage-stats", "--temp-dir", str(temp),
           "--node-ip-address", "127.0.0.1", "--ray-client-server-port", str(client),
           "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
           "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics)]
    with open(temp / "head.log", "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited {proc.returncode}:\n{(temp / 'head.log').read_text()[-3000:]}")
            try:
                r = requests.get(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}, timeout=2)
                if r.status_code == 200:
                    break
            except requests.exceptions.RequestException:
                pass
            if time.time() > deadline:
                pytest.fail(f"the Ray head did not come up:\n{(temp / 'head.log').read_text()[-3000:]}")
            time.sleep(1)
        yield address, token
    finally:
        _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_missing_or_wrong_token_is_refused(head, tmp_path, monkeypatch):
    address, token = head
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    with pytest.raises(SubmitError, match=rf"the Ray cluster at {address} requires a token \(RAY_AUTH_MODE=token\) "
                                          r"and none was found: set RAY_AUTH_TOKEN"):
        connect(address)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-" + token)
    with pytest.raises(SubmitError, match=rf"the Ray cluster at {address} rejected the token from RAY_AUTH_TOKEN"):
        connect(address)


def test_capture_on_the_cluster_then_resubmit_and_a_failing_job(head, tiny_jsonl, tmp_path, monkeypatch, capsys):
    address, token = head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    config = tmp_path / "capture.yaml"  # outside the project: travels inline
    config.write_text(f"input: {tiny_jsonl}\noutput: {tmp_path / 'out'}\nmodel: tiny:tiny-gpt2-bpe\nk: 4\n"
                      f"shard_size: 20\nprogress: false\ncpus_per_actor: 0.5\n")
    cluster = connect(address)
    bad = submit("capture", str(config), [f"input={tmp_path / 'missing.jsonl'}"], cluster=cluster)  # runs alongside

    assert main(["submit", "capture", str(config), "--address", address, "--follow", "--cpus", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "submitted logitfuse-capture-" in out and "captured tiny-gpt2-bpe: 60 samples" in out
    assert "SUCCEEDED" in out.splitlines()[-1]
    assert verify(tmp_path / "out" / "tiny-gpt2-bpe") == []

    sid = out.split("submitted ")[1].split()[0]
    assert main(["submit", "capture", str(config), "--address", address]) == 0  # the same work: recognised
    assert f"{sid} is already on {address} (SUCCEEDED)" in capsys.readouterr().out
    assert main(["status", sid, "--address", address]) == 0
    assert f"{sid}: SUCCEEDED (exit code 0)" in capsys.readouterr().out
    assert main(["logs", sid, "--address", address]) == 0
    assert "captured tiny-gpt2-bpe" in capsys.readouterr().out
    assert main(["stop", sid, "--address", address]) == 0
    assert "was not running" in capsys.readouterr().out

    job = wait(cluster, bad.submission_id, timeout=180)
    with pytest.raises(SubmitError) as e:
        check_succeeded(cluster, job)
    text = str(e.value)
    assert f"job '{bad.submission_id}' FAILED (exit code 2)" in text and "--- last 40 log lines ---" in text
    assert "missing.jsonl" in text.split("--- last 40 log lines ---")[1]
    assert main(["status", bad.submission_id, "--address", address]) == 1
