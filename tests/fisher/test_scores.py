"""Per-example Fisher scores: exactness against a loop of .backward() calls, path agreement,
normalisation against NumPy, streaming, model-state hygiene and error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import NotFittedError
from torch import nn

import fisher_core.fisher._capture as cap
from fisher_core.fisher import FisherScoreError, FisherScorer, ModelProtocolError, fisher_scores
from fisher_core.fisher._persample import GradEngine

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

# ---- models defined only here ------------------------------------------------------------------


class MLP(nn.Module):
    """Categorical model over 3 classes given the first 5 features; label in x[:, 5]."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(5, 7)
        self.ln = nn.LayerNorm(7)
        self.l2 = nn.Linear(7, 3)

    def log_prob(self, x):
        logits = self.l2(torch.tanh(self.ln(self.l1(x[:, :5]))))
        return F.log_softmax(logits, -1).gather(1, x[:, 5:].long()).squeeze(1)


class ConvNet(nn.Module):
    """Strided, grouped, 'same'-padded and 1-D convolutions, Batch/GroupNorm, Dropout, in-place
    ReLU."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.c1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, stride=2, groups=2, padding=1)
        self.gn = nn.GroupNorm(2, width)
        self.c3 = nn.Conv2d(width, width, (2, 3), padding="same", dilation=(1, 2))
        self.c4 = nn.Conv1d(width, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 1)

    def log_prob(self, x):
        h = F.relu_(self.bn(self.c1(x)))
        h = torch.tanh(self.gn(self.c2(h)))
        h = self.drop(F.relu(self.c3(h), inplace=True))
        h = self.c4(h.flatten(2))  # (B, 4, L)
        return -F.softplus(self.head(h.transpose(1, 2))).sum((1, 2))


class MaskedConv2d(nn.Conv2d):
    """A PixelCNN-style masked convolution: the mask is applied in forward."""

    def __init__(self, cin, cout, k, mask_type):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        c = k // 2
        mask[:, :, c, c + (mask_type == "B") :] = 0
        mask[:, :, c + 1 :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding)


class MaskedPixelNet(nn.Module):
    """Tiny PixelCNN on binary 8×8 images (categorical over 2 levels)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.a = MaskedConv2d(1, width, 5, "A")
        self.b = MaskedConv2d(width, width, 3, "B")
        self.out = nn.Conv2d(width, 2, 1)

    def log_prob(self, x):
        h = F.relu(self.a(x * 2 - 1))
        h = F.relu(self.b(h)) + h
        logp = F.log_softmax(self.out(h), 1)  # (B, 2, H, W)
        return logp.gather(1, x.long()).sum((1, 2, 3))


class TiedNet(nn.Module):
    """One Linear applied twice, and a weight shared by F.linear and a plain matmul."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.randn(6, 6) * 0.3)
        self.log_scale = nn.Parameter(torch.tensor(0.1))  # used element-wise only

    def log_prob(self, x):
        h = torch.tanh(self.shared(torch.tanh(self.shared(x))))
        h = F.linear(h, self.w) + torch.tanh(h @ self.w)
        return -(h**2).sum(1) * torch.exp(self.log_scale)


class WeightNormed(nn.Module):
    """First layer's weight is g·v/‖v‖ (a parametrization): neither a parameter nor a mask."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.utils.parametrizations.weight_norm(nn.Linear(4, 5))
        self.l2 = nn.Linear(5, 2)

    def log_prob(self, x):
        return F.log_softmax(self.l2(torch.tanh(self.l1(x))), 1)[:, 0]


