"""Align job: ``python -m jobs.map_vocab CONFIG [key=value …]`` (also what `logitfuse submit align` runs).

Builds each source's vocabulary map onto the pivot and writes ``<output>/aligned/<source>/`` shards on the pivot's
shard plan; rerunning resumes from the complete shards.
"""

from __future__ import annotations

import sys

from jobs._entry import main
from pipeline.align.vocab_map import FAN_IN_PREFIX


def summary(manifests) -> None:
    """Coverage, vocab-map method shares and the largest fan-in per source."""
    for name, m in manifests.items():
        shares = ", ".join(f"{k.removeprefix('map_')} {v:.1%}" for k, v in m.stats.items() if k.startswith("map_"))
        fan = ", ".join(f"pivot id {k.removeprefix(FAN_IN_PREFIX)} <- {v}" for k, v in m.counts.items()
                        if k.startswith(FAN_IN_PREFIX))
        print(f"aligned {name}: {m.counts['aligned']}/{m.counts['positions']} pivot positions "
              f"(coverage {m.stats['coverage']:.1%}; 1:1 {m.counts.get('1:1', 0)}, 1:n {m.counts.get('1:n', 0)}, "
              f"n:1 {m.counts.get('n:1', 0)}); vocab map: {shares}; largest fan-in (source ids): {fan}")


def cli(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the job from command-line arguments."""
    return main("align", argv, summary, prog)


if __name__ == "__main__":
    sys.exit(cli())
