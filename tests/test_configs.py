"""Every shipped YAML config loads into its job's config class; unknown keys are refused with the key named."""

from pathlib import Path

import pytest

from pipeline.align.config import AlignConfig
from pipeline.capture.config import CaptureConfig
from pipeline.config import parse_overrides
from pipeline.errors import ConfigError
from pipeline.publish.config import PublishConfig
from pipeline.train.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "jobs" / "configs").glob("*.yaml"))
CLASSES = {"capture": CaptureConfig, "align": AlignConfig, "train": TrainConfig, "publish": PublishConfig}


def config_class(path: Path):
    prefix = path.stem.split("_")[0]
    if prefix not in CLASSES:
        pytest.skip(f"{path.name} belongs to another command")
    return CLASSES[prefix]


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
