"""Summaries of a logit shard folder with polars: sizes, agreement with the target, entropy; a PNG histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from pipeline.io.reader import ShardSet, decode_topk


def _topk_stats(shards: ShardSet) -> tuple[np.ndarray, np.ndarray, int]:
    """Per position: top-1 probability and top-k entropy (nats, remainder mass as one bucket); top-1 hits."""
    codec = shards.codec() if shards.manifest.codec.get("codec") != "none" else None
    top1, ent, hits = [], [], 0
    if codec is None:
        return np.zeros(0), np.zeros(0), 0
    for i in range(len(shards)):
        path = shards.path(i)  # verified against the manifest
        frame = pl.from_arrow(shards.read(i, columns=["sample_id", "input_ids", "response_start", "n_positions",
                                                      "topk_ids", "topk_logprobs"]))
        for row in frame.iter_rows(named=True):
            if row["n_positions"] == 0:
                continue
            ids, lps = decode_topk(codec, row, where=path)
            targets = np.asarray(row["input_ids"][row["response_start"]:])
            hits += int((ids[:, 0] == targets).sum())
            p = np.exp(lps.astype(np.float64))
            rest = np.clip(1.0 - p.sum(1), 1e-12, 1.0)
            ent.append(-(p * lps).sum(1) - rest * np.log(rest))
            top1.append(p[:, 0])
    return (np.concatenate(top1) if top1 else np.zeros(0)), (np.concatenate(ent) if ent else np.zeros(0)), hits


def summarize(folder: str | Path) -> dict:  # a local folder, s3://, gs:// or hf://datasets/…
    """Samples, tokens, bytes/token, padding, truncation, top-1 agreement and entropy summary."""
    shards = ShardSet(folder)
    if shards.manifest.kind == "aligned":
        from pipeline.align.summary import summarize_aligned

        return summarize_aligned(shards)
    m = shards.manifest
    frame = pl.concat([pl.from_arrow(shards.read(i, columns=["status", "n_positions", "input_ids"]))
                       for i in range(len(shards))])
    tokens = int(frame["n_positions"].sum())
    top1, ent, hits = _topk_stats(shards)
    out = {
        "name": m.name, "samples": frame.height, "shards": len(shards), "tokens": tokens,
        "input_tokens": int(frame["input_ids"].list.len().sum()),
        "bytes": m.total_bytes, "bytes_per_token": m.total_bytes / max(tokens, 1),
        "padding_fraction": m.stats.get("padding_fraction"),
        "truncated": int((frame["status"] == "truncated").sum()), "skipped": int((frame["status"] == "skipped").sum()),
        "k": int(m.codec.get("k", 0)), "codec": m.codec.get("codec"),
    }
    if len(top1):
        out |= {"top1_agreement": hits / len(top1), "top1_prob_mean": float(top1.mean()),
                "entropy_mean": float(ent.mean()), "entropy_p50": float(np.median(ent)),
                "entropy_p90": float(np.quantile(ent, 0.9))}
    out["_hist"] = (top1, ent)
    return out


def plot(summary: dict, path: str | Path) -> Path:
    """PNG with histograms of the top-1 probability and of the entropy per position."""
    if summary.get("kind") == "aligned":
        from pipeline.align.summary import plot_aligned

        return plot_aligned(summary, path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top1, ent = summary["_hist"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].hist(top1, bins=40, color="#3b6ea5")
    ax[0].set(title="top-1 probability per position", xlabel="p(top-1)", ylabel="positions")
    ax[1].hist(ent, bins=40, color="#c0504d")
    ax[1].set(title="entropy per position (top-k + rest)", xlabel="nats")
    fig.suptitle(f"{summary['name']}: {summary['tokens']} tokens, {summary['bytes_per_token']:.2f} bytes/token")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_plot(summary: dict, target: str | Path) -> str:
    """:func:`plot` to ``target``, a local path or an object-store URL (rendered to a local file, then put as one
    object); returns where it went."""
    import tempfile

    from pipeline.io.atomic import write_bytes
    from pipeline.io.fs import location

    loc = location(target)
    if loc.local:
        return str(plot(summary, loc.path))
    with tempfile.TemporaryDirectory() as tmp:
        local = plot(summary, Path(tmp) / loc.name)
        write_bytes(loc, local.read_bytes())
    return loc.url
