"""Top-k log-probabilities from hidden states, running the LM head in position chunks.

``[positions, vocab]`` logits are only ever formed for ``chunk`` positions at a time, so memory stays bounded whatever
the batch: a 4K-token sequence over a 150k vocabulary would otherwise need 2.4 GB in fp32.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def topk_logprobs(hidden: torch.Tensor, head: torch.nn.Module, k: int, chunk: int = 1024
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k token ids and log-probs (log-softmax over the full vocabulary, fp32), sorted descending.

    hidden: ``[N, H]`` states at the kept positions; returns ``ids [N, k]`` int64 and ``logprobs [N, k]`` float32.
    """
    n = hidden.shape[0]
    ids = torch.empty((n, k), dtype=torch.int64, device=hidden.device)
    lps = torch.empty((n, k), dtype=torch.float32, device=hidden.device)
    for s in range(0, n, chunk):
        logits = head(hidden[s:s + chunk]).float()
        vals, idx = torch.topk(logits, k, dim=-1, sorted=True)
        lps[s:s + chunk] = vals - torch.logsumexp(logits, dim=-1, keepdim=True)
        ids[s:s + chunk] = idx
    return ids, lps


def token_budget_batches(lengths: list[int], budget: int, bucket_ratio: float = 1.25) -> list[list[int]]:
    """Group indices into micro-batches from length buckets: ``max_len * rows <= budget`` (≥ 1 row each) and
    the longest row at most ``bucket_ratio`` × the shortest, so a batch is padded only a little."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (lengths[i] * (len(cur) + 1) > budget or lengths[i] > bucket_ratio * lengths[cur[0]]):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


@torch.no_grad()
def forward_topk(model, rows: list[tuple[list[int], int]], k: int, budget: int, chunk: int, device: str
                 ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int, int]:
    """Teacher-forced forward over ``rows`` = [(input_ids, response_start)], top-k at response positions.

    Returns per row ``(ids [n, k], logprobs [n, k])`` on CPU (n = len(ids) − response_start) and the counts of
    padded and real tokens processed (for the padding fraction).
    """
    base, head = model.base_model, model.get_output_embeddings()
    out: list = [None] * len(rows)
    pad_tokens = real_tokens = 0
    lengths = [len(r[0]) for r in rows]
    live = [i for i in range(len(rows)) if lengths[i] > rows[i][1]]  # skipped rows have nothing to predict
    for i in set(range(len(rows))) - set(live):
        out[i] = (torch.empty((0, k), dtype=torch.int64), torch.empty((0, k)))
    for sub in token_budget_batches([lengths[i] for i in live], budget):
        group = [live[j] for j in sub]
        width = max(lengths[i] for i in group)
        ids = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for r, i in enumerate(group):
            ids[r, : lengths[i]] = torch.tensor(rows[i][0])
            mask[r, : lengths[i]] = 1
        pad_tokens += len(group) * width - sum(lengths[i] for i in group)
        real_tokens += sum(lengths[i] for i in group)
        hidden = base(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        # positions t predict token t+1: keep t in [response_start - 1, len - 2]
        sel_r = torch.cat([torch.full((lengths[i] - rows[i][1],), r) for r, i in enumerate(group)])
        sel_t = torch.cat([torch.arange(rows[i][1] - 1, lengths[i] - 1) for i in group])
        if k > 0:
            tid, tlp = topk_logprobs(hidden[sel_r.to(device), sel_t.to(device)], head, k, chunk)
            tid, tlp = tid.cpu(), tlp.cpu()
        else:
            tid, tlp = torch.empty((len(sel_t), 0), dtype=torch.int64), torch.empty((len(sel_t), 0))
        start = 0
        for i in group:
            n = lengths[i] - rows[i][1]
            out[i] = (tid[start:start + n], tlp[start:start + n])
            start += n
    return out, pad_tokens, real_tokens
