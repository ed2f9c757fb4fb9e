"""Per-step metrics from rank 0: one JSON line per step in metrics.jsonl, optionally TensorBoard event files."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Appends steps after ``start_step`` (earlier lines of a resumed run are kept, later ones dropped)."""

    def __init__(self, run_dir: Path, start_step: int, report_to: list[str]):
        self.path = run_dir / "metrics.jsonl"
        _truncate(self.path, start_step)
        self.tb = None
        if "tensorboard" in report_to:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)

    def write(self, terms: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(terms) + "\n")
        if self.tb is not None:
            for key, value in terms.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, terms["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _truncate(path: Path, step: int) -> None:
    """Keep the metrics of steps up to the resumed one, so a resumed run never duplicates lines."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))
