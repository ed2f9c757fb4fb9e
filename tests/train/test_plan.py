"""The memory plan: shipped shapes, its per-rank numbers against a real 2-process FSDP run, check_fits, the CLI."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from pipeline.cli import main
from pipeline.errors import ConfigError, TrainError
from pipeline.train.config import TrainConfig
from pipeline.train.holdings import fake_world, local
from pipeline.train.plan import GIB, check_fits, parse_bytes, pivot_config, plan_train

CONFIGS = Path(__file__).resolve().parents[2] / "jobs" / "configs"


def tiny_cfg(**over) -> TrainConfig:
    base = {"pivot_model": "tiny:tiny-llama-pivot", "pivot_shards": "x", "output": "y", "token_budget": 64,
            "head_chunk": 16, "parallelism": "fsdp", "activation_checkpointing": True}
    return TrainConfig.load(None, [f"{k}={v}" for k, v in (base | over).items()])


@pytest.mark.parametrize("name, published", [("qwen2.5-7b", 7.61e9), ("phi-4", 14.66e9)])
def test_shipped_shapes_have_the_published_parameter_counts(name, published):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(pivot_config(name))
    assert abs(sum(p.numel() for p in lm.parameters()) / published - 1) < 0.005


def test_fsdp_divides_the_fp32_state_by_the_world():
    from transformers import AutoModelForCausalLM

    one, eight = plan_train(tiny_cfg(), 1, "80GiB"), plan_train(tiny_cfg(), 8, "80GiB")
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(pivot_config("tiny:tiny-llama-pivot"))
    assert one.parameters == one.parameters_total * 4 == sum(p.numel() * 4 for p in lm.parameters())  # fp32 master
    # FSDP2 cuts every tensor's first dimension into world chunks; rank 0 holds the first, ceil(rows / world) rows
    assert eight.parameters == sum(math.ceil(p.shape[0] / 8) * p[0].numel() * 4 for p in lm.parameters())
    assert eight.optimizer > 2 * eight.parameters and eight.gradients == eight.parameters
    assert eight.activations == eight.activations_checkpointed < eight.activations_full
    assert eight.total == sum(getattr(eight, k) for k in ("parameters", "gradients", "optimizer", "gathered",
                                                          "reduce_buffers", "activations", "head"))
    assert not dist.is_initialized()  # the fake process group is gone


def test_ddp_holds_full_replicas():
    fsdp, ddp = plan_train(tiny_cfg(), 2, "80GiB"), plan_train(tiny_cfg(parallelism="ddp"), 2, "80GiB")
    assert ddp.parallelism == "ddp" and ddp.parameters == ddp.gradients == ddp.parameters_total * 4 > fsdp.parameters
    assert ddp.gathered == 0 and ddp.reduce_buffers == ddp.gradients  # fp32: no cast copies; the reducer's buckets
    assert plan_train(tiny_cfg(parallelism="ddp", precision="bf16"), 2, "80GiB").gathered > 0


def test_fake_world_refuses_a_process_that_has_a_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        with pytest.raises(TrainError, match="fake process group"):
            plan_train(tiny_cfg(), 2, "80GiB")
    finally:
        dist.destroy_process_group()


def _fsdp_worker(rank: int, world: int, store: str, model: str, out: str) -> None:
    """One rank of a real gloo FSDP run: shard the tiny pivot as training does, one AdamW step, count local bytes."""
    from transformers import AutoModelForCausalLM

    from pipeline.losses.chunked_head import HeadOutputs
    from pipeline.losses.objective import LossConfig, fusion_loss
    from pipeline.train.loop import Student
    from pipeline.train.parallel import parallelize

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        student = parallelize(Student(lm), lm, parallelism="fsdp", activation_checkpointing=True)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
        ids = torch.randint(0, lm.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
        mask = torch.ones_like(ids, dtype=torch.bool)
        outs = student(ids, torch.ones_like(ids), ids.roll(-1, 1), mask, None, 10, 8)
        loss, _ = fusion_loss(HeadOutputs(*outs), [], mask, LossConfig())
        loss.backward()
        optimizer.step()
        nbytes = lambda ts: sum(local(t).numel() * local(t).element_size() for t in ts)  # noqa: E731
        counts = {"parameters": nbytes(student.parameters()), "gradients": nbytes(p.grad for p in student.parameters()),
                  "optimizer": nbytes(t for s in optimizer.state.values() for t in s.values())}
        Path(out, f"{rank}.json").write_text(json.dumps(counts))
    finally:
        dist.destroy_process_group()


def test_plan_equals_what_fsdp_holds_in_a_real_two_process_run(tmp_path):
    from pipeline.modeling.load import resolve_model_path

    cfg = tiny_cfg()
    plans = [plan_train(cfg, 2, "80GiB", rank=rank) for rank in (0, 1)]  # first: the forked workers reuse the imports
    torch.multiprocessing.start_processes(
        _fsdp_worker, args=(2, str(tmp_path / "store"), resolve_model_path(cfg.pivot_model), str(tmp_path)),
        nprocs=2, start_method="fork")
    for rank, plan in enumerate(plans):
        held = json.loads((tmp_path / f"{rank}.json").read_text())
        assert {k: getattr(plan, k) for k in held} == held


def test_check_fits_raises_with_the_numbers():
    cfg = tiny_cfg(activation_checkpointing="false")
    plan = plan_train(cfg, 1, "80GiB")
    assert check_fits(cfg, 1, plan.total).fits  # exactly enough
    with pytest.raises(TrainError, match=r"needs \d+\.\d\d GiB per GPU on 1 GPUs, more than gpu_memory=") as e:
        check_fits(cfg, 1, plan.total - 1)
    assert f"{plan.total / GIB:.2f} GiB" in str(e.value) and "activation_checkpointing=false" in str(e.value)


def test_micro_batch_needs_a_size():
    with pytest.raises(ConfigError, match="token_budget, or max_length"):
        plan_train(tiny_cfg(token_budget="none"), 1, "80GiB")
    plan = plan_train(tiny_cfg(token_budget="none", batch_size=3, max_length=20), 1, "80GiB")
    assert plan.tokens_per_micro_batch == 60


@pytest.mark.parametrize("text, value", [("80GiB", 80 << 30), ("141GB", 141 * 10**9), ("1.5 MiB", 3 << 19),
                                         ("1000", 1000)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["80 parsecs", "-1GiB", "lots"])
def test_parse_bytes_names_the_setting(text):
    with pytest.raises(ConfigError, match="gpu_memory must be a size"):
        parse_bytes(text)


def test_no_gpus_names_the_setting():
    with pytest.raises(ConfigError, match="gpus must be >= 1, got 0"):
        plan_train(tiny_cfg(), 0, "80GiB")


def test_unknown_pivot_names_the_setting():
    with pytest.raises(ConfigError, match="pivot_model='nope'.*qwen2.5-7b"):
        plan_train(tiny_cfg(pivot_model="nope"), 1, "80GiB")


def test_cli_prints_the_shipped_plan_as_json(capsys):
    assert main(["plan", "train", str(CONFIGS / "train_qwen2.5-7b.yaml"), "--gpus", "8", "--gpu-memory", "80GiB",
                 "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["fits"] and plan["gpus"] == 8 and plan["architecture"] == "Qwen2"
    assert plan["activations"] == plan["activations_checkpointed"] < plan["activations_full"]


def test_cli_exits_1_when_it_does_not_fit(capsys):
    code = main(["plan", "train", "pivot_model=tiny:tiny-llama-pivot", "pivot_shards=x", "output=y", "token_budget=64",
                 "--gpus", "2", "--gpu-memory", "1MiB"])
    out = capsys.readouterr().out
    assert code == 1 and "DOES NOT FIT" in out and "| parameters |" in out
