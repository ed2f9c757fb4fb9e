"""The fusion benchmark's report: teacher statistics from the aligned shards, mean ± std over seeds, Markdown, PNG."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.io.reader import ShardSet


def teacher_stats(pivot_shards: Path, aligned: Path, skill_of: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per skill: the teacher's mean entropy over its stored top-k (nats, a lower bound of the full entropy) and the
    share of aligned positions where its mapped top-1 is the pivot's gold token (the fusion response's token)."""
    piv = ShardSet(pivot_shards).iter_rows(["sample_id", "input_ids", "response_start", "n_positions"])
    src = ShardSet(aligned).iter_rows(["sample_id", "src_index", "mapped_ids", "mapped_logprobs"])
    acc: dict[str, list[np.ndarray]] = {}
    for p, s in zip(piv, src):
        npos = p["n_positions"]
        if npos == 0:
            continue
        ids = np.asarray(s["mapped_ids"]).reshape(npos, -1)
        lps = np.asarray(s["mapped_logprobs"], dtype=np.float64).reshape(npos, -1)
        on = np.asarray(s["src_index"]) >= 0
        gold = np.asarray(p["input_ids"][p["response_start"]:p["response_start"] + npos])
        prob = np.exp(lps)  # padding is -inf -> 0
        ent = -(prob * np.where(np.isfinite(lps), lps, 0.0)).sum(-1)
        top1 = ids[:, 0] == gold
        acc.setdefault(skill_of[p["sample_id"]], []).append(np.stack([ent[on], top1[on]]))
    out = {}
    for skill, parts in sorted(acc.items()):
        both = np.concatenate(parts, axis=1)
        out[skill] = {"entropy": float(both[0].mean()), "top1_gold": float(both[1].mean()), "positions": both.shape[1]}
    return out


def summarize(rows: list[dict]) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """setting → variant → metric key (``<skill>/<metric>``) → (mean, std over seeds); std is None for one run
    (the teachers, the untrained pivot), which has no spread to show."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["setting"], {}).setdefault(r["variant"], []).append(r)
    for setting, variants in out.items():
        for v, sel in variants.items():
            keys = [k for k in sel[0] if "/" in k]
            variants[v] = {k: (statistics.fmean(r[k] for r in sel),
                               statistics.pstdev([r[k] for r in sel]) if len(sel) > 1 else None) for k in keys}
    return out


def primary_by_seed(rows: list[dict], setting: str, variant: str) -> list[float]:
    """The primary metric of each seed's run: greedy exact match averaged over the setting's skills."""
    return [statistics.fmean(v for k, v in r.items() if k.endswith("/em"))
            for r in rows if r["setting"] == setting and r["variant"] == variant]


def compare(a: list[float], b: list[float]) -> tuple[float, float, int]:
    """(mean(a) − mean(b), the seed spread std(a) + std(b), verdict): +1 when a beats b by more than the spread,
    −1 when b beats a by more than it, 0 within it."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    spread = statistics.pstdev(a) + statistics.pstdev(b)
    return diff, spread, (diff > spread) - (diff < -spread)


