"""The one-writer lock on the real S3 test server: a conditional PUT creates it, a second writer is refused while the
holder lives, a released lock is reusable, a dead holder of this host is taken over, another host's is named."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from pipeline.errors import LockError
from pipeline.io.fs import location
from pipeline.io.lock import folder_lock, lock_location


@pytest.fixture()
def folder(s3, request):
    return f"{s3.bucket('lf-lock')}/{request.node.name}/out"


def _holder(**over) -> bytes:
    return json.dumps({"host": socket.gethostname(), "pid": 1, "process_start": None, "started": time.time(),
                       "fingerprint": "f", "what": "capture", "folder": "x"} | over).encode()


def test_second_writer_refused_and_released_lock_reusable(folder):
    lock = lock_location(folder)
    assert lock.url.endswith("/.out.lock") and not lock.exists()
    with folder_lock(folder, "capture", "fp1"):
        held = json.loads(lock.read_text())
        assert held["what"] == "capture" and held["folder"] == folder
        with pytest.raises(LockError, match=r"is being written by capture pid \d+ on .*config fp1"):
            with folder_lock(folder, "align", "fp2"):
                pass
    assert not lock.exists()
    with folder_lock(folder, "align"):  # released: a later writer takes it
        assert json.loads(lock.read_text())["what"] == "align"
    assert not lock.exists()


def test_dead_holder_of_this_host_is_taken_over(folder, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = lock_location(folder)
    lock.put(_holder(pid=dead.pid))
    with folder_lock(folder, "capture"):
        assert json.loads(lock.read_text())["pid"] != dead.pid
    assert "taking over the lock" in capsys.readouterr().err and not lock.exists()


def test_holder_on_another_host_is_refused_naming_the_object(folder):
    lock = lock_location(folder)
    lock.put(_holder(host="gpu-node-7"))
    with pytest.raises(LockError, match=rf"on gpu-node-7.*delete the lock object {lock.url}"):
        with folder_lock(folder, "capture"):
            pass
    assert json.loads(lock.read_text())["host"] == "gpu-node-7"  # untouched
    lock.delete()


def test_racing_writers_yield_exactly_one_winner(folder):
    from pipeline.io.conditional import store

    obj = store(lock_location(folder))
    tags = [obj.create(_holder(pid=p)) for p in (1, 2)]
    assert tags[0] is not None and tags[1] is None
    assert obj.replace(b"{}", "not-the-etag") is None and obj.delete("not-the-etag") is False
    assert obj.delete(tags[0]) and not location(lock_location(folder)).exists()
