"""The loader hands MinCE each teacher's log-prob of the pivot's gold token, read from the mapped top-k."""

import math

import pytest

from pipeline.train.data import FusionData, collate

pytestmark = pytest.mark.ray  # uses the session's captured + aligned shards


def test_target_logprobs_are_the_mapped_topk_at_the_pivots_gold(fusion_shards):
    data = FusionData(str(fusion_shards / "tiny-llama-pivot"),
                      [str(fusion_shards / "aligned" / m) for m in ("tiny-gpt2-bpe", "tiny-llama-sp")])
    batch = next(iter(data.batches(0, 0, 0, 1, 4)))
    b = collate(batch, "error", pad_id=0)
    checked = 0
    for j, (d, r) in enumerate(batch):
        rs, n = int(d.response_start[r]), int(d.n_positions[r])
        for s, t in zip(d.sources, b.teachers):
            ids = s["mapped_ids"][r].reshape(n, -1)
            lps = s["mapped_logprobs"][r].reshape(n, -1)
            for p in range(n):
                gold = int(b.targets[j, rs - 1 + p])
                hit = [float(lp) for i, lp in zip(ids[p], lps[p]) if i == gold]
                got = float(t["target_logprobs"][j, rs - 1 + p])
                assert got == (hit[0] if hit else -math.inf)
                checked += 1
    assert checked > 0
