"""Capture's chunked head applies each architecture's logit transform: top-k equal the model's own forward()."""

import pytest
import torch
import transformers

from pipeline.capture.topk import forward_topk
from pipeline.modeling.logit_transform import LogitTransform, logit_transform

TINY = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=64)
CASES = {
    "gemma2-softcap": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM,
                       dict(head_dim=16, final_logit_softcapping=3.0, sliding_window=8)),
    "cohere-scale": (transformers.CohereConfig, transformers.CohereForCausalLM, dict(logit_scale=0.25)),
    "granite-scaling": (transformers.GraniteConfig, transformers.GraniteForCausalLM, dict(logits_scaling=4.0)),
}


def _model(name):
    cfg_cls, model_cls, extra = CASES[name]
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**TINY, **extra, attn_implementation="eager")).eval()
    with torch.no_grad():  # large logits, so that the transform changes the distribution a lot
        model.get_output_embeddings().weight.mul_(40)
    return model


@pytest.mark.parametrize("name", sorted(CASES))
def test_capture_topk_equals_the_models_own_logits(name):
    model = _model(name)
    transform = logit_transform(model.config)
    assert not transform.identity
    gen = torch.Generator().manual_seed(1)
    rows = [(torch.randint(0, 96, (n,), generator=gen).tolist(), start) for n, start in ((20, 5), (13, 4), (17, 1))]
    got, _, _ = forward_topk(model, rows, k=6, budget=40, chunk=7)  # several micro-batches and head chunks
    for (ids, start), (g_ids, g_lps) in zip(rows, got):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, start - 1:-1].float()
        want = torch.log_softmax(logits, -1).topk(6, -1)
        torch.testing.assert_close(g_lps, want.values, atol=1e-4, rtol=1e-4)
        assert torch.equal(g_ids.long(), want.indices)
        # the test can fail: without the transform the stored distribution is another one
        raw = torch.log_softmax(model.get_output_embeddings()(model.base_model(torch.tensor([ids])).last_hidden_state)
                                [0, start - 1:-1].float(), -1).topk(6, -1).values
        assert (raw - want.values).abs().max() > 0.05


def test_in_place_transform_equals_apply():
    x = torch.randn(5, 11) * 30
    for t in (LogitTransform(0.25), LogitTransform(1.0, 3.0), LogitTransform(0.5, 7.0), LogitTransform()):
        torch.testing.assert_close(t.apply_(x.clone()), t.apply(x))
