"""The plan against torch's FSDP2 memory tracker: two real training steps on fake tensors under a fake process group.

``FSDPMemTracker`` follows every tensor the step allocates (sharded and gathered parameters, gradients, optimizer
state, activations, temporaries, collective buffers) through FSDP2's own hooks, so its peak is the step's real
peak on one rank, without a GPU. The plan adds its items, so it must lie at or above that peak, and not far above.
"""

import pytest
import torch
import torch.distributed as dist
import transformers

from pipeline.train.config import TrainConfig
from pipeline.train.holdings import fake_world
from pipeline.train.plan import plan_train

SHAPE = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=False)
WORLD, TOKENS, CHUNK, K = 4, 512, 256, 10  # fake tensors cost per op, not per element: few layers and chunks


def tracked_peak(config, world: int, tokens: int, chunk: int, k: int, checkpointing: bool) -> dict[str, int]:
    """Peak bytes per category of the second of two bf16 FSDP training steps of ``config`` on ``world`` ranks, as
    FSDPMemTracker sees rank 0."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed.device_mesh import init_device_mesh

    from pipeline.losses.chunked_head import HeadOutputs
    from pipeline.losses.gld import gld_rank_loss
    from pipeline.losses.sft import sft_loss
    from pipeline.losses.uld import uld_loss
    from pipeline.train.loop import Student
    from pipeline.train.parallel import parallelize

    with fake_world(world):
        mesh = init_device_mesh("cpu", (world,))  # outside the fake mode: the mesh reads its rank map
        with FakeTensorMode():
            config._attn_implementation = "sdpa"
            lm = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            student = parallelize(Student(lm), lm, parallelism="fsdp", precision="bf16",
                                  activation_checkpointing=checkpointing, mesh=mesh)
            optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
            ids = torch.randint(0, config.vocab_size, (1, tokens + 1))
            mask = torch.ones(1, tokens, dtype=torch.bool)
            teacher = torch.randn(1, tokens, k).log_softmax(-1).sort(-1, descending=True).values
            tracker = FSDPMemTracker(student, optimizer)
            tracker.track_inputs((ids,))
            with tracker:
                for step in range(2):  # the second step also holds the AdamW moments during its backward
                    # positions=None: fake tensors cannot pick rows with nonzero(); every position is a response one
                    h = HeadOutputs(*student(ids[:, :-1], None, ids[:, 1:], None, None, k, chunk))
                    # fusion_loss's terms, without its float() logging (fake tensors hold no values)
                    loss = (sft_loss(h.target_logprobs, mask) + 0.5 * uld_loss(h.topk_logprobs, teacher, mask, 1.0, True)
                            + 0.5 * gld_rank_loss(h.topk_logprobs, teacher, mask, 1.0, "topk"))
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad()
                    if step == 0:
                        tracker.reset_mod_stats()
            (snapshot,) = tracker.get_tracker_snapshot("peak").values()
    return {getattr(k, "name", k): v for k, v in snapshot.items()}


@pytest.mark.parametrize("checkpointing", [False, True])
def test_plan_bounds_the_tracked_peak(checkpointing, tmp_path):
    transformers.Qwen2Config(**SHAPE).save_pretrained(tmp_path)
    cfg = TrainConfig.load(None, [f"pivot_model={tmp_path}", "pivot_shards=-", "output=-", "parallelism=fsdp",
                                  "precision=bf16", f"activation_checkpointing={checkpointing}",
                                  f"token_budget={TOKENS}", f"head_chunk={CHUNK}", f"loss.k={K}"])
    plan = plan_train(cfg, WORLD, "80GiB")
    peak = tracked_peak(transformers.Qwen2Config(**SHAPE), WORLD, TOKENS, CHUNK, K, checkpointing)
    assert peak["SHARDED_PARAM"] == plan.parameters and peak["OPT"] == plan.optimizer  # moments + step counters
    assert peak["Total"] <= plan.total <= 2 * peak["Total"]
    if not checkpointing:  # the peak is at the start of the backward, with every layer's activations alive
        assert abs(peak["ACT"] / plan.activations - 1) < 0.05
    assert not dist.is_initialized()
