"""Every shipped YAML config loads into its job's config class; unknown keys are refused with the key named."""

from pathlib import Path

import pytest

from pipeline.capture.config import CaptureConfig
from pipeline.config import parse_overrides
from pipeline.errors import ConfigError
from pipeline.registry import JOBS
from pipeline.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "jobs" / "configs").glob("*.yaml"))


def config_class(path: Path):
    prefix = path.stem.split("_")[0]
    if prefix not in JOBS:
        pytest.skip(f"{path.name} belongs to another command")
    return JOBS[prefix].config_class()


@pytest.mark.parametrize("name", sorted(JOBS))
def test_every_job_names_its_config_run_function_entry_and_example(name):
    job = JOBS[name]
    assert callable(job.run_function()) and job.config_class().load(ROOT / job.example_config).to_dict()
    assert (ROOT / (job.entry.replace(".", "/") + ".py")).is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_loads(path):
    cfg = config_class(path).load(path)
    assert cfg.to_dict()


def test_overrides_are_typed_and_nested():
    cfg = TrainConfig.load(None, ["pivot_model=x", "pivot_shards=y", "output=z", "loss.lambda_gld=0.25", "epochs=3",
                                   "use_gpu=false", "max_steps=none"])
    assert cfg.loss.lambda_gld == 0.25 and cfg.epochs == 3 and cfg.use_gpu is False and cfg.max_steps is None


@pytest.mark.parametrize("pairs, match", [
    (["k=ten"], "k must be int"),
    (["progress=maybe"], "progress must be true or false"),
    (["nokey"], "must look like key=value"),
])
def test_bad_overrides(pairs, match):
    with pytest.raises(ConfigError, match=match):
        CaptureConfig.load(None, ["input=a", "output=b", "model=c", *pairs])


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "a.c=x", "d=2"]) == {"a": {"b": "1", "c": "x"}, "d": "2"}
