"""The pivot built on the meta device, sharded with FSDP2 and loaded by broadcast from rank 0 equals
``from_pretrained`` (rotary buffers and tied embeddings included), and its saved HF folder loads back. One real
gloo process group of one rank in this process: the loading path is the one training runs, without Ray."""

import pytest
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM

from pipeline.modeling.load import resolve_model_path
from pipeline.train.model import Student, build_meta, load_pivot, materialize, save_final
from pipeline.train.parallel import parallelize


@pytest.fixture
def process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", ["tiny-llama-pivot", "tiny-gpt2-bpe"])  # rotary inv_freq; tied wte/lm_head
def test_meta_built_sharded_pivot_equals_from_pretrained(name, process_group, tmp_path):
    path = resolve_model_path(f"tiny:{name}")
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    lm = build_meta(path, "sdpa")
    student = Student(lm)
    parallelize(student, lm, parallelism="fsdp")
    materialize(student, torch.device("cpu"))
    load_pivot(student, lm, path, rank=0, dtype=torch.float32)
    assert lm.config.tie_word_embeddings == (name == "tiny-gpt2-bpe")
    assert not any(b.is_meta for b in student.buffers())
    ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref(input_ids=ids).logits.log_softmax(-1).topk(5, dim=-1)
        _, topk_lp, topk_ids, _ = student.eval()(ids, torch.ones_like(ids), ids, torch.ones_like(ids, dtype=bool),
                                                 None, 5, 7)
    torch.testing.assert_close(topk_lp, want.values, rtol=0, atol=1e-5)
    assert torch.equal(topk_ids, want.indices)

    save_final(student, lm, 0, tmp_path / "model", f"tiny:{name}", max_shard_size="50KB")
    assert len(list((tmp_path / "model").glob("model-*.safetensors"))) > 1
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "model").state_dict()
    assert back.keys() == ref.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
