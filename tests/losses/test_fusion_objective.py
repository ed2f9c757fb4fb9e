"""LossConfig validation and fusion_loss = λ-weighted sum of the individual terms."""

import dataclasses

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.losses import (
    LossConfig,
    TeacherInputs,
    chunked_head,
    concat_teacher_ids,
    fusion_loss,
    gld_rank_loss,
    gld_vocab_loss,
    kl_loss,
    loss_counts,
    sft_loss,
    uld_loss,
)


@pytest.mark.parametrize(
    "field,value",
    [("lambda_uld", -1.0), ("lambda_gld", float("nan")), ("k", 0), ("temperature", 0.0), ("zscore", "yes"),
     ("gld_space", "graph"), ("gld_normalize", "softmax"), ("source_selection", "best")],
)
def test_validate_names_the_field(field, value):
    LossConfig().validate()
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(LossConfig(), **{field: value}).validate()


def _setup(b=2, t=6, h=8, v=30, kt=5, seed=0, n_sources=2):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, h, generator=g, requires_grad=True)
    weight = torch.randn(v, h, generator=g) * 0.5
    targets = torch.randint(0, v, (b, t), generator=g)
    mask = torch.rand(b, t, generator=g) > 0.2
    teachers = []
    for i in range(n_sources):
        lp, ids = (torch.randn(b, t, v, generator=g) * 2).log_softmax(-1).topk(kt, dim=-1)
        ids[0, 0, -1] = -1
        lp[0, 0, -1] = -torch.inf
        teachers.append(TeacherInputs(lp, ids, torch.rand(b, t, generator=g) > 0.1, name=f"src{i}",
                                      target_logprobs=-torch.rand(b, t, generator=g) * (i + 1)))
    return hidden, weight, targets, mask, teachers


@pytest.mark.parametrize("space", ["rank", "vocab"])
def test_fusion_loss_is_the_weighted_sum(space):
    hidden, weight, targets, mask, teachers = _setup()
    teachers[0].weight, teachers[1].weight = 0.7, 0.3
    cfg = LossConfig(lambda_uld=0.4, lambda_gld=0.6, lambda_kl=0.2, gld_space=space, k=4, temperature=1.5)
    out = chunked_head(hidden, weight, targets, 6, 4, gather_ids=concat_teacher_ids(teachers))
    total, terms = fusion_loss(out, teachers, mask, cfg)

    s_lp, s_ids = out.topk_logprobs[..., :4], out.topk_ids[..., :4]
    want = sft_loss(out.target_logprobs, mask)
    for te, w, gathered in zip(teachers, (0.7, 0.3), out.gathered_logprobs.split(5, dim=-1), strict=True):
        m = mask & te.mask
        gld = (gld_rank_loss(s_lp, te.topk_logprobs, m, 1.5) if space == "rank"
               else gld_vocab_loss(s_lp, s_ids, te.topk_logprobs, te.topk_ids, m, 1.5))
        want = want + w * (0.4 * uld_loss(s_lp, te.topk_logprobs, m, 1.5) + 0.6 * gld
                           + 0.2 * kl_loss(gathered, te.topk_logprobs, te.topk_ids, m, 1.5))
    torch.testing.assert_close(total, want)
    assert set(terms) == {"loss", "sft", "uld", "gld", "kl"} | {f"{t}/src{i}" for t in ("uld", "gld", "kl")
                                                                 for i in (0, 1)}
    assert terms["loss"] == pytest.approx(total.item())
    total.backward()
    assert torch.isfinite(hidden.grad).all()


@pytest.mark.parametrize("skip_rows", [True, False])
@pytest.mark.parametrize("space", ["rank", "vocab"])
def test_all_masked_batch_gives_zero_and_zero_grads(space, skip_rows):
    hidden, weight, targets, mask, teachers = _setup()
    cfg = LossConfig(lambda_kl=0.3, gld_space=space, source_selection="mince")
    mask = torch.zeros_like(mask)
    w = weight.clone().requires_grad_(True)
    positions = mask if skip_rows else None
    out = chunked_head(hidden, w, targets, cfg.k, 5, gather_ids=concat_teacher_ids(teachers), positions=positions)
    total, terms = fusion_loss(out, teachers, mask, cfg)
    total.backward()
    assert total.item() == 0.0 and all(v == 0.0 for v in terms.values())
    assert (hidden.grad == 0).all() and (w.grad == 0).all()


