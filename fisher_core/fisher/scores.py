"""Fisher scores ``U(x) = ∇θ log pθ(x)`` of any model with ``log_prob``, projected and normalised.

:func:`fisher_scores` embeds a data set in one call; :class:`FisherScorer` keeps what is
estimated on a *reference* set (the random projection, the mean score, the diagonal Fisher
information) so that other data can be transformed consistently: ``fit`` on set A (e.g.
generator samples, as the adversarial-Fisher-vector paper does), ``transform`` set B.

Per example ``i`` the pipeline is

1. ``g_i = ∇θ log p(x_i)`` over the selected parameters (flattened in
   ``named_parameters()`` order), computed per batch by :mod:`._persample` and projected as
   it is produced: ``u_i = Rᵀ g_i`` (``dim`` numbers; ``R`` = identity when ``dim=None``);
2. ``center=True``: ``u_i − m`` with ``m`` the mean score on the reference set;
3. ``normalize="fim_diag"``: divide by ``√I + 1e-6`` with ``I`` the empirical diagonal
   Fisher information of the projected scores on the reference set, ``E[u²]`` (or the
   variance ``E[(u − m)²]`` when centring, as in Zhai et al. 2019). With a projection this
   is the diagonal *in the projected space*. ``normalize="fim_diag_exact"`` uses the exact
   parameter-space diagonal instead: ``Rᵀ((g_i − m_θ) / (√I_θ + 1e-6))``, which costs a
   separate pass over the reference set and explicit per-example gradients;
4. ``power``: signed power ``sign(z)|z|^power``; ``l2``: ``z / max(‖z‖, 1e-12)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._inputs import Data, batches, count, model_device, stack
from ._moments import Progress, _Moments, _phase, _Progress
from ._persample import (
    METHODS,
    FisherScoreError,
    GradEngine,
    ModelProtocolError,
    Sink,
    scoring_state,
    select_parameters,
)
from .projection import PROJECTIONS, IdentityProjection, Projection, make_projection

__all__ = ["FisherScoreError", "FisherScorer", "ModelProtocolError", "fisher_scores"]

NORMALIZATIONS = (None, "fim_diag", "fim_diag_exact")
_EPS = 1e-6  # added to √I, as in the AFV reference code
_STATS_BYTES = 256 << 20  # per-batch budget for exact parameter-space statistics



class FisherScorer(BaseEstimator):
    """Projected, optionally normalised Fisher scores of a model with ``log_prob``.

    Parameters
    ----------
    model : nn.Module
        Any module with ``log_prob(x) -> (B,)`` (per-example log-likelihood in nats).
    dim : int or None, default=512
        Output dimension; ``None`` (with ``projection=None``) keeps the exact gradient (P).
    projection : {"sparse", "gaussian", "kron"} or None, default="sparse"
        Random projection (see :mod:`fisher_core.fisher.projection`).
    normalize : {None, "fim_diag", "fim_diag_exact"}, default=None
        Diagonal Fisher-information scaling estimated on the reference set (module docstring).
    center : bool, default=False
        Subtract the mean score of the reference set.
    params : list of str, callable or None, default=None
        Parameters to differentiate: names, or a predicate ``(name, param) -> bool``;
        ``None`` takes every parameter with ``requires_grad``.
    batch_size : int, default=64
        Examples per batched pass.
    seed : int, default=0
        Seed of the projection.
    device : str, torch.device or None, default=None
        Where to compute; ``None`` uses the model's device. The model is moved there for the
        duration of a call and moved back afterwards.
    power : float or None, default=None
        Signed power normalisation exponent (0.5 for "improved" Fisher vectors).
    l2 : bool, default=False
        L2-normalise each output vector (zero vectors stay zero).
    method : {"auto", "hooks", "func", "loop"}, default="auto"
        Per-example gradient path: captured linear/conv calls with ``torch.func`` fallback,
        only captured calls, ``vmap(grad)``, or a Python loop of backward passes.

    Attributes
    ----------
    param_names_ : list of str
        Differentiated parameters, in output order.
    n_params_ : int
        Their total size P.
    projection_ : Projection
        The random map (identity when unprojected).
    mean_ : ndarray of shape (dim,) or None
        Mean projected score of the reference set (``center=True``, ``"fim_diag"``).
    fim_diag_ : ndarray of shape (dim,) or None
        Projected-space diagonal Fisher information (``normalize="fim_diag"``).
    param_mean_, param_fim_diag_ : ndarray of shape (P,) or None
        Parameter-space statistics (``normalize="fim_diag_exact"``).
    n_reference_ : int
        Examples in the reference set (0 when nothing had to be estimated).
    plan_ : dict
        Parameter names per gradient path, known after the first batch.

    Notes
    -----
    The model is scored in eval mode (restored afterwards, module by module): BatchNorm in
    train mode normalises with batch statistics, which ties the examples of a batch together,
    and dropout would make the score random. ``requires_grad`` flags are restored, no
    ``.grad`` is written and no hook is left on the model.

    ``method="auto"`` runs one batched forward/backward per batch and gets the per-example
    gradients of every parameter used as the weight or bias of ``F.linear``, ``F.conv1d``,
    ``F.conv2d``, eval-mode ``F.batch_norm``, ``F.layer_norm`` or ``F.group_norm`` (also
    through a derived weight such as ``weight * mask`` or a parametrization, and for layers
    used several times); the first few examples verify this against autograd, and any other
    parameter is differentiated with ``torch.func.vmap(grad)`` (or, failing that, a loop).
    Projections happen per layer as the backward pass produces the gradients, so memory is
    one batch's activations plus the (N, dim) output.

    Examples
    --------
    AFV-style features: statistics from generator samples, applied to real data::

        scorer = FisherScorer(disc, dim=None, projection=None, center=True,
                              normalize="fim_diag").fit(generated)
        features = scorer.transform(real_images)
    """

    def __init__(self, model: nn.Module, *, dim: int | None = 512,
                 projection: str | None = "sparse", normalize: str | None = None,
                 center: bool = False,
                 params: Sequence[str] | Callable[[str, torch.Tensor], bool] | None = None,
                 batch_size: int = 64, seed: int = 0, device: str | torch.device | None = None,
                 power: float | None = None, l2: bool = False, method: str = "auto"):
        self.model = model
        self.dim = dim
        self.projection = projection
        self.normalize = normalize
        self.center = center
        self.params = params
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.power = power
        self.l2 = l2
        self.method = method

    # ---- public API ------------------------------------------------------------------------

    def fit(self, x: Data, *, progress: Progress = None) -> FisherScorer:
        """Build the projection and estimate the reference statistics on ``x``.

        Parameters
        ----------
        x : Tensor, ndarray or iterable of batches
            Reference set, shape (N, ...) (e.g. model samples for AFV-style features).
        progress : callable or None, default=None
            Called as ``progress(done, total)`` after every batch.

        Returns
        -------
        FisherScorer
            self.
        """
        self._setup()
        if self._needs_stats():
            with self._scoring():
                if self._exact_stats():
                    self._fit_param_stats(x, _Progress(progress, count(x)))
                else:
                    moments = _Moments()
                    for z in self._raw_batches(x, _Progress(progress, count(x))):
                        moments.update(z)
                    self._set_output_stats(moments)
        return self

    def transform(self, x: Data, *, progress: Progress = None,
                  output: str = "numpy") -> np.ndarray | torch.Tensor:
        """Fisher scores of ``x`` with the fitted projection and statistics.

        Parameters
        ----------
        x : Tensor, ndarray or iterable of batches
            Data, shape (N, ...), as ``model.log_prob`` takes it. A tensor already on the
            working device is used where it is (no copy through host memory).
        progress : callable or None, default=None
            Called as ``progress(done, total)`` after every batch.
        output : {"numpy", "torch"}, default="numpy"
            ``"torch"``: a float32 tensor left on the working device (no copy to the host).

        Returns
        -------
        ndarray or Tensor of shape (N, dim), float32
        """
        check_is_fitted(self, "projection_")
        _check_output(output)
        with self._scoring():
            outs = [self._finish(z) for z in self._raw_batches(x, _Progress(progress, count(x)))]
        return _collect(outs, output)

    def fit_transform(self, x: Data, *, progress: Progress = None,
                      output: str = "numpy") -> np.ndarray | torch.Tensor:
        """Fit on ``x`` and return its scores (one pass unless ``"fim_diag_exact"``);
        ``output`` as in :meth:`transform`."""
        _check_output(output)
        if self._exact_stats_requested():
            n = count(x)
            total = 2 * n if n is not None else None
            self.fit(x, progress=_phase(progress, 0, total))
            return self.transform(x, progress=_phase(progress, self.n_reference_, total),
                                  output=output)
        self._setup()
        moments = _Moments()
        keep = output == "torch"  # on the device; else to the host as batches arrive
        with self._scoring():
            raw = []
            for z in self._raw_batches(x, _Progress(progress, count(x))):
                moments.update(z)
                raw.append(z if keep else z.cpu().numpy())
        if self._needs_stats():
            self._set_output_stats(moments)
        if keep:
            return _collect([self._finish(z) for z in raw], output)
        out = stack(raw, self.projection_.dim)
        for s in range(0, out.shape[0], 4096):  # normalise in place, a block at a time
            out[s : s + 4096] = self._finish(torch.from_numpy(out[s : s + 4096])).numpy()
        return out

    def fit_transform_raw(self, raw: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
        """Centre / scale / power / L2 scores computed elsewhere, with statistics of all rows.

        ``raw`` are this scorer's projected scores before any of those steps (what
        ``FisherScorer(..., normalize=None, center=False)`` returns with the same ``dim``,
        ``projection`` and ``seed``), e.g. gathered from shards computed on several workers;
        the result is :meth:`fit_transform` of the same data. For rows that do not fit in
        memory, :meth:`fit_raw` on their chunks, then :meth:`transform_raw` chunk by chunk.

        Parameters
        ----------
        raw : ndarray of shape (N, dim)
        batch_size : int, default=4096
            Rows per block (bounds the float64 temporaries).

        Returns
        -------
        ndarray of shape (N, dim), float32
        """
        blocks = [raw[s:s + batch_size] for s in range(0, len(raw), batch_size)] or [raw]
        self.fit_raw(blocks)
        return np.concatenate([self.transform_raw(b) for b in blocks])

    def fit_raw(self, chunks: Iterable[np.ndarray]) -> FisherScorer:
        """Estimate the centre and diagonal FIM from raw projected scores, chunk by chunk.

        Parameters
        ----------
        chunks : iterable of ndarray of shape (n_i, dim)
            Raw scores (see :meth:`fit_transform_raw`), read one at a time.

        Returns
        -------
        FisherScorer
            self.
        """
        self._setup()
        moments = _Moments()
        for raw in chunks:
            moments.update(torch.from_numpy(self._check_raw(raw)))
        if self._needs_stats():
            self._set_output_stats(moments)
        return self

    def transform_raw(self, raw: np.ndarray) -> np.ndarray:
        """Centre / scale / power / L2 one block of raw scores with the fitted statistics."""
        check_is_fitted(self, "projection_")
        return self._finish(torch.from_numpy(self._check_raw(raw))).numpy()

    def _check_raw(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != self.projection_.dim:
            raise FisherScoreError(f"raw must be (N, {self.projection_.dim}) projected scores; "
                                   f"got shape {raw.shape}.")
        return raw

    def _setup(self) -> None:
        _check_options(self)
        self.param_names_, params = select_parameters(self.model, self.params)
        self.n_params_ = int(sum(p.numel() for p in params))
        self.device_ = torch.device(self.device) if self.device is not None else model_device(
            self.model)
        self.engine_ = GradEngine(self.model, self.param_names_, params, self.method)
        self.projection_: Projection = make_projection(
            self.projection, self.engine_.blocks, self.dim, seed=self.seed).to(self.device_)
        self.mean_ = self.fim_diag_ = self.param_mean_ = self.param_fim_diag_ = None
        self._scales = self._offset = None
        self.n_reference_ = 0
        self.plan_: dict[str, list[str]] = {}

    def _needs_stats(self) -> bool:
        return self.center or self.normalize is not None

    def _exact_stats_requested(self) -> bool:
        return self.normalize == "fim_diag_exact" and self.projection is not None

    def _exact_stats(self) -> bool:
        return self._exact_stats_requested() and not isinstance(self.projection_,
                                                                IdentityProjection)

    @contextmanager
    def _scoring(self):
        model = self.model
        home = model_device(model)
        moved = home != self.device_
        if moved:
            model.to(self.device_)
        try:
            with scoring_state(model, self.engine_.params):
                yield
        finally:
            if moved:
                model.to(home)

    # ---- batches ---------------------------------------------------------------------------

    def _raw_batches(self, x: Data, progress: _Progress, projection: Projection | None = None,
                     batch_size: int | None = None, scales: Any = "fitted") -> Iterator:
        """Projected per-example scores u = Rᵀ g, one (B, dim) tensor per batch."""
        projection = projection or self.projection_
        scales = self._scales if scales == "fitted" else scales
        dtype = self.engine_.params[0].dtype
        for xb in batches(x, batch_size or self.batch_size, dtype, self.device_):
            if self.engine_.plan is None:
                plan = self.engine_.calibrate(xb[:4])
                self.plan_ = {k: [self.param_names_[i] for i in v] for k, v in plan.items()}
            sink = Sink(projection, xb.shape[0], device=self.device_, scales=scales)
            self.engine_.run(xb, sink)
            progress.step(xb.shape[0])
            yield sink.out

    def _finish(self, z: torch.Tensor) -> torch.Tensor:
        """Centre / scale / power / L2 one (B, dim) batch of raw projected scores (float32,
        on ``z``'s device)."""
        z = z.to(torch.float64)
        if self._offset is not None:
            z = z - self._offset.to(z.device)
        if self.mean_ is not None and self.center:
            z = z - torch.from_numpy(self.mean_).to(z.device)
        if self.fim_diag_ is not None:
            z = z / (torch.from_numpy(self.fim_diag_).to(z.device).sqrt() + _EPS)
        if self.power is not None:
            z = torch.sign(z) * z.abs() ** self.power
        if self.l2:
            z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return z.to(torch.float32)

    # ---- reference statistics --------------------------------------------------------------

    def _set_output_stats(self, moments: _Moments) -> None:
        if moments.n == 0:
            raise FisherScoreError("the reference set holds zero examples; pass at least one.")
        self.n_reference_ = moments.n
        self.mean_ = moments.mean.cpu().numpy()
        if self.normalize is not None:
            second = moments.var() if self.center else moments.second_moment()
            self.fim_diag_ = second.cpu().numpy()

    def _fit_param_stats(self, x: Data, progress: _Progress) -> None:
        """Parameter-space mean and diagonal Fisher information, then the scaling factors."""
        identity = IdentityProjection(self.engine_.blocks)
        step = max(1, min(self.batch_size, _STATS_BYTES // (4 * self.n_params_)))
        moments = _Moments()
        for g in self._raw_batches(x, progress, identity, step, scales=None):
            moments.update(g)
        if moments.n == 0:
            raise FisherScoreError("the reference set holds zero examples; pass at least one.")
        self.n_reference_ = moments.n
        fim = moments.var() if self.center else moments.second_moment()
        self.param_mean_ = moments.mean.float().cpu().numpy()
        self.param_fim_diag_ = fim.float().cpu().numpy()
        scale = (1.0 / (fim.sqrt() + _EPS)).float().to(self.device_)
        offs = identity.offsets
        self._scales = [scale[offs[k] : offs[k + 1]] for k in range(len(offs) - 1)]
        if self.center:
            centre = (moments.mean.float().to(self.device_) * scale)[None]  # (1, P)
            self._offset = self.projection_.project(centre)[0].double()


# ---- helpers --------------------------------------------------------------------------------


def _check_options(s: FisherScorer) -> None:
    model = s.model
    if not isinstance(model, nn.Module) or not callable(getattr(model, "log_prob", None)):
        raise ModelProtocolError(
            f"model must be a torch.nn.Module with a log_prob(x) -> (B,) method; got "
            f"{type(model).__name__} without log_prob. Add a log_prob method that returns "
            "one log-likelihood (nats) per example."
        )
    if s.projection is not None and s.projection not in PROJECTIONS:
        raise FisherScoreError(
            f"projection must be one of {sorted(PROJECTIONS)} or None; got {s.projection!r}."
        )
    if s.projection is None and s.dim is not None:
        raise FisherScoreError(
            f"dim={s.dim!r} needs a projection: pass projection='sparse' (or 'gaussian', "
            "'kron'), or dim=None for exact, unprojected scores."
        )
    if s.projection is not None and (isinstance(s.dim, bool) or not isinstance(s.dim, int)
                                     or s.dim < 1):
        raise FisherScoreError(
            f"dim must be a positive integer when projection={s.projection!r}; got {s.dim!r}."
        )
    if s.normalize not in NORMALIZATIONS:
        raise FisherScoreError(f"normalize must be one of {NORMALIZATIONS}; got {s.normalize!r}.")
    if s.method not in METHODS:
        raise FisherScoreError(f"method must be one of {METHODS}; got {s.method!r}.")
    for name, lo in (("batch_size", 1), ("seed", 0)):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise FisherScoreError(f"{name} must be an integer >= {lo}; got {v!r}.")
    if s.power is not None and not (isinstance(s.power, int | float) and s.power > 0):
        raise FisherScoreError(f"power must be a positive number or None; got {s.power!r}.")


def _check_output(output: str) -> None:
    if output not in ("numpy", "torch"):
        raise FisherScoreError(f"output must be 'numpy' or 'torch'; got {output!r}.")


def _collect(outs: list[torch.Tensor], output: str) -> np.ndarray | torch.Tensor:
    if output == "numpy":
        return stack(outs, 0)
    if not outs:
        raise FisherScoreError("x holds zero examples; pass at least one.")
    return torch.cat(outs)


def fisher_scores(
    model: nn.Module,
    x: Data,
    *,
    dim: int | None = 512,
    projection: str | None = "sparse",
    normalize: str | None = None,
    center: bool = False,
    params: Sequence[str] | Callable[[str, torch.Tensor], bool] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    fim_samples: Data | None = None,
    power: float | None = None,
    l2: bool = False,
    progress: Progress = None,
    method: str = "auto",
    output: str = "numpy",
) -> np.ndarray | torch.Tensor:
    """Per-example Fisher scores ``∇θ log pθ(x_i)`` of ``model``, projected to ``dim``.

    Parameters
    ----------
    model : nn.Module
        Any module with ``log_prob(x) -> (B,)``.
    x : Tensor, ndarray or iterable of batches
        Data, shape (N, ...), as ``model.log_prob`` takes it.
    fim_samples : Tensor, ndarray, iterable or None, default=None
        Reference set for ``center`` / ``normalize`` (e.g. samples of the model or of a
        GAN generator); ``None`` estimates them on ``x`` itself.
    progress : callable or None, default=None
        ``progress(done, total)`` after every batch (both passes when ``fim_samples`` is given).
    dim, projection, normalize, center, params, batch_size, seed, device, power, l2, method
        See :class:`FisherScorer`.
    output : {"numpy", "torch"}, default="numpy"
        ``"torch"``: a tensor left on the working device (``device``, else the model's).

    Returns
    -------
    ndarray or Tensor of shape (N, dim), float32
        ``dim = P`` (number of selected parameters) when ``dim=None``.
    """
    scorer = FisherScorer(model, dim=dim, projection=projection, normalize=normalize,
                          center=center, params=params, batch_size=batch_size, seed=seed,
                          device=device, power=power, l2=l2, method=method)
    if fim_samples is None or not (center or normalize):
        return scorer.fit_transform(x, progress=progress, output=output)
    n_ref, n_x = count(fim_samples), count(x)
    total = n_ref + n_x if n_ref is not None and n_x is not None else None
    scorer.fit(fim_samples, progress=_phase(progress, 0, total))
    return scorer.transform(x, progress=_phase(progress, scorer.n_reference_, total),
                            output=output)
