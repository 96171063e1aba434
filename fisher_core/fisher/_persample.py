"""The per-example gradient engine: capture ("hooks"), ``torch.func`` and loop paths.

:class:`GradEngine` turns one batch into per-example gradient pieces and hands them to a
:class:`Sink`, which projects them at once (so no N × P array ever exists). Which path
computes which parameter is decided once, on the first few examples ("calibration"): the
capture path records the linear/convolution calls (see :mod:`._capture`), computes the
batch-summed gradient those calls imply for every parameter and compares it with autograd's
own. Parameters where both agree are *covered*; the rest (used outside linear/conv calls,
in a layer that folds the batch, or not at all through such calls) go to
``vmap(grad(log_prob))`` via ``functional_call``, and to a Python loop if that fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..utils.devices import full_precision
from . import _capture as cap
from .projection import KronProjection, ParamBlock, Projection

METHODS = ("auto", "hooks", "func", "loop")
_CALIBRATION_EXAMPLES = 4
_FUNC_CHUNK_BYTES = 256 << 20  # per-example gradients held at once by the vmap path


class FisherScoreError(ValueError):
    """A Fisher-score setting or input is invalid (the message says which and what to do)."""


class ModelProtocolError(TypeError):
    """The model does not follow the ``log_prob(x) -> (B,)`` protocol."""


def check_log_prob(lp: object, batch: int) -> torch.Tensor:
    """Validate what ``model.log_prob`` returned for a batch of ``batch`` examples."""
    if not isinstance(lp, torch.Tensor) or tuple(lp.shape) != (batch,):
        got = f"shape {tuple(lp.shape)}" if isinstance(lp, torch.Tensor) else type(lp).__name__
        raise ModelProtocolError(
            f"model.log_prob(x) must return a tensor of shape (B,) = ({batch},), one "
            f"log-likelihood per example; got {got}. Sum over the non-batch dimensions "
            "inside log_prob."
        )
    if not lp.requires_grad:
        raise ModelProtocolError(
            "model.log_prob(x) returned a tensor that does not depend on the selected "
            "parameters (no autograd graph): do not wrap log_prob in torch.no_grad() or "
            "detach its result."
        )
    return lp


@contextmanager
def scoring_state(model: nn.Module, selected: Sequence[torch.Tensor]):
    """Eval mode, ``requires_grad`` only on the selected parameters, full float32 (no TF32
    on CUDA); all restored after.

    Eval mode matters: BatchNorm in train mode normalises with batch statistics, which ties
    the examples of a batch together, so per-example gradients would depend on the batch.
    TF32 matters on CUDA: the engine checks its hook gradients against autograd's to 1e-4 and
    falls back to ``torch.func`` for parameters where they disagree.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    chosen = {id(p) for p in selected}
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(id(p) in chosen)
        with torch.enable_grad(), full_precision():
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


