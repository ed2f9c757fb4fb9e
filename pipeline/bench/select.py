"""Choose the distillation settings on the val split: a coordinate search over ``variants.GRID`` with one seed.

Start from ``variants.DEFAULT``; for each setting in turn (λ, temperature, GLD space, normalisation) train
SFT+ULD+GLD with each value, keep the one with the best mean val exact match over skills (ties keep the current
value), and go on from there. The values of one setting do not depend on each other, so they train side by side
(``map_fn``); the choice among them is the same as one at a time. Every run is recorded; the test split is never read.
"""

from __future__ import annotations

import statistics
from typing import Callable, Iterable

from pipeline.bench.variants import DEFAULT, GRID


def primary(metrics: dict) -> float:
    """The selection criterion: mean greedy exact match over the skills in ``metrics``."""
    return statistics.fmean(v for k, v in metrics.items() if k.endswith("/em"))


def coordinate_search(score: Callable[[dict], dict], grid: dict = GRID, start: dict = DEFAULT,
                      map_fn: Callable[[Callable, list], Iterable] = map) -> tuple[dict, list[dict]]:
    """(best settings, every trial as ``{"settings", "metrics", "score"}``); ``score(settings)`` trains one run and
    returns its val metrics; ``map_fn(score, candidates)`` runs one setting's candidates (the start joins the first
    setting's), in order: ``executor.map`` trains them side by side. A settings dict already tried is not trained
    again."""
    trials: list[dict] = []

    def tried(settings: dict) -> dict | None:
        return next((t for t in trials if t["settings"] == settings), None)

    def run(candidates: list[dict]) -> None:
        new: list[dict] = []
        for c in candidates:
            if tried(c) is None and c not in new:
                new.append(c)
        if new:
            for settings, metrics in zip(new, map_fn(score, new)):
                trials.append({"settings": dict(settings), "metrics": metrics, "score": primary(metrics)})

    best = dict(start)
    items = list(grid.items())
    # the start trains together with the first setting's values (that round then finds them all tried)
    run([best] + ([best | {items[0][0]: value} for value in items[0][1]] if items else []))
    best_score = tried(best)["score"]
    for key, values in items:
        candidates = [best | {key: value} for value in values]
        run(candidates)
        for cand in candidates:
            s = tried(cand)["score"]
            if s > best_score:
                best, best_score = cand, s
    return best, trials
