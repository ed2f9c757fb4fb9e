"""The jobs, once: name → config class, run function, entry module, description and an example config.

Read by the command line (``logitfuse capture|align|train``), ``logitfuse submit`` (what runs on the cluster), the
``python -m jobs.<module>`` entry points and the tests. Classes and functions are named by ``module:attribute`` and
imported on first use, so listing the jobs imports neither torch nor Ray.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Job:
    """One job of the pipeline."""

    name: str  # ``logitfuse <name>``, ``logitfuse submit <name>``
    description: str  # one line, for --help
    config: str  # ``module:Class`` of its JobConfig (a light import: no torch)
    run: str  # ``module:function`` taking the config
    entry: str  # ``python -m <entry> CONFIG [key=value …]``: what a submission runs
    example_config: str  # shipped YAML, relative to the project root
    config_command: bool = True  # ``logitfuse <name> CONFIG [key=value …]``; publish has its own flags instead

    def config_class(self):
        """The config class (imports its module)."""
        return _attribute(self.config)

    def run_function(self) -> Callable:
        """The function that runs the job (imports the job's module: torch, Ray…)."""
        return _attribute(self.run)


def _attribute(ref: str):
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


JOBS: dict[str, Job] = {j.name: j for j in (
    Job("capture", "Capture top-k logit shards of one model (Ray Data job).",
        "pipeline.capture.config:CaptureConfig", "pipeline.capture.job:run_capture", "jobs.capture_logits",
        "jobs/configs/capture_pivot.yaml"),
    Job("align", "Map a source vocabulary onto the pivot's and align its shards (Ray job).",
        "pipeline.align.config:AlignConfig", "pipeline.align.job:run_align", "jobs.map_vocab",
        "jobs/configs/align.yaml"),
    Job("train", "Fuse sources into the pivot with SFT + ULD + GLD (Ray Train job).",
        "pipeline.train.config:TrainConfig", "pipeline.train.job:run_train", "jobs.train_fusion",
        "jobs/configs/train.yaml"),
    Job("publish", "Stage shard sets as a Hugging Face dataset repo and upload it.",
        "pipeline.publish.config:PublishConfig", "pipeline.publish.job:run_publish", "jobs.publish_shards",
        "jobs/configs/publish.yaml", config_command=False),
)}

# the jobs ``logitfuse <name> CONFIG [key=value …]`` runs through their entry module
CONFIG_COMMANDS = tuple(name for name, job in JOBS.items() if job.config_command)