class Sink:
    """Collects one batch's per-example gradient pieces into projected outputs ``out``.

    Parameters
    ----------
    projection : Projection
        Map applied to every piece.
    batch : int
        Examples in the batch.
    scales : list of Tensor or None, default=None
        Per-parameter factors (flattened) applied before projecting (parameter-space
        normalisation); forces explicit per-example gradients.
    """

    def __init__(self, projection: Projection, batch: int, *, device: torch.device,
                 scales: list[torch.Tensor] | None = None):
        self.projection = projection
        self.scales = scales
        self.out = torch.zeros(batch, projection.dim, device=device)
        self.touched: set[int] = set()

    def add(self, k: int, g: torch.Tensor, rows: slice = slice(None)) -> None:
        """Add per-example gradients ``g`` (b, *shape) of parameter ``k`` to rows ``rows``."""
        g = g.reshape(g.shape[0], -1).to(self.out.dtype)
        if self.scales is not None:
            g = g * self.scales[k]
        self.projection.accumulate(k, g, self.out[rows])
        self.touched.add(k)

    def factors(self, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Kronecker factors of block ``k`` if it may skip the explicit gradient."""
        if self.scales is None and isinstance(self.projection, KronProjection):
            return self.projection.factors.get(k)
        return None

    def add_projected(self, k: int, z: torch.Tensor) -> None:
        self.out += z
        self.touched.add(k)


class _SumSink(Sink):
    """Batch sums of the per-example gradients (for calibration)."""

    def __init__(self, params: Sequence[torch.Tensor]):
        self.sums = [torch.zeros_like(p, dtype=torch.float64).flatten() for p in params]
        self.touched = set()
        self.scales = None

    def add(self, k: int, g: torch.Tensor, rows: slice = slice(None)) -> None:
        self.sums[k] += g.reshape(g.shape[0], -1).sum(0, dtype=torch.float64)
        self.touched.add(k)

    def factors(self, k: int) -> None:
        return None


class _LogProb(nn.Module):
    """Wraps a model so that ``functional_call`` calls its ``log_prob``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.log_prob(x)


class GradEngine:
    """Per-example gradients of ``model.log_prob`` w.r.t. selected parameters, by batch.

    Parameters
    ----------
    model : nn.Module
        Model with ``log_prob``; must already be in :func:`scoring_state`.
    names : sequence of str
        Selected parameter names, in output order.
    params : sequence of Parameter
        The parameters themselves.
    method : {"auto", "hooks", "func", "loop"}
        Path to use (see module docstring); ``"hooks"`` fails if a parameter is not covered.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], params: Sequence[torch.Tensor],
                 method: str = "auto"):
        self.model = model
        self.names = list(names)
        self.params = list(params)
        self.blocks = [ParamBlock(n, tuple(p.shape)) for n, p in zip(names, params, strict=True)]
        self.method = method
        self.index = {id(p): k for k, p in enumerate(self.params)}
        self.plan: dict[str, list[int]] | None = None
        self._signature: list | None = None  # layer calls of a batch, and those whose
        self._terminal: list[int] | None = None  # backward node never runs (see _hooks)

    # ---- planning --------------------------------------------------------------------------

    def calibrate(self, x: torch.Tensor) -> dict[str, list[int]]:
        """Decide the path of every parameter from a few examples ``x``; returns the plan."""
        everything = list(range(len(self.params)))
        if self.method in ("func", "loop"):
            check_log_prob(self.model.log_prob(x), x.shape[0])
            self.plan = {"hooks": [], "func": [], "loop": []}
            self.plan[self.method] = everything
            return self.plan
        rec = cap.Recorder(x.shape[0])
        with rec:
            lp = check_log_prob(self.model.log_prob(x), x.shape[0])
        calls = rec.calls
        self._find_terminal(lp, calls)
        inputs = [c.edge for c in calls] + self.params
        grads = torch.autograd.grad(lp.sum(), inputs, allow_unused=True, retain_graph=True)
        sink = _SumSink(self.params)
        self._contribute_all(calls, grads[: len(calls)], sink, set(everything))
        covered = []
        for k, true in enumerate(grads[len(calls) :]):
            if true is None:
                ok = k not in sink.touched  # unused by log_prob: its score is zero
            else:
                ref = true.detach().flatten().double()
                tol = 1e-4 * float(ref.abs().max()) + 1e-8
                ok = k in sink.touched and bool((sink.sums[k] - ref).abs().max() <= tol)
            if ok:
                covered.append(k)
        rest = [k for k in everything if k not in covered]
        if self.method == "hooks" and rest:
            missing = ", ".join(self.names[k] for k in rest[:5])
            raise FisherScoreError(
                f"method='hooks' cannot compute per-example gradients of {len(rest)} "
                f"parameter(s) ({missing}{', ...' if len(rest) > 5 else ''}): they are used "
                "outside the linear, convolution and normalisation calls it captures (or in a "
                "way that mixes examples). Use method='auto' (torch.func for those) or "
                "method='func'."
            )
        self.plan = {"hooks": covered, "func": rest, "loop": []}
        return self.plan

    # ---- one batch -------------------------------------------------------------------------

    def run(self, x: torch.Tensor, sink: Sink) -> None:
        """Add the per-example gradients of batch ``x`` to ``sink``."""
        assert self.plan is not None, "calibrate first"
        if self.plan["hooks"]:
            self._hooks(x, sink, set(self.plan["hooks"]))
        if self.plan["func"]:
            try:
                self._func(x, self.plan["func"], sink)
            except Exception:
                if self.method == "func":
                    raise
                # vmap cannot trace this model (data-dependent control flow, .item(), ...).
                self.plan["loop"] += self.plan["func"]
                self.plan["func"] = []
                sink.out.zero_()  # the partial batch is recomputed from scratch
                sink.touched.clear()
                self.run(x, sink)
                return
        if self.plan["loop"]:
            self._loop(x, self.plan["loop"], sink)

    def _hooks(self, x: torch.Tensor, sink: Sink, covered: set[int]) -> None:
        """Capture pass. Output gradients are consumed while the backward runs, through
        pre-hooks on the layers' backward nodes, and freed at once (as autograd frees
        activations), except for the *terminal* layers whose backward node never runs
        (nothing below them needs a gradient): their gradients are requested as edges.
        Which nodes run is recorded at calibration; a batch whose layer calls differ from
        that record requests every edge instead (holding all output gradients at once) and
        updates the record.
        """
        rec = cap.Recorder(x.shape[0])
        with rec:
            lp = check_log_prob(self.model.log_prob(x), x.shape[0])
        calls: list = rec.calls
        if not calls:
            return
        resolved = self._resolve_all(calls)
        signature = _signature(calls)
        streamed = self._terminal is not None and signature == self._signature
        fired: list[int] = []

        def pre_hook(i: int):
            def hook(grad_outputs):
                fired.append(i)
                if streamed:
                    delta = grad_outputs[calls[i].edge.output_nr]
                    if delta is not None:
                        self._contribute_call(calls[i], delta, resolved, sink, covered)
                    calls[i] = None  # lets the layer's input be freed with its node
            return hook

        wanted = self._terminal if streamed else list(range(len(calls)))
        hooked = [i for i in range(len(calls)) if i not in set(wanted)] if streamed else wanted
        handles = [calls[i].edge.node.register_prehook(pre_hook(i)) for i in hooked]
        try:
            deltas = torch.autograd.grad(lp.sum(), [calls[i].edge for i in wanted],
                                         allow_unused=True, retain_graph=not streamed)
        finally:
            for h in handles:
                h.remove()
        del lp
        if not streamed:
            self._contribute_all(calls, deltas, sink, covered, resolved)
            self._signature = signature
            self._terminal = [i for i in range(len(calls)) if i not in set(fired)]
            return
        if len(fired) + len(wanted) != len(calls):  # the graph changed shape: redo safely
            sink.out.zero_()
            sink.touched.clear()
            self._terminal = None
            self._hooks(x, sink, covered)
            return
        for i, delta in zip(wanted, deltas, strict=True):
            if delta is not None:
                self._contribute_call(calls[i], delta, resolved, sink, covered)

    def _find_terminal(self, lp: torch.Tensor, calls: list) -> None:
        """Record which layer calls' backward nodes never run (see :meth:`_hooks`)."""
        fired: list[int] = []
        handles = [c.edge.node.register_prehook(lambda _, i=i: fired.append(i))
                   for i, c in enumerate(calls)]
        try:
            if calls:
                torch.autograd.grad(lp.sum(), [c.edge for c in calls], allow_unused=True,
                                    retain_graph=True)
        finally:
            for h in handles:
                h.remove()
        self._signature = _signature(calls)
        self._terminal = [i for i in range(len(calls)) if i not in set(fired)]

    def _resolve_all(self, calls: list) -> dict[int, tuple]:
        resolved: dict[int, tuple] = {}
        for call in calls:
            for t in (call.w_used, call.bias):
                if t is not None and t.requires_grad and id(t) not in resolved:
                    resolved[id(t)] = self._resolve(t)
        return resolved

    def _contribute_all(self, calls, deltas, sink: Sink, covered: set[int],
                        resolved: dict[int, tuple] | None = None) -> None:
        resolved = resolved if resolved is not None else self._resolve_all(calls)
        for call, delta in zip(calls, deltas, strict=True):
            if delta is not None:
                self._contribute_call(call, delta, resolved, sink, covered)

    @torch.no_grad()
    def _contribute_call(self, call, delta, resolved, sink: Sink, covered: set[int]) -> None:
        if call.inp._version != call.version:
            raise FisherScoreError(
                "a linear/conv input was modified in place after the layer used it; "
                "use method='func' for this model."
            )
        delta = delta.detach()
        for tensor, is_weight in ((call.w_used, True), (call.bias, False)):
            if tensor is not None and tensor.requires_grad:
                self._contribute(call, delta, is_weight, resolved[id(tensor)], sink, covered)

    def _resolve(self, t: torch.Tensor) -> tuple:
        """How tensor ``t`` used by an op relates to the selected parameters."""
        k = self.index.get(id(t))
        if k is not None:
            return ("direct", k)
        if t.grad_fn is None or not cap.param_function(t):
            return ("none",)
        leaves = _leaf_indices(t, self.index)
        if len(leaves) == 1:
            mask = cap.elementwise_mask(t, self.params[leaves[0]])
            if mask is not None:
                return ("mask", leaves[0], mask.detach())
        return ("derived", leaves)

    def _contribute(self, call, delta, is_weight, how, sink: Sink, covered: set[int]) -> None:
        if how[0] == "none":
            return
        B = delta.shape[0]
        if how[0] in ("direct", "mask") and how[1] not in covered:
            return
        if is_weight and how[0] in ("direct", "mask"):
            fac = sink.factors(how[1])
            if fac is not None:
                mask = how[2].reshape(call.weight.shape) if how[0] == "mask" else None
                z = cap.kron_weight(call, delta, *fac, mask=mask)
                if z is not None:
                    sink.add_projected(how[1], z)
                    return
        g = cap.weight_grads(call, delta) if is_weight else cap.bias_grads(call, delta)
        used = call.w_used if is_weight else call.bias
        g = g.reshape(B, *used.shape)
        if how[0] == "direct":
            sink.add(how[1], g)
        elif how[0] == "mask":
            sink.add(how[1], g * how[2])
        else:
            ks = [k for k in how[1] if k in covered]
            if not ks:  # its leaves are all on the torch.func path (CUDA crash, issue 19)
                return
            pieces = cap.push_back(used, [self.params[k] for k in ks], g)
            for k, piece in zip(ks, pieces, strict=True):
                if piece is not None:
                    sink.add(k, piece)

    def _func(self, x: torch.Tensor, ks: list[int], sink: Sink) -> None:
        wrapper = _LogProb(self.model)
        chosen = {f"model.{self.names[k]}": self.params[k].detach() for k in ks}

        def log_prob_one(p: dict, xi: torch.Tensor) -> torch.Tensor:
            return functional_call(wrapper, p, (xi.unsqueeze(0),), strict=False).sum()

        per_example = vmap(grad(log_prob_one), in_dims=(None, 0), randomness="different")
        numel = sum(self.params[k].numel() for k in ks)
        step = max(1, min(x.shape[0], _FUNC_CHUNK_BYTES // (4 * numel)))
        with torch.no_grad():  # torch.func.grad ignores an outer no_grad; the graph does not
            for s in range(0, x.shape[0], step):
                g = per_example(chosen, x[s : s + step])
                for k in ks:
                    sink.add(k, g[f"model.{self.names[k]}"], rows=slice(s, s + step))

    def _loop(self, x: torch.Tensor, ks: list[int], sink: Sink) -> None:
        ps = [self.params[k] for k in ks]
        for i in range(x.shape[0]):
            lp = check_log_prob(self.model.log_prob(x[i : i + 1]), 1)
            gs = torch.autograd.grad(lp.sum(), ps, allow_unused=True)
            with torch.no_grad():
                for k, g in zip(ks, gs, strict=True):
                    if g is not None:
                        sink.add(k, g.unsqueeze(0), rows=slice(i, i + 1))


def _signature(calls: list) -> list[tuple]:
    return [(c.kind, tuple(c.weight.shape) if c.weight is not None else None) for c in calls]


def _leaf_indices(t: torch.Tensor, index: dict[int, int]) -> list[int]:
    """Selected parameters reached from ``t``'s autograd graph (through AccumulateGrad)."""
    found, seen, stack = [], set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)
        if var is not None and id(var) in index and index[id(var)] not in found:
            found.append(index[id(var)])
        stack.extend(fn for fn, _ in node.next_functions)
    return sorted(found)


def select_parameters(
    model: nn.Module, params: Sequence[str] | Callable[[str, torch.Tensor], bool] | None
) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors of the parameters to score, in ``named_parameters()`` order."""
    named = list(model.named_parameters())
    if params is None:
        chosen = [(n, p) for n, p in named if p.requires_grad]
    elif callable(params):
        chosen = [(n, p) for n, p in named if params(n, p)]
    else:
        if isinstance(params, str):
            raise FisherScoreError(
                f"params must be a list of parameter names or a predicate; got the string "
                f"{params!r}. Wrap it in a list: params=[{params!r}]."
            )
        wanted = list(params)
        known = {n for n, _ in named}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise FisherScoreError(
                f"params names {unknown[:5]} are not parameters of the model; choose from "
                f"model.named_parameters() (e.g. {sorted(known)[:5]})."
            )
        chosen = [(n, p) for n, p in named if n in set(wanted)]
    if not chosen:
        raise FisherScoreError(
            "params selected no parameters (empty list, a predicate that is always False, or "
            "a model whose parameters all have requires_grad=False); select at least one."
        )
    return [n for n, _ in chosen], [p for _, p in chosen]
