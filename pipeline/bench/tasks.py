"""Problem generators for the fusion benchmark's skills, with a split that can never leak test into training.

- ``arithmetic``: 2–3 chained operations on 1..9 with every intermediate in 1..29, e.g. prompt
  ``"Compute ((7 + 5) - 3) * 2.\\n"``, response ``"(12 - 3) * 2 = 9 * 2 = 18; Answer: 18"``.
- ``dyck``: an open prefix over four bracket types, e.g. prompt ``"Close the brackets: ( [ { } <\\n"``, response
  ``"Answer: > ] )"``.
- ``evens``: several right answers. The even numbers of a list, in **any** order, e.g. prompt
  ``"List the even numbers in 17 4 22 9 8.\n"``, responses ``"Answer: 4 22 8"``, ``"Answer: 8 4 22"``, ... One
  problem has ``m!`` valid responses (``valid_responses``); a generated record holds one order drawn at random, and
  a model trained on many such records learns to spread its probability over every even number still to list.

``corrupt`` turns a response into a wrong one of the same format (the noisy-label setting).

The split of a problem is a function of its **canonical form** only (the problem's symbols with the wording and
spaces removed, see ``canonical``): a SHA-256 of it picks the bucket. Seeds choose which problems of a bucket are
drawn, never the bucket, so no seed, size or rewording can put a test problem into ``train`` or ``fusion``.
"""

from __future__ import annotations

import hashlib
import random
import re

from pipeline.errors import ConfigError
from pipeline.tiny.corpus import sentence

SKILLS = ("arithmetic", "dyck", "evens")
# train: sources and the pivot's warm-up; fusion: the prompts the fusion jobs capture and train on; val: choosing the
# distillation settings; test: evaluation (run once per seed with the settings chosen on val).
SPLITS = {"train": 0.55, "fusion": 0.2, "val": 0.05, "test": 0.2}
VERSION = 3  # bump when a generator or the bucket function changes (cached sources key on it)

_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_PROBLEM_CHARS = re.compile(r"[0-9+\-*()\[\]{}<>]")
_ARITH_ANSWER = re.compile(r"Answer:\s*(-?\d+)")
_DYCK_ANSWER = re.compile(r"Answer:((?:\s*[)\]}>])+)")
_LIST_ANSWER = re.compile(r"Answer:((?:[ ]\d+)*)")
_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def canonical(skill: str, prompt: str) -> str:
    """The problem a prompt states, independent of wording and spacing: ``"arithmetic:((7+5)-3)*2"``; for
    ``evens`` the sorted numbers (``"evens:4,8,9,17,22"``), so a reordered list is the same problem."""
    _check_skill(skill)
    if skill == "evens":
        return f"evens:{','.join(map(str, sorted(int(x) for x in re.findall(r'[0-9]+', prompt))))}"
    return f"{skill}:{''.join(_PROBLEM_CHARS.findall(prompt))}"


