"""GLD term (Graph-on-Logits Distillation, InfiGFusion): sorted node degrees of top-k co-activation graphs.

Per sequence with M aligned positions, the top-k probabilities form A ∈ R^{M×n} (student) and B (teacher) over n
nodes; the co-activation graph is C = AᵀA and its node degrees are f = C·1 = Aᵀ(A·1). The loss is the closed-form
sorting approximation of the Gromov-Wasserstein distance between the two graphs,
    GLD = (1/M)·Σ_i |sort↓(f_S)_i − sort↓(f_T)_i|,
averaged over the sequences that have at least one position. Degrees cost O(Mk); neither C nor any n×n, V×V or
(Mk)×(Mk) matrix is ever formed.

Rank space (default): node i = the i-th largest probability at each position, n = k; tokenizer-agnostic.
Vocab space: nodes = pivot-vocabulary ids in the union of both top-k sets over the sequence; Z[t, v] = probability
if v is in the top-k at t else 0, degrees by scatter-add.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import ConfigError
from pipeline.losses._masked import masked_exp, masked_softmax, sequence_mean, valid_entries

NORMALIZATIONS = ("topk", "full")


def node_probs(logprobs: Tensor, valid: Tensor, temperature: float, normalize: str) -> Tensor:
    """Per-position node weights `[B,T,k]` from top-k log-probs; 0 at invalid entries.

    "topk": softmax(logprob/τ) over the valid top-k entries (each row sums to 1, so degrees are the summed
    distributions). "full": exp(logprob), the unnormalised full-vocabulary probabilities (τ is not applied; each
    row sums to the top-k mass, which weights confident positions more).
    """
    if normalize == "topk":
        return masked_softmax(logprobs, valid, temperature)
    if normalize == "full":
        return masked_exp(logprobs, valid)
    raise ConfigError(f"gld_normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def _sorted_l1(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Σ_i |sort↓(f_s)_i − sort↓(f_t)_i| per row of `[B,n_s]`, `[B,n_t]` (zero-padded to the longer) -> `[B]`."""
    n = max(f_s.shape[-1], f_t.shape[-1])
    f_s = F.pad(f_s, (0, n - f_s.shape[-1])).sort(dim=-1, descending=True).values
    f_t = F.pad(f_t, (0, n - f_t.shape[-1])).sort(dim=-1, descending=True).values
    return (f_s - f_t).abs().sum(-1)


def gld_sequences(mask: Tensor) -> Tensor:
    """`[B]` sequences GLD averages over: those with at least one position in `mask [B,T]`."""
    return mask.any(-1)


def rank_degrees(probs: Tensor) -> Tensor:
    """Node degrees f = Aᵀ(A·1) per sequence from `probs [B,T,k]` (rows sorted, masked rows 0) -> `[B,k]`."""
    return torch.einsum("btk,bt->bk", probs, probs.sum(-1))


def gld_rank_loss(
    student_logprobs: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    normalize: str = "topk",
    weights: Tensor | None = None,
    denominator: Tensor | float | None = None,
) -> Tensor:
    """GLD in rank space.

    student_logprobs: `[B,T,kS]`, teacher_logprobs: `[B,T,kT]` top-k log-probs (non-finite = padding, prob 0).
    mask: `[B,T]` bool. weights: optional `[B]` per-sequence multiplier. denominator: replaces the count of
    :func:`gld_sequences`. Returns a scalar.
    """
    a = node_probs(student_logprobs, valid_entries(student_logprobs, mask), temperature, normalize)
    b = node_probs(teacher_logprobs, valid_entries(teacher_logprobs, mask), temperature, normalize)
    a = a.sort(dim=-1, descending=True).values
    b = b.sort(dim=-1, descending=True).values
    m = mask.sum(-1)
    per_sequence = _sorted_l1(rank_degrees(a), rank_degrees(b)) / m.clamp(min=1)
    return sequence_mean(per_sequence, gld_sequences(mask), weights, denominator)


def gld_vocab_loss(
    student_logprobs: Tensor,
    student_ids: Tensor,
    teacher_logprobs: Tensor,
    teacher_ids: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    normalize: str = "topk",
    weights: Tensor | None = None,
    denominator: Tensor | float | None = None,
) -> Tensor:
    """GLD in vocab space.

    student_logprobs, student_ids: `[B,T,kS]` student top-k log-probs and pivot ids.
    teacher_logprobs, teacher_ids: `[B,T,kT]` teacher top-k log-probs and ids mapped into the pivot vocab; an id of
    -1 (padding or unmapped) or a non-finite log-prob is left out ("topk" renormalises over the mapped entries).
    mask: `[B,T]` bool. weights: optional `[B]` per-sequence multiplier. denominator: as in gld_rank_loss.
    Returns a scalar.
    """
    batch = mask.shape[0]
    valid_s = valid_entries(student_logprobs, mask, student_ids)
    valid_t = valid_entries(teacher_logprobs, mask, teacher_ids)
    a = node_probs(student_logprobs, valid_s, temperature, normalize)
    b = node_probs(teacher_logprobs, valid_t, temperature, normalize)
    # Entry (t, v) adds Z[t, v]·(Z·1)[t] to the degree of node v (0 for invalid entries).
    contrib_s = (a * a.sum(-1, keepdim=True)).flatten()
    contrib_t = (b * b.sum(-1, keepdim=True)).flatten()

    # One key per (sequence, pivot id): unique over the whole batch gives every sequence its own node set, and the
    # sorted keys keep each sequence's nodes contiguous. Invalid entries share a sentinel key that sorts last and
    # lands in a slot that is dropped: no boolean indexing, which costs more than the rest on CPU.
    stride = int(torch.maximum(student_ids.max(), teacher_ids.max()).clamp(min=0)) + 1
    seq = torch.arange(batch, device=mask.device).view(batch, 1, 1)
    sentinel = batch * stride
    keys_s = torch.where(valid_s, seq * stride + student_ids, sentinel).flatten()
    keys_t = torch.where(valid_t, seq * stride + teacher_ids, sentinel).flatten()
    nodes, inverse = torch.unique(torch.cat([keys_s, keys_t]), return_inverse=True)
    node_seq = nodes // stride  # the sentinel maps to sequence `batch`
    counts = torch.bincount(node_seq, minlength=batch + 1)
    n_max = int(counts[:batch].max()) if batch else 0
    start = counts.cumsum(0) - counts
    # Slot of each node in a zero-padded [B, n_max] layout (+1 trailing slot for the sentinel); padding zeros sort
    # last and match each other.
    slot = node_seq * n_max + torch.arange(nodes.numel(), device=mask.device) - start[node_seq]
    slot_s, slot_t = slot[inverse[: keys_s.numel()]], slot[inverse[keys_s.numel() :]]
    size = batch * n_max + 1
    f_s = a.new_zeros(size).index_add(0, slot_s, contrib_s)[:-1].view(batch, n_max)
    f_t = b.new_zeros(size).index_add(0, slot_t, contrib_t)[:-1].view(batch, n_max)

    m = mask.sum(-1)
    per_sequence = _sorted_l1(f_s, f_t) / m.clamp(min=1)
    return sequence_mean(per_sequence, gld_sequences(mask), weights, denominator)
