"""PNG loss curves from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def loss_curves(metrics: str | Path, out: str | Path) -> Path | None:
    """One panel per loss term (total, sft, uld, gld, kl) against the step; None when there is nothing to plot."""
    rows = [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
    if not rows:
        return None
    from matplotlib.figure import Figure  # not pyplot: its global figure registry is not safe across threads

    terms = [t for t in ("loss", "sft", "uld", "gld", "kl") if any(t in r for r in rows)]
    fig = Figure(figsize=(3.6 * len(terms), 3.2))
    axes = fig.subplots(1, len(terms), squeeze=False)
    for ax, term in zip(axes[0], terms):
        pts = [(r["step"], r[term]) for r in rows if term in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color="#3b6ea5", lw=1)
        ax.set(title=term, xlabel="step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return Path(out)
