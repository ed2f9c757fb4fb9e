"""The device check's verdict: every figure it owes, read from its JSON lines, held against that figure's goal.

    python tests/gpu/goals.py LOG      # LOG: the device check's stdout; prints one JSON line, exits 1 on a miss

A figure line carries ``"goal": ">=0.85"`` or ``"<=0.05"`` beside its ``"value"``. The verdict names each goal met
or missed, each owed figure that never came (a part that died or ran out of time), and each part's error line, so
the first GPU run answers the issue's questions in one line instead of a scroll of numbers.
"""

from __future__ import annotations

import json
import operator
import sys

# (check, figure) pairs the GPU run must print, each with a goal: the targets (job/bare ratio, MFU,
# GLD and shared top-k cost against full-vocabulary CE)
OWED = (("capture", "job_over_bare"), ("capture", "mfu_bare"), ("capture", "mfu_job"),
        ("losses", "gld_rank_fwd_bwd_over_ce"), ("losses", "gld_vocab_fwd_bwd_over_ce"),
        ("losses", "topk_fwd_bwd_over_ce"))
OPS = {">=": operator.ge, "<=": operator.le}


def parse_goal(goal: str) -> tuple[str, float]:
    """``">=0.85"`` → ``(">=", 0.85)``; anything else is a bug in the check that printed it."""
    for op in OPS:
        if goal.startswith(op):
            return op, float(goal[len(op):])
    raise ValueError(f"goal {goal!r}: expected '>=' or '<=' and a number")


def verdict(lines: list[dict], owed=OWED) -> dict:
    """``{"check": "goals", "met": [...], "missed": [...], "absent": [...], "errors": [...], "ok": bool}``."""
    met, missed, seen, errors = [], [], set(), []
    for line in lines:
        if "error" in line:
            errors.append(f"{line.get('check', '?')}: {line['error']}")
        if "goal" not in line or "figure" not in line:
            continue
        op, target = parse_goal(line["goal"])
        name = f"{line.get('check', '?')}/{line['figure']}"
        value = line.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # a check that printed no number
            errors.append(f"{name}: value {value!r} is not a number")
            continue
        seen.add((line.get("check"), line["figure"]))
        row = {"figure": name, "value": value, "goal": line["goal"]}
        (met if OPS[op](value, target) else missed).append(row)
    absent = [f"{c}/{f}" for c, f in owed if (c, f) not in seen]
    return {"check": "goals", "ok": not (missed or absent or errors), "met": met, "missed": missed,
            "absent": absent, "errors": errors}


def read_lines(text: str) -> list[dict]:
    """The JSON object lines of a log; other lines (a library's chatter on stdout, progress bars) are skipped."""
    out = []
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw.startswith("{"):
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict):
            out.append(line)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        v = verdict(read_lines(f.read()))
    print(json.dumps(v), flush=True)
    return 0 if v["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
