"""SFT, ULD, KL and MinCE against slow loop references, gradcheck, and masking."""

import math

import pytest
import torch

from pipeline.losses import kl_loss, mince_weights, sft_loss, uld_loss

EPS = 1e-6


def _random(b=3, t=5, k=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, t, k, generator=g, dtype=dtype).sort(-1, descending=True).values.log_softmax(-1)
    te = torch.randn(b, t, k, generator=g, dtype=dtype).log_softmax(-1) - 0.5
    mask = torch.rand(b, t, generator=g) > 0.3
    mask[0, 0] = True
    return s, te, mask


def _ref_probs(x, tau, standardise):
    x = x[torch.isfinite(x)]
    if standardise:
        mean = sum(x.tolist()) / len(x)
        var = sum((v - mean) ** 2 for v in x.tolist()) / len(x)
        x = torch.tensor([(v - mean) / math.sqrt(var + EPS) for v in x.tolist()], dtype=torch.float64)
    e = [math.exp(v / tau) for v in x.tolist()]
    return sorted((v / sum(e) for v in e), reverse=True)


def ref_uld(s, t, mask, tau=1.0, standardise=True):
    total, n = 0.0, 0
    for b in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            if not mask[b, i]:
                continue
            p, q = _ref_probs(s[b, i], tau, standardise), _ref_probs(t[b, i], tau, standardise)
            k = max(len(p), len(q))
            p, q = p + [0.0] * (k - len(p)), q + [0.0] * (k - len(q))
            total += sum(abs(x - y) for x, y in zip(p, q, strict=True))
            n += 1
    return total / max(n, 1)


def ref_kl(s, t, ids, mask, tau=1.0):
    total, n = 0.0, 0
    for b in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            keep = [j for j in range(ids.shape[-1]) if mask[b, i] and ids[b, i, j] >= 0]
            if not keep:
                continue
            tq = [math.exp(t[b, i, j].item() / tau) for j in keep]
            sp = [math.exp(s[b, i, j].item() / tau) for j in keep]
            tq = [v / sum(tq) for v in tq]
            sp = [v / sum(sp) for v in sp]
            total += sum(q * (math.log(q) - math.log(p)) for q, p in zip(tq, sp, strict=True))
            n += 1
    return total / max(n, 1)


def test_sft_matches_reference_and_masks():
    lp = -torch.rand(2, 4, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True], [False, False, True, False]])
    expected = -sum(lp[b, t].item() for b in range(2) for t in range(4) if mask[b, t]) / 4
    assert sft_loss(lp, mask).item() == pytest.approx(expected)
    lp.requires_grad_(True)
    torch.autograd.gradcheck(lambda x: sft_loss(x, mask), (lp,))


@pytest.mark.parametrize("standardise", [True, False])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_uld_matches_reference(standardise, tau):
    s, t, mask = _random()
    t[1, 2, 3] = -torch.inf  # a merged/padded teacher entry
    got = uld_loss(s, t, mask, temperature=tau, zscore=standardise)
    assert got.item() == pytest.approx(ref_uld(s, t, mask, tau, standardise), abs=1e-9)


def test_uld_different_k():
    s, _, mask = _random(k=3)
    _, t, _ = _random(k=5, seed=1)
    assert uld_loss(s, t, mask).item() == pytest.approx(ref_uld(s, t, mask), abs=1e-9)


def test_uld_gradcheck():
    s, t, mask = _random(b=2, t=3, k=4)
    s.requires_grad_(True)
    t.requires_grad_(True)
    torch.autograd.gradcheck(lambda a, b: uld_loss(a, b, mask, temperature=1.5), (s, t))


def test_kl_matches_reference_and_gradcheck():
    s, t, mask = _random()
    ids = torch.randint(0, 50, s.shape, generator=torch.Generator().manual_seed(3))
    ids[0, 0, 1] = -1
    ids[2, 1] = -1  # a position with no mapped id is left out of the mean
    assert kl_loss(s, t, ids, mask, 1.3).item() == pytest.approx(ref_kl(s, t, ids, mask, 1.3), abs=1e-9)
    s.requires_grad_(True)
    t.requires_grad_(True)
    torch.autograd.gradcheck(lambda a, b: kl_loss(a, b, ids, mask), (s, t))


def test_kl_zero_for_equal_distributions():
    s, _, mask = _random()
    ids = torch.zeros(s.shape, dtype=torch.long)
    assert kl_loss(s, s.clone(), ids, mask).item() == pytest.approx(0.0, abs=1e-12)


def _poisoned(x, mask):
    """Masked positions hold -inf, and one of them NaN, as padding would."""
    x = x.detach().clone()
    x[~mask] = -torch.inf
    hidden = (~mask).nonzero()
    if len(hidden):
        x[hidden[0, 0], hidden[0, 1]] = float("nan")
    return x.requires_grad_(True)


LOSSES = {
    "sft": lambda s, t, ids, m: sft_loss(s[..., 0], m),
    "uld": lambda s, t, ids, m: uld_loss(s, t, m),
    "kl": lambda s, t, ids, m: kl_loss(s, t, ids, m),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_masked_gives_zero_loss_and_zero_grads(name):
    s, t, _ = _random()
    mask = torch.zeros(s.shape[:2], dtype=torch.bool)
    ids = torch.zeros(s.shape, dtype=torch.long)
    s, t = _poisoned(s, mask), _poisoned(t, mask)
    loss = LOSSES[name](s, t, ids, mask)
    loss.backward()
    assert loss.item() == 0.0
    for x in (s, t):
        assert x.grad is None or (torch.isfinite(x.grad).all() and (x.grad == 0).all())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_positions_get_zero_grad(name):
    s, t, mask = _random()
    ids = torch.arange(s.shape[-1]).expand(s.shape).contiguous()
    s, t = _poisoned(s, mask), _poisoned(t, mask)
    loss = LOSSES[name](s, t, ids, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert (s.grad[~mask] == 0).all() and torch.isfinite(s.grad).all()
    assert s.grad[mask].abs().sum() > 0
    if t.grad is not None:
        assert (t.grad[~mask] == 0).all() and torch.isfinite(t.grad).all()


def test_mince_picks_lowest_ce_with_floor():
    # 2 sources, 3 samples, 2 positions, k = 2.
    target = torch.tensor([[[-1.0, -1.0], [-0.1, float("nan")], [-3.0, -3.0]],
                           [[-2.0, -2.0], [-0.5, -0.5], [-0.2, -0.2]]])
    topk = torch.full((2, 3, 2, 2), -0.05)
    topk[0, 1, 1] = torch.tensor([-0.01, -9.0])  # floor for the missing gold token: -9
    masks = torch.ones(2, 3, 2, dtype=torch.bool)
    masks[:, 2] = torch.tensor([[False, False], [True, False]])  # sample 2: only source 1 covers it
    w = mince_weights(target, topk, masks)
    assert w.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    assert mince_weights(target, topk, torch.zeros(3, 2, dtype=torch.bool)).sum() == 0
