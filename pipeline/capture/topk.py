"""Top-k log-probabilities from hidden states, running the LM head in position chunks.

``[positions, vocab]`` logits are only ever formed for ``chunk`` positions at a time, so memory stays bounded whatever
the batch: a 4K-token sequence over a 150k vocabulary would otherwise need 2.4 GB in fp32. The model's own head
transform (Gemma-2 soft-capping, Cohere/Granite scaling) is applied before the log-softmax, as its ``forward`` does.

On CUDA the inputs go up and the top-k come down through pinned host buffers with non-blocking copies; the host waits
once per call (after the last micro-batch), not once per micro-batch.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pipeline.capture.oom import with_oom_retry
from pipeline.modeling.batching import token_budget_batches
from pipeline.modeling.logit_transform import LogitTransform, logit_transform

__all__ = ["forward_topk", "token_budget_batches", "topk_logprobs"]
IDENTITY = LogitTransform()


@torch.no_grad()
def topk_logprobs(hidden: torch.Tensor, head: torch.nn.Module, k: int, chunk: int = 1024,
                  transform: LogitTransform = IDENTITY) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k token ids and log-probs (log-softmax over the full vocabulary, fp32), sorted descending.

    hidden: ``[N, H]`` states at the kept positions; returns ``ids [N, k]`` int32 and ``logprobs [N, k]`` float32
    on ``hidden``'s device. At most one ``[chunk, V]`` fp32 logits buffer (plus the head's own output in its dtype
    and one temporary of the log-sum-exp) is alive at a time.
    """
    n = hidden.shape[0]
    ids = torch.empty((n, k), dtype=torch.int32, device=hidden.device)
    lps = torch.empty((n, k), dtype=torch.float32, device=hidden.device)
    for s in range(0, n, chunk):
        logits = head(hidden[s:s + chunk]).float()  # a copy in bf16/fp16, the head's own buffer in fp32: ours
        transform.apply_(logits)
        vals, idx = torch.topk(logits, k, dim=-1, sorted=True)
        lps[s:s + chunk] = vals - torch.logsumexp(logits, dim=-1, keepdim=True)
        ids[s:s + chunk] = idx
        del logits
    return ids, lps


def _host(shape: tuple[int, ...], dtype: torch.dtype, pin: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, pin_memory=pin)


@torch.no_grad()
def forward_topk(model, rows: list[tuple[list[int], int]], k: int, budget: int, chunk: int,
                 names: Sequence[str] | None = None
                 ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int, int]:
    """Teacher-forced forward over ``rows`` = [(input_ids, response_start)], top-k at response positions.

    Returns per row ``(ids [n, k] int32, logprobs [n, k] float32)`` on CPU (n = len(ids) − response_start) and the
    counts of padded and real tokens processed (for the padding fraction). The model may span several GPUs
    (accelerate ``device_map``): inputs go to its embedding's device, hidden states to its head's. A micro-batch
    that runs out of GPU memory is retried once at ``budget // 2`` (``names`` label its samples in the error).
    """
    base, head = model.base_model, model.get_output_embeddings()
    transform = logit_transform(model.config)
    in_dev, head_dev = model.get_input_embeddings().weight.device, head.weight.device
    pin = in_dev.type == "cuda"
    out: list = [None] * len(rows)
    lengths = [len(r[0]) for r in rows]
    live = [i for i in range(len(rows)) if lengths[i] > rows[i][1]]  # skipped rows have nothing to predict
    for i in set(range(len(rows))) - set(live):
        out[i] = (torch.empty((0, k), dtype=torch.int32), torch.empty((0, k)))

    def run(group: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(lengths[i] for i in group)
        ids = torch.zeros((len(group), width), dtype=torch.long, pin_memory=pin)
        mask = torch.zeros((len(group), width), dtype=torch.long, pin_memory=pin)
        for r, i in enumerate(group):
            ids[r, : lengths[i]] = torch.tensor(rows[i][0])
            mask[r, : lengths[i]] = 1
        # positions t predict token t+1: keep t in [response_start - 1, len - 2]
        sel_r = torch.cat([torch.full((lengths[i] - rows[i][1],), r) for r, i in enumerate(group)])
        sel_t = torch.cat([torch.arange(rows[i][1] - 1, lengths[i] - 1) for i in group])
        if pin:
            sel_r, sel_t = sel_r.pin_memory(), sel_t.pin_memory()
        hidden = base(input_ids=ids.to(in_dev, non_blocking=True), attention_mask=mask.to(in_dev, non_blocking=True),
                      use_cache=False).last_hidden_state
        kept = hidden[sel_r.to(hidden.device, non_blocking=True), sel_t.to(hidden.device, non_blocking=True)]
        del hidden
        tid, tlp = topk_logprobs(kept.to(head_dev, non_blocking=True), head, k, chunk, transform)
        if not pin:
            return tid, tlp
        host_ids, host_lps = _host(tid.shape, torch.int32, True), _host(tlp.shape, torch.float32, True)
        host_ids.copy_(tid, non_blocking=True)
        host_lps.copy_(tlp, non_blocking=True)
        return host_ids, host_lps  # filled once the stream gets there: read only after the synchronize below

    pad_tokens = real_tokens = 0
    done: list[tuple[list[int], tuple[torch.Tensor, torch.Tensor]]] = []
    for sub in token_budget_batches([lengths[i] for i in live], budget):
        for group, res in with_oom_retry(run, [live[j] for j in sub], lengths, budget, names):
            width = max(lengths[i] for i in group)
            pad_tokens += len(group) * width - sum(lengths[i] for i in group)
            real_tokens += sum(lengths[i] for i in group)
            done.append((group, res))
    if pin:
        torch.cuda.synchronize(head_dev)  # the one host wait: every device-to-host copy above has landed
    for group, (tid, tlp) in done:
        start = 0
        for i in group:
            n = lengths[i] - rows[i][1]
            out[i] = (tid[start:start + n], tlp[start:start + n])
            start += n
    return out, pad_tokens, real_tokens