class SeqNet(nn.Module):
    """Linear layers on (B, T, D) sequences: per-example gradients sum over T."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 32)
        self.l2 = nn.Linear(32, 4)

    def log_prob(self, x):
        logp = F.log_softmax(self.l2(torch.tanh(self.l1(x))), -1)  # (B, T, 4)
        return logp[..., 0].sum(1)


class Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(4, 4)
        self.dec = nn.Linear(4, 4)
        self.enc.requires_grad_(False)

    def log_prob(self, x):
        return -((self.dec(torch.tanh(self.enc(x))) - x) ** 2).sum(1)


def _data(model, n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    if isinstance(model, MLP):
        return torch.cat([torch.randn(n, 5, generator=g),
                          torch.randint(0, 3, (n, 1), generator=g).float()], 1)
    if isinstance(model, ConvNet):
        return torch.randn(n, 1, 8, 8, generator=g)
    if isinstance(model, MaskedPixelNet):
        return (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float()
    if isinstance(model, TiedNet):
        return torch.randn(n, 6, generator=g)
    if isinstance(model, SeqNet):
        return torch.randn(n, 5, 16, generator=g)
    return torch.randn(n, 4, generator=g)


def _model(cls):
    torch.manual_seed(0)
    m = cls()
    if isinstance(m, ConvNet):  # non-trivial running statistics
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


def loop_reference(model, x, names=None):
    """Exact per-example gradients by a Python loop of .backward() calls (eval mode)."""
    params = dict(model.named_parameters())
    names = names or [n for n, p in params.items() if p.requires_grad]
    flags = {n: p.requires_grad for n, p in params.items()}
    was_training = model.training
    model.eval()
    rows = []
    for i in range(x.shape[0]):
        for n, p in params.items():
            p.grad = None
            p.requires_grad_(n in names)
        model.log_prob(x[i : i + 1]).sum().backward()
        rows.append(torch.cat([
            params[n].grad.flatten() if params[n].grad is not None
            else torch.zeros(params[n].numel()) for n in names
        ]))
    for n, p in params.items():
        p.grad = None
        p.requires_grad_(flags[n])
    model.train(was_training)
    return torch.stack(rows).numpy()


FULLY_COVERED = [MLP, ConvNet, MaskedPixelNet, WeightNormed, SeqNet]


# ---- exactness -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", FULLY_COVERED + [TiedNet])
@pytest.mark.parametrize("method", ["auto", "hooks", "func", "loop"])
def test_exact_scores_match_backward_loop(cls, method):
    model = _model(cls)
    x = _data(model)
    ref = loop_reference(model, x)
    if method == "hooks" and cls is TiedNet:
        with pytest.raises(FisherScoreError, match="method='hooks' cannot compute"):
            fisher_scores(model, x, dim=None, projection=None, method=method)
        return
    out = fisher_scores(model, x, dim=None, projection=None, method=method, batch_size=4)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_auto_plan_routes_uncovered_parameters_to_func(monkeypatch):
    model = _model(TiedNet)
    bulk = []
    real = GradEngine._contribute_all
    monkeypatch.setattr(GradEngine, "_contribute_all",
                        lambda self, *a, **k: bulk.append(1) or real(self, *a, **k))
    scorer = FisherScorer(model, dim=None, projection=None, batch_size=3).fit(_data(model))
    scorer.transform(_data(model, 9))
    # Only calibration handled all output gradients at once; the 3 batches streamed them.
    assert len(bulk) == 1 and scorer.engine_._terminal
    # `shared` (used twice through F.linear) is covered; `w` also feeds a matmul.
    assert set(scorer.plan_["hooks"]) == {"shared.weight", "shared.bias"}
    assert set(scorer.plan_["func"]) == {"w", "log_scale"}


class ItemNet(nn.Module):
    """Data-dependent Python control flow (.item()) that torch.func.vmap cannot trace."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.scale = nn.Parameter(torch.tensor([0.7, -0.2, 0.4]))

    def log_prob(self, x):
        h = self.lin(x) * self.scale
        # Per-example Python branching: fine batched, impossible under vmap.
        h = torch.stack([row * 2 if row.sum().item() > 0 else row for row in h])
        return -(h**2).sum(1)


