"""Activation and LM-head memory of one training micro-batch, from the model's shape (the memory plan's formulas).

Per decoder layer of a Llama / Qwen2 / Phi-3 style model (RMSNorm, GQA attention through SDPA, SwiGLU MLP) over
``T`` tokens, with ``e`` the compute dtype's bytes (2 for bf16, 4 for fp32), ``h`` hidden, ``I`` intermediate,
``d_kv`` = kv heads × head dim, ``d`` head dim, ``a`` attention heads, what autograd saves for the backward is

    T · [ 8h                           both RMSNorms keep their input upcast to fp32 (4 B each)
          + e · (6h + 2·d_kv + 4·I)    per norm x·rstd and the weighted output; q, attention output; k, v;
                                       gate, up, SiLU(gate), SiLU(gate)·up
          + e · 2d                     RoPE cos and sin
          + 4 · (a + 2) ]              SDPA log-sum-exp per head, RMSNorm rstd ×2

(in fp32 the norm's upcast input is the input itself, which the layer keeps anyway: same count). SDPA's flash /
memory-efficient kernels keep no [T, T] score matrix. ``tests/train/test_activations.py`` checks this against the
tensors autograd really saves for a transformers decoder layer. With activation checkpointing each layer keeps only
its input (T·h·e) and one layer's activations exist at a time, during its recomputation in the backward.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerShape:
    """The dimensions the activation formula reads, from a transformers config."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> LayerShape:
        """Read a Llama / Qwen2 / Phi-3 / Mistral style config (``head_dim`` defaults to hidden / heads)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(hidden=config.hidden_size, intermediate=config.intermediate_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
                   layers=config.num_hidden_layers, vocab=config.vocab_size)


def layer_activation_bytes(shape: LayerShape, tokens: int, elem: int) -> int:
    """Bytes one decoder layer saves for the backward over ``tokens`` tokens in a dtype of ``elem`` bytes."""
    h, d_kv = shape.hidden, shape.kv_heads * shape.head_dim
    per_token = 8 * h + elem * (6 * h + 2 * d_kv + 4 * shape.intermediate + 2 * shape.head_dim) + 4 * (shape.heads + 2)
    return tokens * per_token


def model_activation_bytes(shape: LayerShape, tokens: int, elem: int, checkpointing: bool) -> int:
    """Activations of the whole decoder stack for one micro-batch, plus the final RMSNorm and the head's input.

    Without checkpointing every layer's saved tensors are alive at the start of the backward; with it, every layer's
    input plus one layer's saved tensors (recomputed). Outside the layers: the final norm (fp32 upcast input, fp32
    x·rstd, output) and the hidden states the chunked head keeps.
    """
    one = layer_activation_bytes(shape, tokens, elem)
    stack = shape.layers * tokens * shape.hidden * elem + one if checkpointing else shape.layers * one
    outside = tokens * shape.hidden * (8 + 2 * elem)
    return stack + outside


def head_bytes(shape: LayerShape, tokens: int, chunk: int, k: int, elem: int) -> int:
    """Peak extra memory of ``chunked_head`` for ``tokens`` positions in chunks of ``chunk``.

    Two fp32 [chunk, V] buffers (the logits and the log-sum-exp temporary in the forward; the recomputed logits and
    the logit gradient in the backward), the [chunk, V] matmul output before its fp32 upcast when the weights are not
    fp32, the fp32 [V, H] accumulator of the head weight's gradient, and per position the outputs: target and top-k
    log-probs (fp32), top-k ids (int64), log-sum-exp (fp32).
    """
    c = min(chunk, tokens)
    buffers = 2 * c * shape.vocab * 4 + (c * shape.vocab * elem if elem != 4 else 0)
    grad_accumulator = shape.vocab * shape.hidden * 4
    outputs = tokens * (4 + k * (4 + 8) + 4)
    return buffers + grad_accumulator + outputs
