"""Choose the distillation settings on the val split: a coordinate search over ``variants.GRID`` with one seed.

Start from ``variants.DEFAULT``; for each setting in turn (λ, temperature, GLD space, normalisation) train
SFT+ULD+GLD with each value, keep the one with the best mean val exact match over skills (ties keep the current
value), and go on from there. Every run is recorded; the test split is never read.
"""

from __future__ import annotations

import statistics
from typing import Callable

from pipeline.bench.variants import DEFAULT, GRID


def primary(metrics: dict) -> float:
    """The selection criterion: mean greedy exact match over the skills in ``metrics``."""
    return statistics.fmean(v for k, v in metrics.items() if k.endswith("/em"))


def coordinate_search(score: Callable[[dict], dict], grid: dict = GRID, start: dict = DEFAULT
                      ) -> tuple[dict, list[dict]]:
    """(best settings, every trial as ``{"settings", "metrics", "score"}``); ``score(settings)`` trains one run and
    returns its val metrics. A settings dict already tried is not trained again."""
    best = dict(start)
    trials: list[dict] = []

    def trial(settings: dict) -> float:
        for t in trials:
            if t["settings"] == settings:
                return t["score"]
        metrics = score(settings)
        trials.append({"settings": dict(settings), "metrics": metrics, "score": primary(metrics)})
        return trials[-1]["score"]

    best_score = trial(best)
    for key, values in grid.items():
        for value in values:
            cand = best | {key: value}
            s = trial(cand)
            if s > best_score:
                best, best_score = cand, s
    return best, trials
