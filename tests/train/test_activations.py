"""The activation formula of the memory plan against the tensors autograd really saves in a decoder layer."""

import pytest
import torch
import transformers

from pipeline.train.activations import LayerShape, layer_activation_bytes, model_activation_bytes

CONFIGS = {
    "qwen2": lambda: transformers.Qwen2Config(hidden_size=128, intermediate_size=352, num_hidden_layers=1,
                                              num_attention_heads=8, num_key_value_heads=2, vocab_size=256),
    "llama": lambda: transformers.LlamaConfig(hidden_size=96, intermediate_size=256, num_hidden_layers=1,
                                              num_attention_heads=4, num_key_value_heads=4, vocab_size=256),
    "phi3": lambda: transformers.Phi3Config(hidden_size=128, intermediate_size=320, num_hidden_layers=1,
                                            num_attention_heads=8, num_key_value_heads=2, vocab_size=256,
                                            pad_token_id=0),
}


def saved_bytes(config, dtype: torch.dtype, tokens: int) -> int:
    """Bytes of the distinct storages one decoder layer saves for the backward, parameters excluded."""
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    lm = transformers.AutoModelForCausalLM.from_config(config).to(dtype)
    x = torch.randn(1, tokens, config.hidden_size, dtype=dtype, requires_grad=True)
    position_ids = torch.arange(tokens)[None]
    position_embeddings = lm.model.rotary_emb(x, position_ids)
    params = {p.untyped_storage().data_ptr() for p in lm.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lm.model.layers[0](x, position_embeddings=position_embeddings, attention_mask=None, position_ids=position_ids)
    return sum(seen.values())


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_formula_equals_saved_tensors(arch, dtype):
    config = CONFIGS[arch]()
    elem = torch.empty((), dtype=dtype).element_size()
    expected = layer_activation_bytes(LayerShape.from_config(config), 192, elem)
    assert saved_bytes(config, dtype, 192) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_formula_close_for_fused_projections(dtype):
    """Phi-3 fuses qkv and gate/up: v stays a view of the whole qkv output, so autograd keeps a little more."""
    config = CONFIGS["phi3"]()
    elem = torch.empty((), dtype=dtype).element_size()
    formula = layer_activation_bytes(LayerShape.from_config(config), 192, elem)
    assert formula <= saved_bytes(config, dtype, 192) <= 1.15 * formula


def test_checkpointing_keeps_inputs_and_one_layer():
    shape = LayerShape.from_config(transformers.Qwen2Config(hidden_size=64, intermediate_size=128,
                                                            num_hidden_layers=6, num_attention_heads=4))
    full = model_activation_bytes(shape, 100, 2, checkpointing=False)
    ac = model_activation_bytes(shape, 100, 2, checkpointing=True)
    one = layer_activation_bytes(shape, 100, 2)
    assert full - ac == 5 * one - 6 * 100 * 64 * 2
