"""Train job: ``python -m jobs.train_fusion CONFIG [key=value …]`` (also what `logitfuse submit train` runs).

Fuses the aligned sources into the pivot with SFT + ULD + GLD on Ray Train; rerunning the same run_name resumes
from its latest checkpoint.
"""

from __future__ import annotations

import sys

from jobs._entry import main


def summary(result: dict) -> None:
    """Where things are, and the last logged loss terms."""
    last = {k: round(v, 4) for k, v in result["last"].items() if isinstance(v, float)}
    print(f"trained {result['step']} steps; model: {result['model']}; loss curves: {result['plot']}; last: {last}")


def cli(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the job from command-line arguments."""
    return main("train", argv, summary, prog)


if __name__ == "__main__":
    sys.exit(cli())