def test_auto_falls_back_to_loop_when_vmap_fails():
    model = _model(ItemNet)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    scorer = FisherScorer(model, dim=None, projection=None, batch_size=5)
    got = scorer.fit_transform(x)
    assert scorer.engine_.plan["loop"] and not scorer.engine_.plan["func"]
    np.testing.assert_allclose(got, loop_reference(model, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("how", ["names", "predicate"])
def test_parameter_subset(how):
    model = _model(ConvNet)
    x = _data(model)
    names = ["c2.weight", "c4.bias", "head.weight"]
    sel = names if how == "names" else (lambda n, p: n in names)
    out = fisher_scores(model, x, dim=None, projection=None, params=sel)
    np.testing.assert_allclose(out, loop_reference(model, x, names), rtol=1e-4, atol=1e-6)


def test_frozen_parameters_excluded_unless_named():
    model = _model(Frozen)
    x = _data(model)
    default = fisher_scores(model, x, dim=None, projection=None)
    assert default.shape == (9, 20)  # dec only
    np.testing.assert_allclose(default, loop_reference(model, x, ["dec.weight", "dec.bias"]),
                               rtol=1e-4, atol=1e-6)
    named = fisher_scores(model, x, dim=None, projection=None, params=["enc.weight"])
    np.testing.assert_allclose(named, loop_reference(model, x, ["enc.weight"]), rtol=1e-4,
                               atol=1e-6)
    assert not model.enc.weight.requires_grad


@pytest.mark.parametrize("projection", ["sparse", "gaussian", "kron"])
@pytest.mark.parametrize("cls", [MaskedPixelNet, ConvNet, SeqNet])
def test_projected_paths_agree(cls, projection, monkeypatch):
    model = _model(cls)
    x = _data(model, 6)
    calls = []
    real = cap.kron_weight
    monkeypatch.setattr(cap, "kron_weight",
                        lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
    outs = {m: fisher_scores(model, x, dim=64, projection=projection, method=m, seed=3)
            for m in ("hooks", "func", "loop")}
    scale = np.abs(outs["loop"]).max()
    for m in ("hooks", "func"):
        np.testing.assert_allclose(outs[m], outs["loop"], rtol=1e-4, atol=1e-5 * scale)
    # Projecting the exact gradient with the same map gives the same numbers.
    scorer = FisherScorer(model, dim=64, projection=projection, seed=3).fit(x)
    exact = torch.from_numpy(fisher_scores(model, x, dim=None, projection=None))
    np.testing.assert_allclose(scorer.projection_.project(exact).numpy(), outs["loop"],
                               rtol=1e-4, atol=1e-5 * scale)
    if projection == "kron":
        assert any(z is not None for z in calls)  # the factored path (masked, grouped, T > 1)


# ---- state hygiene, streaming --------------------------------------------------------------------


def test_model_state_restored_and_nothing_left_behind():
    model = _model(ConvNet)
    model.train()
    model.c1.bias.requires_grad_(False)
    stats = model.bn.running_mean.clone()
    x = _data(model)
    out = fisher_scores(model, x, dim=None, projection=None,
                        params=lambda n, p: n != "c3.weight")
    assert model.training and all(m.training for m in model.modules())
    assert not model.c1.bias.requires_grad and model.c3.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert not torch._C._is_torch_function_mode_enabled()
    torch.testing.assert_close(model.bn.running_mean, stats)  # scored in eval mode
    names = [n for n, _ in model.named_parameters() if n != "c3.weight"]
    np.testing.assert_allclose(out, loop_reference(model, x, names), rtol=1e-4, atol=1e-6)


def test_streaming_inputs_and_progress():
    model = _model(MaskedPixelNet)
    x = _data(model, 10)
    seen = []
    ref = fisher_scores(model, x, dim=32, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(4, 10), (8, 10), (10, 10)]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=3)
    np.testing.assert_allclose(fisher_scores(model, loader, dim=32, batch_size=4), ref,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fisher_scores(model, x.numpy().astype(np.float64), dim=32),
                               ref, rtol=1e-5, atol=1e-6)


def test_same_seed_same_scores_different_seed_different():
    model = _model(MLP)
    x = _data(model)
    a = fisher_scores(model, x, dim=16, seed=5)
    torch.manual_seed(123)  # global RNG must not matter
    b = fisher_scores(model, x, dim=16, seed=5)
    c = fisher_scores(model, x, dim=16, seed=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1 * np.abs(a).max()


# ---- normalisation against NumPy ----------------------------------------------------------------


def _naive(u, ref, center, fim):
    m = ref.mean(0) if center else 0.0
    z = u - m
    if fim:
        second = ((ref - ref.mean(0)) ** 2).mean(0) if center else (ref**2).mean(0)
        z = z / (np.sqrt(second) + 1e-6)
    return z


@pytest.mark.parametrize("center,normalize", [(True, None), (False, "fim_diag"),
                                              (True, "fim_diag")])
def test_fim_diag_and_center_match_numpy(center, normalize):
    model = _model(MLP)
    x, ref_set = _data(model, 12, seed=1), _data(model, 20, seed=2)
    u = loop_reference(model, x).astype(np.float64)
    r = loop_reference(model, ref_set).astype(np.float64)
    fim = normalize is not None
    # Exact scores, statistics on x itself.
    got = fisher_scores(model, x, dim=None, projection=None, center=center, normalize=normalize)
    np.testing.assert_allclose(got, _naive(u, u, center, fim), rtol=2e-3, atol=1e-4)
    got = fisher_scores(model, x, dim=None, projection=None, center=center, normalize=normalize,
                        fim_samples=ref_set)
    np.testing.assert_allclose(got, _naive(u, r, center, fim), rtol=2e-3, atol=1e-4)
    # Projected, statistics on a separate reference set (fim_samples).
    raw_x = fisher_scores(model, x, dim=24, seed=1).astype(np.float64)
    raw_r = fisher_scores(model, ref_set, dim=24, seed=1).astype(np.float64)
    got = fisher_scores(model, x, dim=24, seed=1, center=center, normalize=normalize,
                        fim_samples=ref_set)
    np.testing.assert_allclose(got, _naive(raw_x, raw_r, center, fim), rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("center", [False, True])
def test_fim_diag_exact_is_parameter_space(center):
    model = _model(MaskedPixelNet)
    x, ref_set = _data(model, 5, seed=1), _data(model, 16, seed=2)
    u = loop_reference(model, x).astype(np.float64)
    r = loop_reference(model, ref_set).astype(np.float64)
    scorer = FisherScorer(model, dim=48, projection="kron", normalize="fim_diag_exact",
                          center=center).fit(ref_set)
    R = scorer.projection_.matrix().double().numpy()  # (P, dim)
    # Masked-out weights have zero gradient: they stay zero (g / (0 + 1e-6) = 0).
    expected = _naive(u, r, center, True) @ R
    got = scorer.transform(x)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())
    np.testing.assert_allclose(scorer.param_mean_, r.mean(0), rtol=1e-3, atol=1e-5)


def test_power_and_l2_are_finite_on_zero_scores():
    model = nn.Linear(3, 2, bias=False)
    model.log_prob = lambda x: -(model(x) ** 2).sum(1)  # zero gradient at x = 0
    x = torch.randn(4, 3)
    x[1] = 0
    raw = fisher_scores(model, x, dim=None, projection=None).astype(np.float64)
    got = fisher_scores(model, x, dim=None, projection=None, power=0.5, l2=True)
    z = np.sign(raw) * np.sqrt(np.abs(raw))
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    assert np.isfinite(got).all() and not got[1].any()
    np.testing.assert_allclose(got, z, rtol=1e-5, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------


class NoLogProb(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 2)


class WrongShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(2, 3)

    def log_prob(self, x):
        return self.l(x)  # (B, 3): forgot to sum


def test_error_messages():
    x = torch.randn(4, 2)
    with pytest.raises(ModelProtocolError, match="must be a torch.nn.Module with a log_prob"):
        fisher_scores(NoLogProb(), x)
    with pytest.raises(ModelProtocolError, match=r"shape \(B,\) = \(4,\).*got shape \(4, 3\)"):
        fisher_scores(WrongShape(), x, dim=8)
    with pytest.raises(FisherScoreError, match="projection must be one of .* got 'dense'"):
        fisher_scores(WrongShape(), x, projection="dense")
    with pytest.raises(FisherScoreError, match="dim=512 needs a projection"):
        fisher_scores(WrongShape(), x, projection=None)
    with pytest.raises(FisherScoreError, match="params selected no parameters"):
        fisher_scores(WrongShape(), x, params=[])
    with pytest.raises(FisherScoreError, match="params selected no parameters"):
        fisher_scores(WrongShape(), x, params=lambda n, p: False)
    with pytest.raises(FisherScoreError, match=r"params names \['nope'\] are not parameters"):
        fisher_scores(WrongShape(), x, params=["nope"])
    with pytest.raises(FisherScoreError, match="normalize must be one of"):
        fisher_scores(WrongShape(), x, normalize="l2")
    with pytest.raises(FisherScoreError, match="at least one example"):
        fisher_scores(WrongShape(), torch.zeros(0, 2))
    with pytest.raises(NotFittedError):
        FisherScorer(WrongShape()).transform(x)
