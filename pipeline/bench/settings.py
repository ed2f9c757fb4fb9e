"""The fusion benchmark's settings: which skills the fusion data holds, how much of it, and how clean it is.

Each setting is one fusion dataset (captured, aligned and trained on separately) where the teachers can carry
something the single gold response does not:

- ``several-answers``: the evens skill, whose problems have many right responses (every order of the even
  numbers); the fusion data holds one order drawn at random per prompt, the teacher was trained on all of them.
  Dyck stays in the mix so MinCE still has to pick the teacher per sample.
- ``noisy-labels``: arithmetic + Dyck with 20 % of the fusion responses wrong (``tasks.corrupt``); the teachers are
  right, the labels are not.
- ``little-data-<n>``: arithmetic + Dyck with only ``n`` fusion problems per skill (200 / 800 / 3200 in the full
  profile).
- ``clean``: arithmetic + Dyck, the v1 benchmark's setting, where every teacher's top-1 is the gold token.

The val and test sets always hold correct responses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.bench import tasks
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One fusion dataset: skills, problems per skill (None = the profile's size) and the share of wrong labels."""

    skills: tuple[str, ...]
    n_per_skill: int | None = None
    noise: float = 0.0


_BASE = ("arithmetic", "dyck")


def setting(name: str) -> Setting:
    """The setting called ``name`` (``little-data-<n>`` for any n)."""
    if name == "several-answers":
        return Setting(("evens", "dyck"))
    if name == "noisy-labels":
        return Setting(_BASE, noise=0.2)
    if name == "clean":
        return Setting(_BASE)
    if name.startswith("little-data-") and name.rsplit("-", 1)[1].isdigit():
        return Setting(_BASE, n_per_skill=int(name.rsplit("-", 1)[1]))
    raise ConfigError(f"unknown setting {name!r}; known: several-answers, noisy-labels, little-data-<n>, clean")


def fusion_records(s: Setting, n_per_skill: int, seed: int = 0) -> list[dict]:
    """The setting's fusion data: ``n_per_skill`` fusion-split problems per skill (``s.n_per_skill`` wins), exactly
    ``round(noise * n)`` of each skill's responses replaced by wrong ones (which ones: seeded)."""
    n = s.n_per_skill or n_per_skill
    if not 0 <= s.noise < 1:
        raise ConfigError(f"noise must be in [0, 1), got {s.noise}")
    recs = tasks.mixed("fusion", n, seed, skills=s.skills)
    rng = random.Random(f"noise/{seed}")
    bad = {i for k in range(len(s.skills))
           for i in rng.sample(range(k, len(recs), len(s.skills)), round(s.noise * n))}
    return [tasks.corrupt(r, rng) if i in bad else r for i, r in enumerate(recs)]


def eval_records(s: Setting, split: str, n_per_skill: int) -> list[dict]:
    """Correct ``split`` problems (``val`` or ``test``) of the setting's skills."""
    if split not in ("val", "test"):
        raise ConfigError(f"evaluation split must be val or test, got {split!r}")
    return tasks.mixed(split, n_per_skill, skills=s.skills)
