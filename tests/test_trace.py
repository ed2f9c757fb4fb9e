"""Start-up trace marks: off by default, one JSON line per mark when LOGITFUSE_TRACE names a file."""

import os

from pipeline import trace


def test_marks_are_written_only_when_asked(tmp_path, monkeypatch):
    path = tmp_path / "trace.jsonl"
    monkeypatch.delenv(trace.ENV, raising=False)
    trace.mark("off")
    assert not path.exists()
    monkeypatch.setenv(trace.ENV, str(path))
    trace.mark("b.second", shard=1)
    trace.mark("a.first")
    marks = trace.read(str(path))
    assert [m["event"] for m in marks] == ["b.second", "a.first"]  # time order
    assert marks[0]["pid"] == os.getpid() and marks[0]["shard"] == 1 and marks[0]["t"] <= marks[1]["t"]
