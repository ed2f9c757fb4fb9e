"""Capture job: ``python -m jobs.capture_logits CONFIG [key=value …]`` (also what `logitfuse submit capture` runs).

Writes ``<output>/<name>/part-NNNNN.parquet`` and ``manifest.json``; rerunning resumes from the complete shards.
"""

from __future__ import annotations

import sys

from jobs._entry import main


def summary(m) -> None:
    """One line a person can read at the end of the run."""
    print(f"captured {m.name}: {m.num_samples} samples, {m.total_tokens} tokens, {len(m.shards)} shards, "
          f"{m.stats['bytes_per_token']:.2f} bytes/token, padding {m.stats['padding_fraction']:.1%}, "
          f"truncated {m.counts['truncated']}, skipped {m.counts['skipped']}")


def cli(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the job from command-line arguments."""
    return main("capture", argv, summary, prog)


if __name__ == "__main__":
    sys.exit(cli())
