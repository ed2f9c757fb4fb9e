"""The fusion loader: equal steps for every worker and epoch, disjoint workers, resume from a step."""

import pytest

from pipeline.errors import TrainError
from pipeline.train.data import FusionData, collate
from pipeline.train.loader import TrainLoader

pytestmark = pytest.mark.ray  # uses the session's captured + aligned shards


@pytest.fixture(scope="module")
def data(fusion_shards):
    return FusionData(str(fusion_shards / "tiny-llama-pivot"),
                      [str(fusion_shards / "aligned" / m) for m in ("tiny-gpt2-bpe", "tiny-llama-sp")])


def ids(batches):
    return [[d.sample_id[r] for d, r in b] for b in batches]


def test_every_worker_has_enough_batches_in_every_epoch(data):
    spe = data.steps_per_epoch(8, world=2, seed=3, epochs=4)
    for epoch in range(4):
        seen = []
        for rank in range(2):
            got = ids(data.batches(3, epoch, rank, 2, 8))
            assert len(got) >= spe
            seen += [s for b in got for s in b]
        assert len(seen) == len(set(seen))  # workers never share a sample within an epoch


def test_resume_from_a_step_continues_the_same_stream(data):
    full = ids(data.batches(0, 1, 0, 1, 4))
    assert ids(data.batches(0, 1, 0, 1, 4, start_step=5)) == full[5:]
    assert ids(data.batches(0, 2, 0, 1, 4)) != full  # another epoch, another order


@pytest.mark.parametrize("window", [1, 2, 3])
def test_resume_inside_and_across_shuffle_windows(data, window):
    full = ids(data.batches(0, 1, 0, 1, 4, window=window))
    for start in (1, 5, len(full) - 1):
        assert ids(data.batches(0, 1, 0, 1, 4, start_step=start, window=window)) == full[start:]


def test_shuffle_window_mixes_rows_of_several_shards(data):
    # Capture plans sort samples by id, so one shard can hold a single task: batches must mix shards.
    n = len(data.pivot)
    assert n >= 3

    def shards_per_batch(window):
        return [len({d.where for d, _ in b}) for b in data.batches(0, 0, 0, 1, 8, window=window)]
    seen = [s for b in ids(data.batches(0, 0, 0, 1, 1, window=n)) for s in b]
    assert sorted(seen) == sorted(s for i in range(n) for s in data.pivot.read(i, ["sample_id"]).column(0).to_pylist())
    mixed = shards_per_batch(n)
    assert sum(c > 1 for c in mixed) > 0.8 * len(mixed)
    single = shards_per_batch(1)  # one shard at a time: only batches that straddle a shard boundary mix
    assert sum(c > 1 for c in single) < n
    with pytest.raises(TrainError, match="shuffle_shards must be >= 1"):
        next(iter(data.batches(0, 0, 0, 1, 8, window=0)))


def test_collate_places_targets_and_teachers(data):
    batch = next(iter(data.batches(0, 0, 0, 1, 4)))
    b = collate(batch, "error", pad_id=0)
    for i, (d, r) in enumerate(batch):
        rs, n = int(d.response_start[r]), int(d.n_positions[r])
        assert b.mask[i].sum() == n and (b.targets[i, rs - 1:rs - 1 + n] == b.input_ids[i, rs:rs + n]).all()
    for t in b.teachers:
        assert (t["mask"] <= b.mask).all() and t["topk_logprobs"].shape[:2] == b.input_ids.shape


def loader(data, **kw):
    return TrainLoader(data, **({"seed": 0, "epochs": 2, "rank": 0, "world": 1, "batch_size": 2} | kw))


def step_ids(step):
    return [sid for b in step.micro for sid in b.sample_ids]


def test_loader_state_resumes_the_same_stream_and_refuses_other_data(data):
    full = [step_ids(s) for s in loader(data)]
    assert len(full) == 2 * loader(data).steps_per_epoch
    first = loader(data)
    it = iter(first)
    for _ in range(loader(data).steps_per_epoch + 3):  # into the second epoch
        next(it)
    state = first.state_dict()
    it.close()  # stops the prefetch thread
    again = loader(data)
    again.load_state_dict(state)
    assert [step_ids(s) for s in again] == full[loader(data).steps_per_epoch + 3:]
    with pytest.raises(TrainError, match="fingerprint.*another dataset"):
        loader(data).load_state_dict(state | {"fingerprint": "0" * 16})


def test_loader_at_another_world_size_continues_at_the_global_sample_count(data):
    two = loader(data, world=2, rank=1, batch_size=3)
    it = iter(two)
    for _ in range(3):
        next(it)
    state = two.state_dict()
    it.close()
    assert state["samples"] == 3 * 3 * 2 and state["epoch"] == 0
    one = loader(data, batch_size=4)
    one.load_state_dict(state)
    assert "step 4 of" in one.resume_note() and "2 samples of the last partial step are repeated" in one.resume_note()
    assert next(iter(one)).samples == 5 * 4


def test_micro_batches_grouped_by_length_or_token_budget(data):
    step = next(iter(loader(data, batch_size=2, grad_accum_steps=4)))
    widths = [b.input_ids.shape[1] for b in step.micro]
    assert len(step.micro) == 4 and widths == sorted(widths) and 0 <= step.padding < 1
    budget = max(widths)
    step = next(iter(loader(data, batch_size=2, grad_accum_steps=4, token_budget=budget)))
    assert sum(len(b.sample_ids) for b in step.micro) == 8
    assert all(b.input_ids.numel() <= budget or len(b.sample_ids) == 1 for b in step.micro)


def test_max_length_names_the_sample(data):
    with pytest.raises(TrainError, match=r"part-\d+\.parquet: sample '.+' has \d+ tokens, more than max_length=8"):
        next(iter(loader(data, max_length=8)))
