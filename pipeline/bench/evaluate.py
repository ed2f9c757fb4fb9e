"""Exact-match accuracy per skill by batched greedy generation, with the prompt rendering shared by training.

Prompt/response boundary (the same as capture's, and the one ``source_train`` trains on):

- tokenizer **without** a chat template: the text is the plain concatenation ``prompt + response``; the task prompts
  end with ``"\\n"``, so the boundary falls between pre-tokens and the prompt's tokens are a prefix of the full text's.
- tokenizer **with** a chat template: ``apply_chat_template([{"role": "user", "content": prompt}],
  add_generation_prompt=True)`` is the prompt; the response is the text that follows it.

In both cases the prompt text is tokenized without added special tokens, training appends ``eos`` after the
response, and generation stops at ``eos`` (or the template's end-of-turn token, when there is one).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.bench.tasks import answer_of
from pipeline.errors import ConfigError

_END_OF_TURN = "<|end|>"  # the project's chat template closes turns with it (pipeline/tiny/tokenizers.py)


def render_prompt(tok, prompt: str) -> str:
    """The text that precedes the response for this tokenizer (see the module docstring)."""
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
    return prompt


def encode_example(tok, prompt: str, response: str) -> tuple[list[int], int]:
    """Token ids of rendered prompt + response + eos, and how many of them belong to the prompt.

    The full text is tokenized once; a token is a response token when it starts at or after the end of the
    rendered prompt (character offsets), which is how capture selects the positions it keeps.
    """
    head = render_prompt(tok, prompt)
    enc = tok(head + response, add_special_tokens=False, return_offsets_mapping=True)
    n_prompt = sum(1 for start, _ in enc["offset_mapping"] if start < len(head))
    return list(enc["input_ids"]) + [tok.eos_token_id], n_prompt


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
def generate(model, tok, prompts: list[str], max_new_tokens: int = 48, batch_size: int = 64) -> list[str]:
    """Greedy completions of ``prompts`` (rendered as in training), batched with left padding."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ConfigError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    # Similar lengths in a batch keep left padding short; results go back in input order.
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]):] = 1
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_ids(tok), pad_token_id=pad)
        for row, i in enumerate(idx):
            out[i] = decode_completion(tok, gen[row, width:].tolist())
    return out


def score(records: list[dict], completions: list[str]) -> dict[str, float]:
    """Exact-match accuracy per skill: the completion's answer equals the reference response's answer."""
    if len(records) != len(completions):
        raise ConfigError(f"{len(records)} records but {len(completions)} completions")
    hits: dict[str, list[int]] = {}
    for rec, text in zip(records, completions):
        ref = answer_of(rec["skill"], rec["response"])
        got = answer_of(rec["skill"], text)
        hits.setdefault(rec["skill"], []).append(int(got is not None and got == ref))
    return {skill: sum(h) / len(h) for skill, h in sorted(hits.items())}


def evaluate(model, tok, records: list[dict], max_new_tokens: int = 48, batch_size: int = 64) -> dict[str, float]:
    """Exact-match accuracy per skill of ``model`` (an HF causal LM, or a folder holding one) on ``records``."""
    if isinstance(model, (str, Path)):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = tok or AutoTokenizer.from_pretrained(model)
        model = AutoModelForCausalLM.from_pretrained(model)
    completions = generate(model, tok, [r["prompt"] for r in records], max_new_tokens, batch_size)
    return score(records, completions)
