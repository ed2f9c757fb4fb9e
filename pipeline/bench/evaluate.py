"""The benchmark's metrics per skill — greedy exact match, sampled pass@k, held-out negative log-likelihood of the
gold answer(s) — with the rendering shared by training.

Prompt/response boundary (the same as capture's, and the one ``source_train`` trains on):

- tokenizer **without** a chat template: the text is the plain concatenation ``prompt + response``; the task prompts
  end with ``"\\n"``, so the boundary falls between pre-tokens and the prompt's tokens are a prefix of the full text's.
- tokenizer **with** a chat template: ``apply_chat_template([{"role": "user", "content": prompt}],
  add_generation_prompt=True)`` is the prompt; the response is the text that follows it in the full rendering of the
  user + assistant turns, and the token that closes the turn (``<|end|>``) is its last target — exactly the
  positions capture keeps.

In both cases the text is tokenized without added special tokens; a plain rendering ends with ``eos``, a template's
with its end-of-turn token, and generation stops at either.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.bench.tasks import answer_of, valid_responses
from pipeline.errors import ConfigError

_END_OF_TURN = "<|end|>"  # the project's chat template closes turns with it (pipeline/tiny/tokenizers.py)


def render_prompt(tok, prompt: str) -> str:
    """The text that precedes the response for this tokenizer (see the module docstring)."""
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
    return prompt


ENCODING = 2  # bump when encode_example changes what a model is trained on (bench model cache keys hold it)


def encode_example(tok, prompt: str, response: str) -> tuple[list[int], int]:
    """Token ids of the rendered example — prompt + response + its end token — and how many belong to the prompt.

    The full text is tokenized once; a token is a response token when it starts at or after the end of the
    rendered prompt (character offsets), which is how capture selects the positions it keeps. The end token is
    ``eos`` for a plain rendering and, with a chat template, the token the template closes the turn with.
    """
    head = render_prompt(tok, prompt)
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": prompt},
                                        {"role": "assistant", "content": response}], tokenize=False)
        if not text.startswith(head + response):
            raise ConfigError("the chat template does not keep the response verbatim after the generation prompt")
    else:
        text = head + response
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in enc["offset_mapping"]]
    n_prompt = sum(1 for start in starts if start < len(head))
    n_keep = sum(1 for start in starts if start < len(head) + len(response))
    ids = list(enc["input_ids"])
    end = ids[n_keep] if getattr(tok, "chat_template", None) else tok.eos_token_id
    if end not in stop_ids(tok):
        raise ConfigError(f"the rendering closes the response with token {end}, not with one of {stop_ids(tok)}")
    return ids[:n_keep] + [end], n_prompt


def stop_ids(tok) -> list[int]:
    """Token ids that end a generation: eos, plus the chat template's end-of-turn token when it has one."""
    ids = [tok.eos_token_id]
    if getattr(tok, "chat_template", None) and _END_OF_TURN in tok.get_vocab():
        ids.append(tok.convert_tokens_to_ids(_END_OF_TURN))
    return ids


def decode_completion(tok, ids: list[int]) -> str:
    """Text of generated ids up to (excluding) the first stop token."""
    stops = set(stop_ids(tok))
    cut = next((i for i, t in enumerate(ids) if t in stops), len(ids))
    return tok.decode(ids[:cut], skip_special_tokens=True)


