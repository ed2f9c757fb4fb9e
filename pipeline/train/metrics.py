"""Per-step metrics from rank 0: one JSON line per step in metrics.jsonl, optionally TensorBoard event files.

On a local run folder both are appended in place. On an object store (no appends) rank 0 writes them to a local
scratch folder, which starts from what the store holds (a resumed run), and uploads the changed files whole
(``sync``): before each checkpoint is reported, at the end, and at most every ``SYNC_S`` seconds in between.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from pipeline.io.fs import Location, location
from pipeline.train.storage import download_folder, upload_file

SYNC_S = 60.0
FILE, TENSORBOARD = "metrics.jsonl", "tensorboard"


class MetricsLog:
    """Appends steps after ``start_step`` (earlier lines of a resumed run are kept, later ones dropped)."""

    def __init__(self, run: str | Path | Location, start_step: int, report_to: list[str]):
        self.run = run = location(run)
        self.local = run.as_path() if run.local else Path(tempfile.mkdtemp(prefix="logitfuse-metrics-"))
        if not run.local:
            if (run / FILE).exists():
                (self.local / FILE).write_bytes((run / FILE).read_bytes())
            if "tensorboard" in report_to:
                download_folder(run / TENSORBOARD, self.local / TENSORBOARD)
        self.path = self.local / FILE
        _truncate(self.path, start_step)
        self.uploaded: dict[str, int] = {}  # relative name -> size at its last upload
        self.synced = time.monotonic()
        self.tb = None
        if "tensorboard" in report_to:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(self.local / TENSORBOARD), purge_step=start_step + 1)

    def write(self, terms: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(terms) + "\n")
        if self.tb is not None:
            for key, value in terms.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, terms["step"])
        if time.monotonic() - self.synced > SYNC_S:
            self.sync()

    def sync(self) -> None:
        """Upload what changed since the last upload (object stores; a no-op on a local run folder)."""
        self.synced = time.monotonic()
        if self.run.local:
            return
        if self.tb is not None:
            self.tb.flush()
        for path in sorted(p for p in [self.path, *(self.local / TENSORBOARD).rglob("*")] if p.is_file()):
            rel = path.relative_to(self.local).as_posix()
            size = path.stat().st_size
            if self.uploaded.get(rel) != size:
                upload_file(path, self.run / rel)
                self.uploaded[rel] = size

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        self.sync()
        if not self.run.local:
            shutil.rmtree(self.local, ignore_errors=True)


def _truncate(path: Path, step: int) -> None:
    """Keep the metrics of steps up to the resumed one, so a resumed run never duplicates lines."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))