def test_mince_keeps_one_source_per_sample():
    hidden, weight, targets, mask, teachers = _setup()
    teachers[1].target_logprobs = teachers[0].target_logprobs.clone()
    teachers[1].target_logprobs[1] = 0.0  # source 1 wins sample 1; source 0 wins sample 0 (tie -> lower index)
    cfg = LossConfig(source_selection="mince", lambda_sft=0.0, lambda_gld=0.0, k=3)
    out = chunked_head(hidden, weight, targets, 3, 8)
    total, terms = fusion_loss(out, teachers, mask, cfg)
    s_lp = out.topk_logprobs
    m0, m1 = mask & teachers[0].mask, mask & teachers[1].mask
    want = (uld_loss(s_lp, teachers[0].topk_logprobs, m0, weights=torch.tensor([1.0, 0.0]))
            + uld_loss(s_lp, teachers[1].topk_logprobs, m1, weights=torch.tensor([0.0, 1.0])))
    torch.testing.assert_close(total, 0.5 * want)


def _rows(teachers, rows):
    return [dataclasses.replace(t, topk_logprobs=t.topk_logprobs[rows], topk_ids=t.topk_ids[rows],
                                mask=t.mask[rows], target_logprobs=t.target_logprobs[rows]) for t in teachers]


@pytest.mark.parametrize("selection", ["none", "mince"])
@pytest.mark.parametrize("space", ["rank", "vocab"])
def test_split_batch_with_summed_counts_equals_whole_batch(space, selection):
    # Training splits a step into micro-batches and ranks: each part divided by the step's total counts must add up
    # to the whole batch's mean, term by term, and so must the gradients.
    hidden, weight, targets, mask, teachers = _setup(b=5, seed=3)
    mask[4] = False  # a part with a sample that has no response position at all
    cfg = LossConfig(lambda_kl=0.3, gld_space=space, source_selection=selection, k=4)
    w_whole, w_parts = weight.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    out = chunked_head(hidden, w_whole, targets, 4, 7, gather_ids=concat_teacher_ids(teachers))
    whole, whole_terms = fusion_loss(out, teachers, mask, cfg)
    whole.backward()
    parts = [[0, 3], [1], [2, 4]]
    counts = [loss_counts(_rows(teachers, p), mask[p], cfg) for p in parts]
    den = {key: sum(c[key] for c in counts) for key in counts[0]}
    assert set(den) == {"sft"} | {f"{t}/src{i}" for t in ("uld", "gld", "kl") for i in (0, 1)}
    summed, summed_terms = 0.0, dict.fromkeys(whole_terms, 0.0)
    for p in parts:
        t = _rows(teachers, p)
        out = chunked_head(hidden[p], w_parts, targets[p], 4, 7, gather_ids=concat_teacher_ids(t))
        loss, terms = fusion_loss(out, t, mask[p], cfg, denominators=den)
        loss.backward()
        summed = summed + loss.detach()
        summed_terms = {k: v + terms[k] for k, v in summed_terms.items()}
    torch.testing.assert_close(summed, whole.detach())
    assert summed_terms == pytest.approx(whole_terms, rel=1e-5)
    torch.testing.assert_close(w_parts.grad, w_whole.grad)


def test_missing_inputs_are_config_errors():
    hidden, weight, targets, mask, teachers = _setup()
    out = chunked_head(hidden, weight, targets, 10, 8)
    with pytest.raises(ConfigError, match="lambda_kl"):
        fusion_loss(out, teachers, mask, LossConfig(lambda_kl=0.1))
    teachers[0].target_logprobs = None
    with pytest.raises(ConfigError, match="source_selection"):
        fusion_loss(out, teachers, mask, LossConfig(source_selection="mince"))
    with pytest.raises(ConfigError, match="loss.k"):
        fusion_loss(out, teachers, mask, LossConfig(k=11))
