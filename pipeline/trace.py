"""Start-up trace: wall-clock marks from the driver, the Ray tasks and the actors of capture (read by
``tests/benchmarks/bench_capture.py``) and of the train job (``train.*`` in the driver, ``loop.*`` in the workers).

Off unless ``LOGITFUSE_TRACE`` names a file; then each ``mark`` appends one JSON line ``{"event", "t", "pid"}``
to it (``t``: ``time.time()``, comparable across the processes of one machine). Ray workers inherit the variable
from the process that started the local Ray, so setting it before ``ray.init`` traces every stage.
"""

from __future__ import annotations

import json
import os
import time

ENV = "LOGITFUSE_TRACE"


def mark(event: str, **extra) -> None:
    """Record that ``event`` happens now (no-op unless ``LOGITFUSE_TRACE`` is set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"event": event, "t": time.time(), "pid": os.getpid()} | extra) + "\n"
    with open(path, "a") as f:  # one short append per line: lines of several processes do not interleave
        f.write(line)


def read(path: str) -> list[dict]:
    """Every mark in ``path``, in time order."""
    with open(path) as f:
        return sorted((json.loads(line) for line in f if line.strip()), key=lambda m: m["t"])
