"""Prompt rendering, the decode path and exact-match scoring of the fusion benchmark."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.bench import evaluate as ev
from pipeline.bench import tasks
from pipeline.errors import ConfigError
from pipeline.tiny.models import ensure_tiny

TOKENIZERS = ["tiny-gpt2-bpe", "tiny-llama-sp", "tiny-llama-pivot"]


@pytest.fixture(scope="module", params=TOKENIZERS)
def tok(request):
    return AutoTokenizer.from_pretrained(ensure_tiny(request.param))


@pytest.fixture(scope="module")
def records():
    return tasks.mixed("test", 100, seed=0)


def test_render_prompt(tok):
    text = ev.render_prompt(tok, "Compute (1 + 2) * 3.\n")
    if tok.chat_template:
        assert text.startswith("<|user|>\nCompute") and text.endswith("<|assistant|>\n")
    else:
        assert text == "Compute (1 + 2) * 3.\n"


def test_prompt_tokens_are_a_prefix_and_examples_are_short(tok, records):
    for r in records:
        ids, n_prompt = ev.encode_example(tok, r["prompt"], r["response"])
        head = tok(ev.render_prompt(tok, r["prompt"]), add_special_tokens=False)["input_ids"]
        assert ids[:n_prompt] == head  # what generation is given is exactly what training saw
        assert ids[-1] in ev.stop_ids(tok) and n_prompt < len(ids) - 1  # the turn's end token is trained too
        assert len(ids) <= 64
        assert tok.decode(ids[n_prompt:-1]) == r["response"]


def test_oracle_completions_score_one(tok, records):
    completions = []
    for i, r in enumerate(records):
        ids, n_prompt = ev.encode_example(tok, r["prompt"], r["response"])
        tail = [tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(ids[0]))] * (i % 3)  # junk after the stop
        completions.append(ev.decode_completion(tok, ids[n_prompt:] + tail))
    assert ev.score(records, completions) == {"arithmetic": 1.0, "dyck": 1.0}
    wrong = ["Answer: 1000"] * len(records)
    assert ev.score(records, wrong) == {"arithmetic": 0.0, "dyck": 0.0}


def test_score_length_mismatch():
    with pytest.raises(ConfigError, match="completions"):
        ev.score([{"skill": "dyck", "response": "Answer: )"}], [])


@pytest.mark.parametrize("name", ["tiny-gpt2-bpe", "tiny-llama-sp"])
def test_untrained_model_scores_in_range_and_batching_is_exact(name, records):
    path = ensure_tiny(name)
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    recs = records[:6]
    acc = ev.evaluate(model, tok, recs, max_new_tokens=6, batch_size=4, k=2)
    assert set(acc) == {f"{s}/{m}" for s in ("arithmetic", "dyck") for m in ("em", "pass@2", "nll")}
    assert all(0.0 <= acc[f"{s}/{m}"] <= 1.0 for s in ("arithmetic", "dyck") for m in ("em", "pass@2"))
    assert all(acc[f"{s}/nll"] > 0 for s in ("arithmetic", "dyck"))
    prompts = [r["prompt"] for r in recs]
    batched = ev.generate(model, tok, prompts, max_new_tokens=6, batch_size=6)
    single = [ev.generate(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert batched == single  # left padding changes nothing


def test_evaluate_loads_a_folder(records):
    acc = ev.evaluate(ensure_tiny("tiny-llama-pivot"), None, records[:2], max_new_tokens=2, k=0)
    assert set(acc) == {"arithmetic/em", "dyck/em", "arithmetic/nll", "dyck/nll"}


def test_chat_template_examples_end_with_the_turns_end_token():
    tok = AutoTokenizer.from_pretrained(ensure_tiny("tiny-llama-sp"))
    ids, n_prompt = ev.encode_example(tok, "Close the brackets: ( [\n", "Answer: ] )")
    assert tok.convert_ids_to_tokens(ids[-1]) == "<|end|>" and tok.eos_token_id not in ids


def test_pass_at_k_and_nll_against_a_plain_reference(records):
    path = ensure_tiny("tiny-llama-pivot")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    recs = [r for r in tasks.generate("evens", "test", 3)] + records[:2]
    nll = ev.answer_nll(model, tok, recs, batch_size=5)
    # reference: one sequence at a time, p(set) = sum over its orders
    ref: dict = {}
    for r in recs:
        total = []
        for resp in tasks.valid_responses(r["skill"], r["prompt"], r["response"]):
            ids, n_prompt = ev.encode_example(tok, r["prompt"], resp)
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), -1)
            total.append(sum(lp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))))
        ref.setdefault(r["skill"], []).append(-torch.logsumexp(torch.tensor(total), 0).item())
    assert nll == pytest.approx({s: sum(v) / len(v) for s, v in ref.items()}, rel=1e-4)
    right = [[("Answer: 1", r["response"])[j == 1] for j in range(3)] for r in recs]
    wrong = [["Answer: 1"] * 3 for _ in recs]
    assert set(ev.pass_at_k(recs, right).values()) == {1.0} and set(ev.pass_at_k(recs, wrong).values()) == {0.0}
