"""Per-example gradients of linear, convolution and normalisation calls from one backward pass.

While ``model.log_prob(x)`` runs, a ``TorchFunctionMode`` records every ``F.linear``,
``F.conv1d``, ``F.conv2d``, eval-mode ``F.batch_norm``, ``F.layer_norm`` and ``F.group_norm``
call whose weight or bias needs a gradient: its input, the weight and bias tensors actually
used (a masked convolution passes ``weight * mask``), the convolution arguments and the
*gradient edge* of its output. Backpropagating ``log_prob(x).sum()`` to those edges gives
``δ = ∂Σ_i log p(x_i)/∂output``, and because examples are independent, row ``i`` of ``δ``
is the gradient of ``log p(x_i)`` alone. The weight gradients themselves are never computed
by autograd (they are not requested, so the engine prunes them): the batched pass costs one
forward plus the input-gradient half of the backward. Per call and example:

- linear: ``∇W_i = Σ_t δ_i[t] a_i[t]ᵀ`` (``t`` runs over extra leading dims),
  ``∇b_i = Σ_t δ_i[t]``;
- conv: ``∇W_i = Σ_p δ_i(p) unfold(a_i)(p)ᵀ`` over output positions ``p``,
  ``∇b_i = Σ_p δ_i(p)`` (computed as a grouped-convolution weight gradient with the batch
  folded into the groups, or one batched matmul per kernel tap; never with ``F.unfold``);
- norms: ``∇γ_i = Σ δ_i ⊙ x̂_i``, ``∇β_i = Σ δ_i`` over the broadcast axes, ``x̂`` recomputed
  from the recorded input.

Gradient edges are taken when the output is created, so an in-place op applied afterwards
(``relu_``) does not change what is differentiated. A weight that is a function of
parameters (``weight * mask``, weight norm, parametrizations) gets its per-example gradient
pushed back with a batched vector–Jacobian product; an element-wise mask is detected and
applied directly. A layer used several times contributes once per call; the caller sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.graph import get_gradient_edge
from torch.overrides import TorchFunctionMode

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_KINDS = {torch.conv2d: "conv2d", torch.conv1d: "conv1d", F.linear: "linear"}
_NORM_ARGS = {
    F.batch_norm: ("input", "running_mean", "running_var", "weight", "bias", "training",
                   "momentum", "eps"),
    F.layer_norm: ("input", "normalized_shape", "weight", "bias", "eps"),
    F.group_norm: ("input", "num_groups", "weight", "bias", "eps"),
}
_GROUPED_MIN_CHANNELS = 8  # from this many input channels per group, use the grouped conv


@dataclass
class Call:
    """One recorded linear / convolution call (convolutions stored as 2-D)."""

    kind: str  # "linear", "conv" or "norm"
    inp: torch.Tensor  # (B, *, in) or (B, C, H, W)
    weight: torch.Tensor  # (out, in) or (out, C/g, kh, kw), as used by the op
    bias: torch.Tensor | None
    edge: object  # GradientEdge of the output
    version: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    w_used: torch.Tensor | None = None  # the weight tensor as passed (conv1d: 3-D)
    normalized: object = None  # norm layers: () -> normalised input x̂ (B, ...)
    trailing: bool = False  # norm layers: affine over trailing dims (LayerNorm), else axis 1

    def conv_input(self) -> torch.Tensor:
        """Input with any asymmetric padding applied; symmetric padding stays implicit."""
        left, right, top, bottom = self.padding
        if left == right and top == bottom:
            return self.inp
        return F.pad(self.inp, (left, right, top, bottom))

    @property
    def sym_padding(self) -> tuple[int, int]:
        left, right, top, bottom = self.padding
        return (top, left) if (left == right and top == bottom) else (0, 0)


def _pair(v: object, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    return tuple(int(u) for u in v)


def _conv_padding(padding: object, kernel: tuple[int, int], dilation: tuple[int, int]):
    """(left, right, top, bottom) of a conv2d ``padding`` argument (int, pair or string)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        # "same": PyTorch puts the odd extra element on the right/bottom.
        tot_h, tot_w = (d * (k - 1) for d, k in zip(dilation, kernel, strict=True))
        return (tot_w // 2, tot_w - tot_w // 2, tot_h // 2, tot_h - tot_h // 2)
    ph, pw = _pair(padding, 2)
    return (pw, pw, ph, ph)


class Recorder(TorchFunctionMode):
    """Records the linear / convolution calls of one forward pass over a batch of ``batch``."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch = batch
        self.calls: list[Call] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not (isinstance(out, torch.Tensor) and out.requires_grad):
            return out
        call = None
        if func in _KINDS:
            call = self._make_call(_KINDS[func], args, kwargs or {}, out)
        elif func in _NORM_ARGS:
            call = self._make_norm(func, args, kwargs or {}, out)
        if call is not None:
            self.calls.append(call)
        return out

    def _make_norm(self, func, args: tuple, kwargs: dict, out: torch.Tensor) -> Call | None:
        """BatchNorm in eval mode, LayerNorm, GroupNorm: affine maps of a per-example x̂."""
        bound = dict(zip(_NORM_ARGS[func], args, strict=False))
        bound.update(kwargs)
        inp, weight, bias = bound["input"], bound.get("weight"), bound.get("bias")
        needs = any(t is not None and t.requires_grad for t in (weight, bias))
        if not needs or inp.ndim < 2 or inp.shape[0] != self.batch or out.shape != inp.shape:
            return None
        eps = float(bound.get("eps", 1e-5))
        if func is F.batch_norm:
            mean, var = bound["running_mean"], bound["running_var"]
            if bound.get("training", False) or mean is None or var is None:
                return None  # batch statistics tie the examples together
            shape = (1, -1) + (1,) * (inp.ndim - 2)
            mean, var = mean.detach(), var.detach()

            def normalized():
                return (inp - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
        elif func is F.layer_norm:
            dims = tuple(range(-len(tuple(bound["normalized_shape"])), 0))

            def normalized():
                m = inp.mean(dims, keepdim=True)
                v = inp.var(dims, unbiased=False, keepdim=True)
                return (inp - m) * torch.rsqrt(v + eps)
        else:
            groups = int(bound["num_groups"])

            def normalized():
                xg = inp.reshape(inp.shape[0], groups, -1)  # (B, G, C/G·spatial)
                m = xg.mean(2, keepdim=True)
                v = xg.var(2, unbiased=False, keepdim=True)
                return ((xg - m) * torch.rsqrt(v + eps)).view(inp.shape)
        return Call("norm", inp, weight, bias, get_gradient_edge(out), inp._version,
                    w_used=weight, normalized=normalized, trailing=func is F.layer_norm)

    def _make_call(self, kind: str, args: tuple, kwargs: dict, out: torch.Tensor) -> Call | None:
        bound = dict(zip(_CONV_ARGS, args, strict=False))
        bound.update(kwargs)
        inp, weight, bias = bound["input"], bound["weight"], bound.get("bias")
        needs = weight.requires_grad or (bias is not None and bias.requires_grad)
        if not needs or inp.ndim < 2 or inp.shape[0] != self.batch or out.shape[0] != self.batch:
            return None  # unbatched or batch-folding use: left to the vmap fallback
        edge = get_gradient_edge(out)
        if kind == "linear":
            return Call("linear", inp, weight, bias, edge, inp._version, w_used=weight)
        spatial = 2 if kind == "conv2d" else 1
        if inp.ndim != spatial + 2:
            return None
        stride = _pair(bound.get("stride", 1), spatial)
        dilation = _pair(bound.get("dilation", 1), spatial)
        w2 = weight if spatial == 2 else weight.unsqueeze(2)  # (out, C/g, kh, kw)
        if spatial == 1:
            inp, stride, dilation = inp.unsqueeze(2), (1, *stride), (1, *dilation)
            padding = bound.get("padding", 0)
            padding = padding if isinstance(padding, str) else (0, _pair(padding, 1)[0])
        else:
            padding = bound.get("padding", 0)
        pad = _conv_padding(padding, tuple(w2.shape[2:]), dilation)
        return Call("conv", inp, w2, bias, edge, inp._version, stride, pad, dilation,
                    int(bound.get("groups", 1)), weight)


# ---- explicit per-example gradients ------------------------------------------------------------


def weight_grads(call: Call, delta: torch.Tensor) -> torch.Tensor:
    """Per-example gradient w.r.t. the weight the op used: (B, *weight.shape)."""
    B = delta.shape[0]
    if call.kind == "norm":
        return _norm_reduce(call, delta * call.normalized())
    if call.kind == "linear":
        out_f, in_f = call.weight.shape
        a = call.inp.reshape(B, -1, in_f)  # (B, T, in)
        d = delta.reshape(B, -1, out_f)  # (B, T, out)
        if a.shape[1] == 1:
            return d[:, 0, :, None] * a[:, 0, None, :]  # (B, out, in)
        return torch.bmm(d.transpose(1, 2), a)  # (B, out, in)
    out_f, cg, kh, kw = call.weight.shape
    d = _as_2d(delta)  # (B, out, H', W')
    if cg >= _GROUPED_MIN_CHANNELS and (kh, kw) != (1, 1):
        # Per-example weight gradients as one grouped-convolution weight gradient, the batch
        # folded into the channel axis (groups = B·g): fast for wide inputs, no copies.
        x = call.conv_input()
        g = torch.nn.grad.conv2d_weight(
            x.reshape(1, -1, *x.shape[2:]), (B * out_f, cg, kh, kw),
            d.reshape(1, -1, *d.shape[2:]), call.stride, call.sym_padding, call.dilation,
            B * call.groups,
        )
        return g.view(B, out_f, cg, kh, kw)
    return _shifted_grads(call, d)


def _as_2d(delta: torch.Tensor) -> torch.Tensor:
    """Output gradient of a conv1d (B, out, L) seen as conv2d (B, out, 1, L)."""
    return delta.unsqueeze(2) if delta.ndim == 3 else delta


def _shifted_grads(call: Call, d: torch.Tensor) -> torch.Tensor:
    """``∇W[:, :, u, v] = Σ_p δ(p) x(p·s + (u, v)·dil)ᵀ``: one batched matmul per kernel tap.

    Cheaper than ``F.unfold`` (whose CPU kernel is slow) and than the grouped convolution
    when the input has few channels.
    """
    B, out_f, Ho, Wo = d.shape
    g = call.groups
    _, cg, kh, kw = call.weight.shape
    left, right, top, bottom = call.padding
    x = F.pad(call.inp, (left, right, top, bottom)) if any(call.padding) else call.inp
    sh, sw = call.stride
    dh, dw = call.dilation
    dg = d.reshape(B * g, out_f // g, Ho * Wo)  # (B·g, out/g, L)
    grads = d.new_empty(B, out_f, cg, kh, kw)
    for u in range(kh):
        for v in range(kw):
            xs = x[:, :, u * dh : u * dh + (Ho - 1) * sh + 1 : sh,
                   v * dw : v * dw + (Wo - 1) * sw + 1 : sw]  # (B, C, H', W')
            xs = xs.reshape(B * g, cg, Ho * Wo)  # (B·g, C/g, L)
            grads[:, :, :, u, v] = torch.bmm(dg, xs.transpose(1, 2)).view(B, out_f, cg)
    return grads


def _norm_reduce(call: Call, t: torch.Tensor) -> torch.Tensor:
    """Sum a (B, ...) product over every axis the affine parameter is broadcast along."""
    B = t.shape[0]
    shape = tuple((call.bias if call.w_used is None else call.w_used).shape)
    if call.trailing:
        return t.reshape(B, -1, *shape).sum(1)  # LayerNorm: (B, ..., *normalized_shape)
    return t.reshape(B, shape[0], -1).sum(2)  # BatchNorm / GroupNorm: channels on axis 1


def bias_grads(call: Call, delta: torch.Tensor) -> torch.Tensor:
    """Per-example gradient w.r.t. the bias the op used: (B, out)."""
    B = delta.shape[0]
    if call.kind == "norm":
        return _norm_reduce(call, delta)
    if call.kind == "linear":
        return delta.reshape(B, -1, delta.shape[-1]).sum(1)
    return delta.reshape(B, delta.shape[1], -1).sum(2)


# ---- Kronecker-factored projection of a call's weight gradient ------------------------------


def kron_weight(call: Call, delta: torch.Tensor, r_out: torch.Tensor, r_in: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """``vec(R_outᵀ ∇W_i R_in)`` for every example without forming ``∇W_i``: (B, k1·k2).

    ``mask`` (out × K, optional) multiplies the gradient element-wise first (a masked conv's
    weight gradient). Writing ``mask = Σ_u 1[S_u] m_uᵀ`` over its distinct rows ``m_u``,
    ``R_outᵀ (mask ⊙ G) R_in = Σ_u R_out[S_u]ᵀ G[S_u] diag(m_u) R_in``, so each distinct row
    costs one extra factor product. Returns None when this is not cheaper than the explicit
    path (or not supported: grouped masked convolutions, masks with many distinct rows).
    """
    B = delta.shape[0]
    k1, k2 = r_out.shape[1], r_in.shape[1]
    out_f = r_out.shape[0]
    K = r_in.shape[0]
    rows, cols = _mask_patterns(mask, out_f, K, r_out)
    if rows is None or (call.groups > 1 and mask is not None):
        return None
    U = rows.shape[0]
    L = delta[0].numel() // out_f
    explicit = L * out_f * K + out_f * K * k2 + out_f * k1 * k2
    factored = L * U * (K * k2 + out_f * k1 + k1 * k2)
    if factored >= explicit:
        return None
    r_outs = r_out * rows[:, :, None]  # (U, out, k1)
    r_ins = r_in * cols[:, :, None]  # (U, K, k2)
    if call.kind == "linear":
        a = call.inp.reshape(B, -1, K)  # (B, T, K)
        d = delta.reshape(B, -1, out_f)  # (B, T, out)
        ua = torch.einsum("btk,ukj->butj", a, r_ins)  # (B, U, T, k2)
        ud = torch.einsum("bto,uoj->butj", d, r_outs)  # (B, U, T, k1)
        z = torch.einsum("butm,butn->bmn", ud, ua)  # (B, k1, k2)
        return z.reshape(B, k1 * k2)
    g = call.groups
    cg, kh, kw = call.weight.shape[1:]
    x = call.conv_input()
    # R_inᵀ unfold(a)(p) for all p is a convolution with k2 (per group and pattern) filters.
    kernel = r_ins.permute(0, 2, 1).reshape(U * k2, cg, kh, kw)  # (U·k2, C/g, kh, kw)
    kernel = kernel.repeat(g, 1, 1, 1)  # (g·U·k2, C/g, kh, kw)
    ua = F.conv2d(x, kernel, None, call.stride, call.sym_padding, call.dilation, g)
    ua = ua.reshape(B, g, U, k2, -1)  # (B, g, U, k2, L)
    d = delta.reshape(B, g, out_f // g, -1)  # (B, g, out/g, L)
    ro = r_outs.reshape(U, g, out_f // g, k1)
    ud = torch.einsum("bgol,ugom->bguml", d, ro)  # (B, g, U, k1, L)
    z = torch.einsum("bguml,bgunl->bmn", ud, ua)  # (B, k1, k2)
    return z.reshape(B, k1 * k2)


def _mask_patterns(mask: torch.Tensor | None, out_f: int, K: int, like: torch.Tensor,
                   max_patterns: int = 8):
    """Row indicators (U, out) and distinct rows (U, K) of a mask; (None, None) if U is large."""
    if mask is None:
        return like.new_ones(1, out_f), like.new_ones(1, K)
    m = mask.reshape(out_f, K).to(like.dtype)
    uniq, inverse = torch.unique(m, dim=0, return_inverse=True)
    if uniq.shape[0] > max_patterns:
        return None, None
    rows = (inverse[None, :] == torch.arange(uniq.shape[0], device=m.device)[:, None]).to(m.dtype)
    return rows, uniq


def param_function(t: torch.Tensor, limit: int = 64) -> bool:
    """Whether ``t`` is a small function of leaf tensors (not of activations).

    Walks ``t``'s autograd graph; more than ``limit`` nodes means ``t`` depends on the
    forward pass itself (a hyper-network weight), which cannot be split per example.
    """
    if t.grad_fn is None:
        return True
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if len(seen) > limit:
            return False
        stack.extend(fn for fn, _ in node.next_functions)
    return True


def elementwise_mask(t: torch.Tensor, param: torch.Tensor) -> torch.Tensor | None:
    """``m`` such that ``∂⟨c, t⟩/∂param = c ⊙ m`` for every ``c``, if ``t`` is that simple.

    Probed with two batched vector–Jacobian products (all-ones and a fixed pseudo-random
    cotangent); returns None when ``t`` is not an element-wise rescaling of ``param``.
    """
    if t.shape != param.shape:
        return None
    probe = torch.linspace(-1.0, 2.0, t.numel(), device=t.device, dtype=t.dtype).view(t.shape)
    probe = probe.roll(t.numel() // 3 + 1)
    cot = torch.stack([torch.ones_like(t), probe])
    (vj,) = torch.autograd.grad(t, param, cot, retain_graph=True, is_grads_batched=True,
                                allow_unused=True)
    if vj is None:
        return None
    m = vj[0]
    scale = float(m.abs().max()) + 1e-30
    return m if torch.allclose(vj[1], probe * m, atol=1e-6 * scale, rtol=1e-5) else None


def push_back(t: torch.Tensor, params: list[torch.Tensor], grads: torch.Tensor):
    """Per-example gradients w.r.t. ``params`` of a derived tensor ``t``: vjp batched over B."""
    return torch.autograd.grad(t, params, grads, retain_graph=True, is_grads_batched=True,
                               allow_unused=True)
