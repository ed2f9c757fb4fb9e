"""Model-specific transforms between the LM head's matmul and the log-softmax, applied alike in capture and train.

Some architectures do not use ``hidden @ W.T`` as their logits: Cohere multiplies by ``logit_scale``, Granite divides
by ``logits_scaling``, Gemma-2 (and Gemma-3) cap them with ``cap * tanh(logits / cap)``
(``final_logit_softcapping``). A capture or training head that skips the transform stores log-probs of another
distribution than the model's own ``forward().logits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LogitTransform:
    """``logits → softcap(scale · logits)``; identity when ``scale == 1`` and ``softcap is None``."""

    scale: float = 1.0
    softcap: float | None = None

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.softcap is None

    def apply(self, logits: Tensor) -> Tensor:
        """The transformed logits (same shape and dtype)."""
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def apply_(self, logits: Tensor) -> Tensor:
        """``apply`` in place, for heads that own their logits buffer (no autograd): no ``[chunk, vocab]`` copies."""
        if self.scale != 1.0:
            logits.mul_(self.scale)
        if self.softcap is not None:
            logits.div_(self.softcap).tanh_().mul_(self.softcap)
        return logits

    def backward(self, raw_logits: Tensor, grad: Tensor) -> Tensor:
        """d loss / d raw logits from d loss / d transformed logits, for heads with a hand-written backward."""
        if self.softcap is not None:
            t = torch.tanh(raw_logits * (self.scale / self.softcap))
            grad = grad * (1 - t * t)
        return grad * self.scale if self.scale != 1.0 else grad


def logit_transform(config) -> LogitTransform:
    """The transform a Hugging Face model config declares (text config for multimodal wrappers)."""
    config = getattr(config, "get_text_config", lambda: config)()
    scale = 1.0
    if getattr(config, "logit_scale", None) is not None:  # Cohere: logits * logit_scale
        scale *= float(config.logit_scale)
    if getattr(config, "logits_scaling", None) is not None:  # Granite: logits / logits_scaling
        scale /= float(config.logits_scaling)
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma-2/3
    return LogitTransform(scale=scale, softcap=float(cap) if cap else None)