@torch.no_grad()
def generate(model, tok, prompts: list[str], max_new_tokens: int = 48, batch_size: int = 64, samples: int = 0,
             seed: int = 0) -> list[str] | list[list[str]]:
    """Completions of ``prompts`` (rendered as in training), batched with left padding: greedy (``samples=0``, one
    string per prompt) or ``samples`` draws at temperature 1 per prompt (a list per prompt, seeded by ``seed``)."""
    if max_new_tokens < 1 or batch_size < 1 or samples < 0:
        raise ConfigError(f"max_new_tokens and batch_size must be >= 1 and samples >= 0, got {max_new_tokens}, "
                          f"{batch_size}, {samples}")
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    # Similar lengths in a batch keep left padding short; results go back in input order.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    n = max(samples, 1)
    out: list = [None] * len(prompts)
    if samples:
        torch.manual_seed(seed)
    for lo in range(0, len(order), max(1, batch_size // n)):
        idx = order[lo:lo + max(1, batch_size // n)]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]):] = 1
        extra = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                 "num_return_sequences": n} if samples else {"do_sample": False}
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             eos_token_id=stop_ids(tok), pad_token_id=pad, **extra)
        for row, i in enumerate(idx):
            texts = [decode_completion(tok, gen[row * n + j, width:].tolist()) for j in range(n)]
            out[i] = texts if samples else texts[0]
    return out


def _correct(rec: dict, text: str) -> bool:
    got = answer_of(rec["skill"], text)
    return got is not None and got == answer_of(rec["skill"], rec["response"])


def score(records: list[dict], completions: list[str]) -> dict[str, float]:
    """Exact-match accuracy per skill: the completion's answer equals the reference response's answer (for
    ``evens``: the same set of numbers, in any order)."""
    if len(records) != len(completions):
        raise ConfigError(f"{len(records)} records but {len(completions)} completions")
    hits: dict[str, list[int]] = {}
    for rec, text in zip(records, completions):
        hits.setdefault(rec["skill"], []).append(int(_correct(rec, text)))
    return {skill: sum(h) / len(h) for skill, h in sorted(hits.items())}


def pass_at_k(records: list[dict], samples: list[list[str]]) -> dict[str, float]:
    """Share of problems per skill with at least one right answer among its sampled completions."""
    return score(records, [next((t for t in texts if _correct(r, t)), texts[0] if texts else "")
                           for r, texts in zip(records, samples)])


@torch.no_grad()
def answer_nll(model, tok, records: list[dict], batch_size: int = 64) -> dict[str, float]:
    """Mean negative log-likelihood (nats per problem) of the gold answer per skill: ``-log Σ_y p(y | prompt)`` over
    every valid response y (one for arithmetic and Dyck, every order of the evens), end token included.

    In nats per problem rather than per token, so models with different tokenizers are comparable.
    """
    model.eval()
    seqs, owner = [], []
    for i, rec in enumerate(records):
        for resp in valid_responses(rec["skill"], rec["prompt"], rec["response"]):
            seqs.append(encode_example(tok, rec["prompt"], resp))
            owner.append(i)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    logp = torch.empty(len(seqs), dtype=torch.float64)
    order = sorted(range(len(seqs)), key=lambda j: len(seqs[j][0]))
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        width = max(len(seqs[j][0]) for j in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        tgt = torch.zeros((len(idx), width), dtype=torch.bool)
        for row, j in enumerate(idx):
            seq, n_prompt = seqs[j]
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
            tgt[row, n_prompt:len(seq)] = True
        lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        tok_lp = lp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        logp[idx] = torch.where(tgt[:, 1:], tok_lp, 0.0).sum(-1).double()
    per: dict[str, list[float]] = {}
    own = torch.tensor(owner)
    for i, rec in enumerate(records):
        per.setdefault(rec["skill"], []).append(-torch.logsumexp(logp[own == i], 0).item())
    return {skill: sum(v) / len(v) for skill, v in sorted(per.items())}


def evaluate(model, tok, records: list[dict], max_new_tokens: int = 48, batch_size: int = 64, k: int = 4,
             seed: int = 0, nll: bool = True) -> dict[str, float]:
    """Metrics per skill of ``model`` (an HF causal LM, or a folder holding one) on ``records``:
    ``<skill>/em`` (greedy exact match), ``<skill>/pass@<k>`` (``k`` samples at temperature 1; skipped when
    ``k=0``) and ``<skill>/nll`` (see ``answer_nll``; skipped when ``nll`` is false)."""
    if isinstance(model, (str, Path)):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = tok or AutoTokenizer.from_pretrained(model)
        model = AutoModelForCausalLM.from_pretrained(model)
    prompts = [r["prompt"] for r in records]
    out = {f"{s}/em": v for s, v in score(records, generate(model, tok, prompts, max_new_tokens, batch_size)).items()}
    if k:
        drawn = generate(model, tok, prompts, max_new_tokens, batch_size, samples=k, seed=seed)
        out |= {f"{s}/pass@{k}": v for s, v in pass_at_k(records, drawn).items()}
    if nll:
        out |= {f"{s}/nll": v for s, v in answer_nll(model, tok, records, batch_size).items()}
    return out
