from schemas.manifest import ShardPlan


def test_plan_splits_samples_with_a_short_last_shard():
    plan = ShardPlan(num_samples=10, shard_size=4)
    assert plan.num_shards == 3
    assert [plan.rows(i) for i in range(3)] == [4, 4, 2]
    assert [plan.first_sample(i) for i in range(3)] == [0, 4, 8]
    assert [i for s in range(plan.num_shards) for i in plan.samples(s)] == list(range(10))


def test_plan_edges():
    assert ShardPlan(8, 4).num_shards == 2 and ShardPlan(8, 4).rows(1) == 4
    assert ShardPlan(0, 4).num_shards == 0
    assert ShardPlan(1, 256).num_shards == 1 and ShardPlan(1, 256).rows(0) == 1
