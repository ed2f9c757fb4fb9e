"""``logitfuse inspect DIR``: a summary table and a PNG histogram of a capture or aligned folder."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p, name: str) -> None:
    """DIR and options."""
    p.add_argument("dir", help="a capture folder or an aligned folder <out>/aligned/<source> (holding manifest.json): "
                               "a local path, s3://…, gs://… or hf://datasets/…")
    p.add_argument("--png", help="where to write the histogram, a path or URL (default DIR/inspect.png)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def run(args) -> int:
    """Print the summary; write the PNG."""
    from pipeline.inspect import save_plot, summarize
    from pipeline.io.fs import check_bucket, is_url, location

    remote = [u for u in (args.dir, args.png) if u and is_url(u) and not u.startswith("hf://")]
    for url in remote:
        check_bucket(location(url))
    s = summarize(args.dir)
    default = location(args.dir) / "inspect.png" if args.dir in remote else Path(args.dir) / "inspect.png"
    png = save_plot(s, args.png or default) if len(s["_hist"][0]) else None
    s.pop("_hist")
    if args.json:
        print(json.dumps(s))
    else:
        for k, v in s.items():
            print(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}")
        if png:
            print(f"{'histogram':>18}: {png}")
    return 0
