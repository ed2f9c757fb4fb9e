import pytest
import torch
from transformers import AutoTokenizer

from pipeline.capture.inputs import Sample
from pipeline.capture.render import tokenize_sample, uses_template
from pipeline.capture.topk import token_budget_batches, topk_logprobs
from pipeline.errors import InputError
from pipeline.tiny.models import ensure_tiny

RESP = "(12 + 30) = 42; 42 * 3 = 126. Answer: 126 café 🙂"


@pytest.fixture(scope="module", params=["tiny-gpt2-bpe", "tiny-llama-sp"])
def tok(request):
    return AutoTokenizer.from_pretrained(ensure_tiny(request.param))


def _tok(tok, sample, **kw):
    special = frozenset(i for i, t in tok.added_tokens_decoder.items() if t.special)
    args = dict(max_length=512, overlength="error", use_template=uses_template(tok, "auto"), special_ids=special)
    return tokenize_sample(tok, sample, **(args | kw))


def test_response_tokens_cover_the_response_exactly(tok):
    t = _tok(tok, Sample("a", (("user", "Compute (12 + 30) * 3."), ("assistant", RESP))))
    resp_ids = t.input_ids[t.response_start:]
    assert t.n_positions == len(resp_ids) == len(t.char_start) == len(t.char_end)
    text = tok.decode(resp_ids, skip_special_tokens=True)
    assert text.strip() == RESP
    # offsets tile the response: non-decreasing, inside [0, len], the end-of-turn target at len(resp)
    assert t.char_start[0] == 0 and t.char_end[-1] == len(RESP)
    assert all(a <= b for a, b in zip(t.char_start, t.char_end))
    assert all(0 <= a <= len(RESP) for a in t.char_start)
    assert resp_ids[-1] in (tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>"))


def test_overlength_policies(tok):
    s = Sample("long", (("user", "p"), ("assistant", "word " * 200)))
    with pytest.raises(InputError, match="sample 'long'.*exceed max_length=40"):
        _tok(tok, s, max_length=40)
    t = _tok(tok, s, max_length=40, overlength="truncate")
    assert t.status == "truncated" and len(t.input_ids) == 40 and len(t.char_start) == t.n_positions
    assert _tok(tok, s, max_length=40, overlength="skip").status == "skipped"


def test_truncate_cuts_a_long_prompt_from_the_left_and_keeps_the_response(tok):
    s = Sample("long-prompt", (("user", "word " * 200), ("assistant", "the answer is 42")))
    whole = _tok(tok, s, max_length=4096)
    n = whole.n_positions
    t = _tok(tok, s, max_length=n + 5, overlength="truncate")
    assert t.status == "truncated" and len(t.input_ids) == n + 5 and t.response_start == 5
    assert t.input_ids[t.response_start:] == whole.input_ids[whole.response_start:]
    assert (t.char_start, t.char_end) == (whole.char_start, whole.char_end)
    assert t.input_ids[:5] == whole.input_ids[whole.response_start - 5:whole.response_start]  # the prompt's end
    # the response alone does not fit: nothing sensible to keep
    assert _tok(tok, s, max_length=n, overlength="truncate").status == "skipped"


def test_chunked_topk_equals_full():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300, bias=False)
    h = torch.randn(37, 16)
    full = torch.log_softmax(head(h), -1).topk(7, -1)
    for chunk in (1, 5, 37, 100):
        ids, lps = topk_logprobs(h, head, 7, chunk)
        assert torch.equal(ids, full.indices)
        torch.testing.assert_close(lps, full.values)


def test_token_budget_batches_bound_tokens_and_padding():
    lengths = [5, 100, 7, 90, 6, 95, 8, 50]
    batches = token_budget_batches(lengths, budget=200)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) == 1 or longest * len(b) <= 200
        assert longest <= 1.25 * min(lengths[i] for i in b) or len(b) == 1
