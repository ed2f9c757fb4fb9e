"""Render a sample with a model's own chat template (or plain concatenation) and tokenize it with offsets.

The response text is kept byte-identical for every model: a template that rewrites it is an error. Positions kept for
capture are those whose *target* is a response token; their character spans are stored relative to the response text
so that align can match tokenisations of different models character by character. A response token that begins
inside the prompt (a byte-level ``.\n\n`` when the prompt ends with ``.\n`` and the response starts with ``\n``)
keeps its true, negative start: it does not start at the same byte as any token of another model's response.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.capture.inputs import Sample
from pipeline.errors import ConfigError, InputError

TURN_SEPARATOR = "\n"  # between prompt turns when a tokenizer has no chat template; the response follows directly


@dataclass
class Tokenized:
    """One sample tokenised for one model."""

    input_ids: list[int]
    response_start: int  # index of the first response token (≥ 1: it is predicted from the position before)
    char_start: list[int] = field(default_factory=list)  # per response token, relative to the response text (< 0:
    # the token begins inside the prompt)
    char_end: list[int] = field(default_factory=list)
    status: str = "ok"  # ok | truncated | skipped

    @property
    def n_positions(self) -> int:
        """Positions whose target is a response token."""
        return max(len(self.input_ids) - self.response_start, 0)


def uses_template(tok, chat_template: str) -> bool:
    """Whether ``tok`` renders with its chat template under setting ``chat_template`` (auto|always|none)."""
    has = getattr(tok, "chat_template", None) is not None
    if chat_template == "always" and not has:
        raise ConfigError("chat_template=always but the tokenizer has no chat template")
    return has and chat_template != "none"


def render(tok, sample: Sample, use_template: bool) -> tuple[str, int]:
    """The full text and the character index where the response starts in it."""
    resp = sample.response
    if use_template:
        msgs = [{"role": r, "content": c} for r, c in sample.messages]
        prefix = tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        text = tok.apply_chat_template(msgs, tokenize=False)
        if not text.startswith(prefix + resp):
            raise InputError(f"sample {sample.id!r}: the chat template does not keep the response verbatim after "
                             f"the generation prompt; set chat_template=none to capture with plain concatenation")
        return text, len(prefix)
    prefix = TURN_SEPARATOR.join(c for _, c in sample.messages[:-1])  # plain concatenation: prompt + response
    return prefix + resp, len(prefix)


def tokenize_sample(tok, sample: Sample, *, max_length: int, overlength: str, use_template: bool,
                    append_eos: bool = True, special_ids: frozenset[int] = frozenset()) -> Tokenized:
    """Tokenise ``sample`` and locate its response tokens; apply the over-length policy."""
    text, r0 = render(tok, sample, use_template)
    n_resp = len(sample.response)
    r1 = r0 + n_resp
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=not use_template)
    ids, offs = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    inside = [j for j, (a, b) in enumerate(offs) if b > r0 and a < r1 and b > a]
    if not inside:
        raise InputError(f"sample {sample.id!r}: no token of the response survives tokenisation")
    first, last = inside[0], inside[-1]
    starts = [min(offs[j][0] - r0, n_resp) for j in range(first, last + 1)]  # only the first can be < 0
    ends = [min(max(offs[j][1] - r0, 0), n_resp) for j in range(first, last + 1)]
    ids = ids[: last + 1]
    end_id = None
    if use_template:
        # the template's end-of-turn marker is part of what the model must learn to emit
        if last + 1 < len(enc["input_ids"]) and enc["input_ids"][last + 1] in special_ids:
            end_id = enc["input_ids"][last + 1]
    elif append_eos and tok.eos_token_id is not None:
        end_id = tok.eos_token_id
    if end_id is not None:
        ids.append(end_id)
        starts.append(n_resp)
        ends.append(n_resp)
    if first == 0:  # nothing before the first response token predicts it: drop it as a target
        first, starts, ends = 1, starts[1:], ends[1:]
    out = Tokenized(ids, first, starts, ends)
    if len(ids) > max_length:
        if overlength == "error":
            raise InputError(f"sample {sample.id!r}: {len(ids)} tokens exceed max_length={max_length}; "
                             f"set overlength=truncate or overlength=skip")
        n = len(ids) - first
        if overlength == "skip" or (first >= max_length and n >= max_length):
            return Tokenized([], 0, status="skipped")
        if first >= max_length:  # the prompt alone fills max_length: cut it from the left, keep the response whole
            return Tokenized(ids[-max_length:], max_length - n, starts, ends, status="truncated")
        keep = max_length - first
        out = Tokenized(ids[:max_length], first, starts[:keep], ends[:keep], status="truncated")
    return out
