"""The chunked head bounds memory at a 151,936-token vocabulary: it does not grow with the sequence length.

Lengths reach the long contexts capture is for (8K and 32K positions); the hidden size stays tiny so that a
[positions, V] logits buffer (32768 × 151,936 × 4 B = 18.5 GiB) is the only thing that could make memory big.
"""

import pytest
import torch
from _live_bytes import LiveBytes
from transformers import LlamaConfig, LlamaForCausalLM

from pipeline.capture.topk import forward_topk, topk_logprobs

V, H, K, CHUNK = 151_936, 8, 10, 64  # Qwen2's vocabulary, a tiny hidden size
CHUNK_BYTES = CHUNK * V * 4  # one fp32 [chunk, V] logits buffer
LONG = 8192  # positions of the long runs (32768 too, in the slow suite: the head alone then takes ~30 s here)


def _head_peak(n: int, chunk: int) -> LiveBytes:
    torch.manual_seed(0)
    hidden, head = torch.randn(n, H), torch.nn.Linear(H, V, bias=False)
    with LiveBytes() as m:
        topk_logprobs(hidden, head, K, chunk)
    return m


@pytest.mark.parametrize("positions", [LONG, pytest.param(32_768, marks=pytest.mark.slow)])
def test_head_peak_is_a_few_chunks_whatever_the_positions(positions):
    short, long = _head_peak(256, CHUNK), _head_peak(positions, CHUNK)
    outputs = positions * K * 8  # the [N, k] ids and log-probs it returns
    assert long.peak <= 3 * CHUNK_BYTES + outputs
    assert long.peak - short.peak <= outputs  # only the outputs grow
    assert long.largest == short.largest == CHUNK_BYTES
    unchunked = _head_peak(256, 256)  # the bound is the chunking's doing: one chunk of every position is 4x
    assert unchunked.largest == 4 * CHUNK_BYTES


def test_forward_topk_adds_only_the_head_chunks_to_the_models_own_activations():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, head_dim=4,
                                         max_position_embeddings=LONG)).eval()
    extra = {}
    for length in (256, LONG):
        ids = torch.randint(0, V, (length,)).tolist()
        with LiveBytes() as base, torch.no_grad():
            model.base_model(input_ids=torch.tensor([ids]), use_cache=False)
        with LiveBytes() as full:
            forward_topk(model, [(ids, 1)], K, budget=length, chunk=CHUNK)
        extra[length] = full.peak - base.peak
        assert full.largest == CHUNK_BYTES  # never a [length, V] buffer
    per_position = K * 8 + H * 4 + 16  # top-k outputs, the kept hidden state, a mask and an index
    assert max(extra.values()) <= 3 * CHUNK_BYTES + LONG * per_position
    assert extra[LONG] - extra[256] <= (LONG - 256) * per_position  # outputs and kept states only
