"""Generators, the hash split and answer extraction of the fusion benchmark's tasks."""

import math
import random
import re

import pytest

from pipeline.bench import tasks
from pipeline.errors import ConfigError


def _balanced(seq: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{", ">": "<"}, []
    for ch in seq:
        if ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
        else:
            stack.append(ch)
    return not stack


@pytest.mark.parametrize("skill", tasks.SKILLS)
def test_generate_is_deterministic_and_extends(skill):
    a = tasks.generate(skill, "train", 200, seed=3)
    assert a == tasks.generate(skill, "train", 200, seed=3)
    assert tasks.generate(skill, "train", 50, seed=3) == a[:50]
    assert a != tasks.generate(skill, "train", 200, seed=4)
    assert len({r["id"] for r in a}) == 200
    assert all(set(r) == {"id", "prompt", "response", "skill"} and r["skill"] == skill for r in a)


@pytest.mark.parametrize("skill", tasks.SKILLS)
def test_splits_are_disjoint_whatever_the_seed(skill):
    keys = {}
    for split in tasks.SPLITS:
        recs = [r for seed in (0, 1) for r in tasks.generate(skill, split, 300, seed=seed)]
        assert all(tasks.split_of(skill, r["prompt"]) == split for r in recs)
        keys[split] = {tasks.canonical(skill, r["prompt"]) for r in recs}
    assert not keys["test"] & (keys["train"] | keys["fusion"] | keys["val"])
    assert not keys["val"] & (keys["train"] | keys["fusion"])
    assert not keys["train"] & keys["fusion"]


def test_split_ignores_wording_and_spacing():
    a, b = "Compute ((7 + 5) - 3) * 2.\n", "compute ((7+5)-3)*2"
    assert tasks.canonical("arithmetic", a) == tasks.canonical("arithmetic", b) == "arithmetic:((7+5)-3)*2"
    assert tasks.split_of("arithmetic", a) == tasks.split_of("arithmetic", b)
    assert tasks.canonical("dyck", "Close the brackets: ( [ {\n") == "dyck:([{"


def test_split_fractions_roughly_hold():
    rng = random.Random(0)
    counts = {s: 0 for s in tasks.SPLITS}
    for _ in range(4000):
        counts[tasks.split_of("dyck", tasks.dyck_problem(rng)[0])] += 1
    for split, frac in tasks.SPLITS.items():
        assert abs(counts[split] / 4000 - frac) < 0.05, counts


def test_arithmetic_responses_are_correct():
    for r in tasks.generate("arithmetic", "test", 300):
        expr = tasks.canonical("arithmetic", r["prompt"]).split(":", 1)[1]
        assert set(expr) <= set("0123456789+-*()")
        value = eval(expr)  # noqa: S307 - digits, operators and parentheses only (checked above)
        assert tasks.answer_of("arithmetic", r["response"]) == str(value)
        steps = r["response"].split("; Answer:")[0].split(" = ")
        n_ops = sum(expr.count(op) for op in "+-*")
        assert n_ops in (2, 3) and len(steps) == n_ops  # one rewrite per operation, the last one is the value
        assert [sum(s.count(op) for op in "+-*") for s in steps] == list(range(n_ops - 1, -1, -1))
        assert all(eval(s) == value for s in steps)  # noqa: S307
        assert all(1 <= int(n) <= 29 for n in re.findall(r"\d+", r["response"]))


def test_dyck_responses_close_the_prefix():
    for r in tasks.generate("dyck", "test", 300):
        prefix = tasks.canonical("dyck", r["prompt"]).split(":", 1)[1]
        closing = tasks.answer_of("dyck", r["response"]).replace(" ", "")
        assert closing and _balanced(prefix + closing)


def test_evens_has_every_order_as_a_right_answer():
    recs = tasks.generate("evens", "test", 300)
    assert tasks.canonical("evens", "List the even numbers in 9 4 22.\n") == "evens:4,9,22"
    for r in recs:
        nums = [int(x) for x in r["prompt"].split(" in ", 1)[1].rstrip(".\n").split()]
        evens = sorted(x for x in nums if x % 2 == 0)
        assert 1 <= len(evens) <= 4 and len(set(nums)) == len(nums)
        assert tasks.answer_of("evens", r["response"]) == " ".join(map(str, evens))
        valid = tasks.valid_responses("evens", r["prompt"], r["response"])
        assert r["response"] in valid and len(set(valid)) == math.factorial(len(evens))
        assert {tasks.answer_of("evens", v) for v in valid} == {tasks.answer_of("evens", r["response"])}
    orders = {r["response"].split(" ", 1)[1] != " ".join(sorted(r["response"].split()[1:], key=int)) for r in recs}
    assert orders == {True, False}  # not always sorted: one order drawn at random
    assert tasks.answer_of("evens", "Answer: 8 4 4") != tasks.answer_of("evens", "Answer: 4 8")
    assert tasks.answer_of("evens", "Answer:") is None


@pytest.mark.parametrize("skill", tasks.SKILLS)
def test_corrupt_gives_a_wrong_answer_in_the_same_format(skill):
    rng = random.Random(0)
    for r in tasks.generate(skill, "fusion", 200):
        bad = tasks.corrupt(r, rng)
        got = tasks.answer_of(skill, bad["response"])
        assert got is not None and got != tasks.answer_of(skill, r["response"]) and bad["corrupted"]
        assert bad["prompt"] == r["prompt"] and bad["id"] == r["id"]


def test_answer_of():
    assert tasks.answer_of("arithmetic", "3 + 4 = 7; Answer: 7") == "7"
    assert tasks.answer_of("arithmetic", "Answer:  -12 and then more 3") == "-12"
    assert tasks.answer_of("arithmetic", "Answer: 007") == "7"
    assert tasks.answer_of("arithmetic", "3 + 4 = 7") is None
    assert tasks.answer_of("dyck", "Answer: ) ] }") == ") ] }"
    assert tasks.answer_of("dyck", "Answer:)]}  Close the brackets") == ") ] }"
    assert tasks.answer_of("dyck", "Answer: ) ] } >") != tasks.answer_of("dyck", "Answer: ) ] }")
    assert tasks.answer_of("dyck", "Answer: ( )") is None
    assert tasks.answer_of("dyck", "") is None


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="skill"):
        tasks.generate("poetry", "train", 1)
    with pytest.raises(ConfigError, match="split"):
        tasks.generate("dyck", "valid", 1)
    with pytest.raises(ConfigError, match="skill"):
        tasks.answer_of("poetry", "Answer: 1")


def test_mixed_and_general_records():
    recs = tasks.mixed("fusion", 10, seed=1)
    assert [r["skill"] for r in recs[:4]] == ["arithmetic", "dyck", "arithmetic", "dyck"] and len(recs) == 20
    gen = tasks.general_records(5, seed=1)
    assert gen == tasks.general_records(5, seed=1) and all(r["skill"] == "general" for r in gen)
