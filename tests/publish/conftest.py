"""Real shard sets to publish: the tiny pivot (k=0), one source (k=4) and that source aligned onto the pivot."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def shard_root(ray_session, tiny_jsonl, tmp_path_factory):
    """``<root>/tiny-llama-pivot``, ``<root>/tiny-gpt2-bpe`` and ``<root>/aligned/tiny-gpt2-bpe``."""
    from pipeline.align.config import AlignConfig, SourceSpec
    from pipeline.align.job import run_align
    from pipeline.capture.config import CaptureConfig
    from pipeline.capture.job import run_capture

    root = tmp_path_factory.mktemp("shards")
    for model, k in (("tiny-llama-pivot", 0), ("tiny-gpt2-bpe", 4)):
        run_capture(CaptureConfig.load(None, [f"input={tiny_jsonl}", f"output={root}", f"model=tiny:{model}",
                                              f"k={k}", "shard_size=25", "progress=false"]))
    run_align(AlignConfig(pivot=str(root / "tiny-llama-pivot"), pivot_model="tiny:tiny-llama-pivot",
                          output=str(root), progress=False,
                          sources=[SourceSpec(shards=str(root / "tiny-gpt2-bpe"), model="tiny:tiny-gpt2-bpe")]))
    return root


@pytest.fixture(scope="package")
def staged(shard_root, tmp_path_factory):
    """The three sets staged as one dataset repo folder (what `publish --stage-only` writes)."""
    from pipeline.publish.config import PublishConfig
    from pipeline.publish.job import run_publish

    out = tmp_path_factory.mktemp("staged") / "repo"
    run_publish(PublishConfig(input=str(shard_root), repo_id="my-org/tiny-logits", stage_only=str(out)))
    return out