def split_of(skill: str, prompt: str) -> str:
    """Bucket (``train``/``fusion``/``test``) of a problem, from a hash of its canonical form."""
    digest = hashlib.sha256(canonical(skill, prompt).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, frac in SPLITS.items():
        edge += frac
        if u < edge:
            return name
    return name  # u within float rounding of 1.0


def arithmetic_problem(rng: random.Random, max_value: int = 29) -> tuple[str, str]:
    """One chained-arithmetic prompt and its worked response; operands 1..9, every result in 1..``max_value``.

    The response rewrites the expression once per step, evaluating the innermost operation, so a step copies the
    rest of the previous line (``((7 + 5) - 3) * 2`` -> ``(12 - 3) * 2 = 9 * 2 = 18; Answer: 18``).
    """
    value = rng.randint(1, 9)
    head, ops = value, []
    for _ in range(rng.choice((2, 3))):
        # Choose the operator first, then an operand that keeps the result in range, so all three stay common.
        choices = {op: [b for b in range(1, 10) if 1 <= f(value, b) <= max_value] for op, f in _OPS.items()}
        op = rng.choice([op for op, bs in choices.items() if bs])
        ops.append((op, rng.choice(choices[op])))
        value = _OPS[op](value, ops[-1][1])
    steps, value = [], head
    for i, (op, b) in enumerate(ops):
        value = _OPS[op](value, b)
        steps.append(_render(value, ops[i + 1:]))
    return f"Compute {_render(head, ops)}.\n", f"{' = '.join(steps)}; Answer: {value}"


def _render(head: int, ops: list[tuple[str, int]]) -> str:
    expr = str(head)
    for i, (op, b) in enumerate(ops):
        expr = f"{expr} {op} {b}" if i == 0 else f"({expr}) {op} {b}"
    return expr


def dyck_problem(rng: random.Random, max_len: int = 14, max_depth: int = 8) -> tuple[str, str]:
    """One unbalanced bracket prefix and the closing sequence that completes it."""
    stack, prefix = [], []
    for _ in range(rng.randint(3, max_len)):
        if stack and (len(stack) >= max_depth or rng.random() < 0.35):
            prefix.append(_PAIRS[stack.pop()])
        else:
            stack.append(rng.choice(list(_PAIRS)))
            prefix.append(stack[-1])
    if not stack:
        stack.append(rng.choice(list(_PAIRS)))
        prefix.append(stack[-1])
    closing = " ".join(_PAIRS[o] for o in reversed(stack))
    return f"Close the brackets: {' '.join(prefix)}\n", f"Answer: {closing}"


def evens_problem(rng: random.Random, max_evens: int = 4, max_value: int = 29) -> tuple[str, str]:
    """A list of 4..7 distinct numbers in 1..``max_value`` holding 1..``max_evens`` even ones, and one order of its
    evens.

    At most 4 evens keeps every problem's valid responses (``m!`` orders) few enough to score them all. Numbers up
    to 29 (not 99): the quick source's failures were copying ones (repeating a listed number, listing one not in
    the list), and fewer distinct number tokens make the copy easier at this size — val exact match after 1000 steps
    at the quick shape: 52 % with 1..99, 65 % with 1..49, 82 % with 1..29 (2026-12-01). C(29, 7) lists are still
    far more than any split needs.
    """
    n = rng.randint(4, 7)
    m = rng.randint(1, min(max_evens, n - 1))
    evens = rng.sample(range(2, max_value + 1, 2), m)
    nums = evens + rng.sample(range(1, max_value + 1, 2), n - m)
    rng.shuffle(nums)
    order = list(evens)
    rng.shuffle(order)
    return f"List the even numbers in {' '.join(map(str, nums))}.\n", "Answer: " + " ".join(map(str, order))


def valid_responses(skill: str, prompt: str, response: str) -> list[str]:
    """Every right response to a problem: all orders of the evens for ``evens``, else the response itself."""
    if skill != "evens":
        return [response]
    import itertools

    evens = [int(x) for x in re.findall(r"\d+", prompt.split(" in ", 1)[1]) if int(x) % 2 == 0]
    return ["Answer: " + " ".join(map(str, p)) for p in itertools.permutations(evens)]


_GENERATORS = {"arithmetic": arithmetic_problem, "dyck": dyck_problem, "evens": evens_problem}


def generate(skill: str, split: str, n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct problems of ``skill`` from bucket ``split`` as ``{"id","prompt","response","skill"}`` records.

    Deterministic in (skill, split, n, seed); a larger ``n`` extends a smaller one with the same seed.
    """
    _check_skill(skill)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    rng = random.Random(f"{skill}/{split}/{seed}")
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ConfigError(f"only {len(out)} distinct {skill} problems found in split {split!r} after "
                              f"{tries} draws; ask for fewer than {n}")
        prompt, response = _GENERATORS[skill](rng)
        key = canonical(skill, prompt)
        if key in seen or split_of(skill, prompt) != split:
            continue
        seen.add(key)
        out.append({"id": f"{skill[:5]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}", "prompt": prompt,
                    "response": response, "skill": skill})
    return out


def mixed(split: str, n_per_skill: int, seed: int = 0, skills: tuple[str, ...] = SKILLS[:2]) -> list[dict]:
    """``skills``' records of ``split``, interleaved (arithmetic, dyck, arithmetic, ...)."""
    per = [generate(skill, split, n_per_skill, seed) for skill in skills]
    return [r for group in zip(*per) for r in group]


def general_records(n: int, seed: int = 0) -> list[dict]:
    """Short English-like chat records (skill ``"general"``) for the pivot's generic warm-up; no task content."""
    rng = random.Random(f"general/{seed}")
    out = []
    for i in range(n):
        reply = " ".join(sentence(rng) for _ in range(rng.randint(1, 2)))
        out.append({"id": f"gen-{seed}-{i:06d}", "prompt": f"{sentence(rng)}\n", "response": reply,
                    "skill": "general"})
    return out


def answer_of(skill: str, text: str) -> str | None:
    """The final answer stated in ``text`` (a response or a generation), normalised; ``None`` when there is none.

    arithmetic: the integer after the first ``Answer:``. dyck: the run of closing brackets after the first
    ``Answer:``, single-spaced; extra closers are kept, so closing too much is wrong. evens: the numbers after the
    first ``Answer:`` as a sorted list (any order is right; a repeated or missing number is wrong).
    """
    _check_skill(skill)
    m = {"arithmetic": _ARITH_ANSWER, "dyck": _DYCK_ANSWER, "evens": _LIST_ANSWER}[skill].search(text)
    if m is None:
        return None
    if skill == "arithmetic":
        return str(int(m.group(1)))
    if skill == "evens":
        nums = sorted(int(x) for x in m.group(1).split())
        return " ".join(map(str, nums)) if nums else None
    return " ".join(re.sub(r"\s", "", m.group(1)))


def corrupt(record: dict, rng: random.Random) -> dict:
    """The record with a wrong response of the same format: arithmetic's final answer off by 1..3, Dyck's closers
    with one dropped or swapped, an even number left out (or an odd one added when there is only one)."""
    skill, resp = record["skill"], record["response"]
    if skill == "arithmetic":
        head, value = resp.rsplit("Answer: ", 1)
        wrong = int(value) + rng.choice((-3, -2, -1, 1, 2, 3))
        resp = f"{head}Answer: {wrong}"
    elif skill == "dyck":
        closers = resp.split(" ")[1:]
        i = rng.randrange(len(closers))
        if len(closers) > 1 and rng.random() < 0.5:
            del closers[i]
        else:
            closers[i] = rng.choice([c for c in ")]}>" if c != closers[i]])
        resp = "Answer: " + " ".join(closers)
    else:
        nums = resp.split(" ")[1:]
        if len(nums) > 1:
            del nums[rng.randrange(len(nums))]
        else:
            nums.append(str(rng.randrange(1, 100, 2)))
        resp = "Answer: " + " ".join(nums)
    if answer_of(skill, resp) == answer_of(skill, record["response"]):
        raise ConfigError(f"corrupt left {record['id']} right")  # cannot happen: every branch changes the answer
    return record | {"response": resp, "corrupted": True}


def _check_skill(skill: str) -> None:
    if skill not in _GENERATORS:
        raise ConfigError(f"skill must be one of {list(SKILLS)}, got {skill!r}")