def goal(rows: list[dict], fused: str = "sft+uld+gld", base: str = "sft", near: str = "sft+uld") -> list[str]:
    """The benchmark's goal, judged on the primary metric: ``fused`` beats ``base`` beyond the seed spread on at least
    two of the three new settings (several-answers, noisy-labels, little-data — the last counted when it wins at most
    of its sizes) and is never below ``near`` beyond the spread. Markdown lines; empty without those variants run
    with at least two seeds (the quickstart's single seed has no spread to judge by)."""
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    runs = Counter((r["setting"], r["variant"]) for r in rows)
    have = {key for key, n in runs.items() if n > 1}  # one seed has no spread to judge by
    lines, wins, below_near = [], {}, []
    for name in settings:
        if not {(name, fused), (name, base)} <= have:
            continue
        d, spread, v = compare(primary_by_seed(rows, name, fused), primary_by_seed(rows, name, base))
        cell = f"{100 * d:+.1f} (spread {100 * spread:.1f})"
        verdict = ["below", "within the spread", "beats"][v + 1]
        if (name, near) in have:
            dn, sn, vn = compare(primary_by_seed(rows, name, fused), primary_by_seed(rows, name, near))
            cell += f"; vs {near} {100 * dn:+.1f} (spread {100 * sn:.1f})"
            below_near += [name] if vn < 0 else []
            verdict += f"; below {near}" if vn < 0 else ""
        lines.append(f"| {name} | {cell} | {verdict} |")
        group = "little-data" if name.startswith("little-data-") else name
        wins.setdefault(group, []).append(v > 0)
    if not lines:
        return []
    won = [g for g, w in wins.items() if g in ("several-answers", "noisy-labels", "little-data")
           and sum(w) > len(w) / 2]
    met = len(won) >= 2 and not below_near
    head = [f"**Goal** ({fused} beats {base} beyond the seed spread on at least two of several-answers, noisy-labels, "
            f"little-data, and is not below {near} beyond it; primary metric = exact match averaged over skills, "
            f"points): **{'met' if met else 'not met'}** — beats {base} on {len(won)} of 3"
            + (f" ({', '.join(won)})" if won else "") + (f"; below {near} on {', '.join(below_near)}"
                                                          if below_near else "") + ".",
            "", f"| setting | {fused} − {base} | verdict |", "| --- | --- | --- |"]
    return head + lines + [""]


def _cell(key: str, mean: float, std: float | None) -> str:
    if key.endswith("/nll"):
        return f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def markdown(summary: dict, n_seeds: int, stats: dict | None = None, rows: list[dict] | None = None) -> str:
    """The goal's verdict (from ``rows``), then one table per setting (variants × skill metrics) and the teachers'
    statistics per setting."""
    lines = goal(rows) if rows else []
    for setting, variants in summary.items():
        keys = list(dict.fromkeys(k for v in variants.values() for k in v))
        lines += [f"### {setting}", "", "| variant | " + " | ".join(keys) + " |",
                  "| --- |" + " --- |" * len(keys)]
        for v, m in variants.items():
            lines.append(f"| {v} | " + " | ".join(_cell(k, *m[k]) if k in m else "-" for k in keys) + " |")
        for source, per_skill in (stats or {}).get(setting, {}).items():
            cells = ", ".join(f"{sk}: entropy {d['entropy']:.2f} nats, top-1 = gold {100 * d['top1_gold']:.1f} %"
                              for sk, d in per_skill.items())
            lines.append(f"\n{source} at aligned positions of the fusion data — {cells}")
        lines.append("")
    lines.append(f"em: greedy exact match (%; evens: any order); pass@4: at least one of 4 samples at temperature 1 "
                 f"right (%); nll: negative log-likelihood of the gold answer(s) in nats per problem (evens: of the "
                 f"set of all orders; lower is better). Fused variants: mean ± std over {n_seeds} seed(s); teachers "
                 "and the pivot are not trained here (one evaluation, no spread).")
    return "\n".join(lines)


def bar_chart(summary: dict, path: Path, metric: str = "em") -> Path:
    """PNG: one panel per setting, ``metric`` per skill and variant with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(summary)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        variants = list(summary[setting])
        keys = [k for k in next(iter(summary[setting].values())) if k.endswith(f"/{metric}")]
        width = 0.8 / max(1, len(keys))
        for j, key in enumerate(keys):
            means = [100 * summary[setting][v].get(key, (math.nan, 0))[0] for v in variants]
            stds = [100 * (summary[setting][v].get(key, (0, 0))[1] or 0) for v in variants]
            ax.bar([i + (j - (len(keys) - 1) / 2) * width for i in range(len(variants))], means, width, yerr=stds,
                   capsize=3, label=key.split("/")[0])
        ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel=f"{metric} (%)", ylim=(0, 100), title=setting)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
