"""Deterministic synthetic text used to train the tiny tokenizers and as the quickstart's default dataset."""

from __future__ import annotations

import random

_SUBJECTS = ["the model", "a teacher", "the student", "our pivot", "each source", "the graph", "a shard", "the cluster"]
_VERBS = ["predicts", "aligns", "fuses", "reads", "writes", "compresses", "ranks", "samples"]
_OBJECTS = ["the next token", "top-k logits", "every response", "a long sequence", "the vocabulary",
            "the parquet file", "its own template", "many positions"]
_ADVERBS = ["quickly", "exactly", "twice", "carefully", "in parallel", "on the CPU", "without loss", "again"]
_WORDS = ["naïve", "café", "über", "déjà vu", "日本語", "emoji 🙂", "Ω-space", "straße"]


def sentence(rng: random.Random) -> str:
    """One short English-like sentence, sometimes with non-ASCII words (exercises byte fallback)."""
    s = f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ADVERBS)}"
    if rng.random() < 0.2:
        s += f", {rng.choice(_WORDS)}"
    return s + "."


def arithmetic(rng: random.Random) -> tuple[str, str]:
    """A multi-step arithmetic prompt and its worked answer."""
    a, b, c = rng.randint(0, 99), rng.randint(0, 99), rng.randint(1, 9)
    op = rng.choice(["+", "-"])
    ab = a + b if op == "+" else a - b
    return f"Compute ({a} {op} {b}) * {c}.", f"({a} {op} {b}) = {ab}; {ab} * {c} = {ab * c}. Answer: {ab * c}"


def dyck(rng: random.Random) -> tuple[str, str]:
    """A bracket prefix and the closing sequence that completes it."""
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    stack, prefix = [], []
    for _ in range(rng.randint(2, 10)):
        if stack and rng.random() < 0.4:
            prefix.append(pairs[stack.pop()])
        else:
            o = rng.choice(list(pairs))
            stack.append(o)
            prefix.append(o)
    if not stack:
        stack.append("(")
        prefix.append("(")
    closing = "".join(pairs[o] for o in reversed(stack))
    return f"Close the brackets: {' '.join(prefix)}", f"{' '.join(closing)}"


def records(n: int, seed: int = 0) -> list[dict]:
    """`n` prompt/response records with stable ids, mixing chat, arithmetic and bracket tasks."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            prompt, response = f"Say something about {rng.choice(_OBJECTS)}.", " ".join(
                sentence(rng) for _ in range(rng.randint(1, 3)))
        elif kind == 1:
            prompt, response = arithmetic(rng)
        else:
            prompt, response = dyck(rng)
        # prompts end with a newline: without a chat template the response follows the prompt directly
        out.append({"id": f"s{i:06d}", "prompt": prompt + "\n", "response": response})
    return out


def text_lines(n: int, seed: int = 0) -> list[str]:
    """Training text for tokenizers: prompts and responses as plain lines."""
    return [f"{r['prompt']}{r['response']}" for r in records(n, seed)]


_SCRIPTS = {  # (first code point, how many): CJK ideographs, Hangul syllables, emoji, accented Latin letters
    "cjk": (0x4E00, 400), "hangul": (0xAC00, 300), "emoji": (0x1F600, 60), "latin": (0x00C0, 64)}


def multilingual_lines(n: int, seed: int = 0) -> list[str]:
    """Lines mixing English-like sentences with CJK, Hangul, emoji and accented words (multi-byte UTF-8 tokens)."""
    rng = random.Random(seed)

    def word(script: str) -> str:
        first, count = _SCRIPTS[script]
        chars = [chr(first + int(rng.paretovariate(1.2)) % count) for _ in range(rng.randint(1, 4))]
        if script == "latin":  # accented letters inside ASCII words: café, naïve
            return "".join(c + rng.choice("aeinorst") for c in chars)
        return "".join(chars)

    return [sentence(rng) + " " + " ".join(word(rng.choice(list(_SCRIPTS))) for _ in range(rng.randint(2, 8)))
            for _ in range(n)]
