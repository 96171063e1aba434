"""A small gated PixelCNN with categorical or discretised-logistic outputs.

Factorisation, in raster order over pixels and, within a pixel, over channels::

    p(x) = Π_{r, j} Π_c p(x[c, r, j] | x[:, <(r, j)], x[<c, r, j])

The gated trunk (vertical + horizontal stacks, :mod:`fisher_core.models.layers`) computes
features ``h[r, j]`` from strictly earlier pixels (all channels). A per-channel head then adds
the current pixel's earlier channels: ``z_c = relu(W h + U_c x[<c, r, j])`` and maps ``z_c`` to
the parameters of channel ``c`` (a grouped 1×1 convolution, one group per channel). For grey
images (C = 1) the head is an ordinary 1×1 MLP.

Inputs in [0, 1] are quantised to ``L`` levels (``round(x·(L−1))``) and fed to the network
rescaled to [−1, 1]. ``log_prob`` is exact and normalised over the ``L^(C·H·W)`` images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import ConfigError, GenerativeModel, check_images, make_generator, quantize
from .layers import GatedBlock, discretized_logistic_log_prob, sample_discretized_logistic

__all__ = ["PixelCNN", "PixelCNNConfig"]

_OUTPUTS = ("categorical", "logistic")


@dataclass
class PixelCNNConfig:
    """Hyper-parameters of :class:`PixelCNN`.

    Parameters
    ----------
    channels : int, default=1
        Image channels C (1 grey or 3 RGB).
    height, width : int, default=32
        Image size (used by ``sample``; ``log_prob`` takes any size).
    levels : int, default=4
        Quantisation levels L (2..256): categorical classes or logistic bins.
    output : {"categorical", "logistic"}, default="categorical"
        Per-channel distribution: a softmax over L levels, or a discretised logistic mixture.
    n_mix : int, default=5
        Logistic mixture components (``output="logistic"`` only).
    hidden : int, default=16
        Feature maps F of each gated stack.
    n_blocks : int, default=5
        Gated blocks, the first of which is the type-A input layer.
    kernel_size : int, default=3
        Odd kernel width k; each block reaches ``k//2`` rows further up (times its dilation).
    dilations : tuple of int or None, default=None
        Dilation of each block (length ``n_blocks``). ``None`` picks
        ``min(2^i, max(1, min(H, W) // 4))`` for block ``i`` and 1 for the last block, e.g.
        (1, 2, 4, 8, 1) at 32×32 and (1, 2, 2, 2, 1) at 8×8. Dilations widen the receptive
        field at no cost in parameters; ``(1,) * n_blocks`` turns them off.
    head_hidden : int, default=32
        Width of the per-channel output head.
    """

    channels: int = 1
    height: int = 32
    width: int = 32
    levels: int = 4
    output: str = "categorical"
    n_mix: int = 5
    hidden: int = 16
    n_blocks: int = 5
    kernel_size: int = 3
    dilations: tuple[int, ...] | None = None
    head_hidden: int = 32

    def __post_init__(self) -> None:
        _check_int(self, "channels", 1, 3)
        _check_int(self, "height", 1, 4096)
        _check_int(self, "width", 1, 4096)
        _check_int(self, "levels", 2, 256)
        _check_int(self, "n_mix", 1, 64)
        _check_int(self, "hidden", 1, 4096)
        _check_int(self, "n_blocks", 1, 64)
        _check_int(self, "kernel_size", 1, 31)
        _check_int(self, "head_hidden", 1, 4096)
        if self.channels == 2:
            raise ConfigError("PixelCNNConfig.channels must be 1 (grey) or 3 (RGB); got 2.")
        if self.kernel_size % 2 == 0:
            raise ConfigError(
                f"PixelCNNConfig.kernel_size must be odd; got {self.kernel_size}. Use 3 or 5."
            )
        if self.output not in _OUTPUTS:
            raise ConfigError(
                f"PixelCNNConfig.output must be one of {_OUTPUTS}; got {self.output!r}."
            )
        if self.dilations is None:
            cap = max(1, min(self.height, self.width) // 4)
            self.dilations = tuple(min(2**i, cap) for i in range(self.n_blocks - 1)) + (1,)
        given = self.dilations
        try:
            self.dilations = tuple(int(d) for d in given)
        except (TypeError, ValueError):
            self.dilations = ()  # reported just below
        if len(self.dilations) != self.n_blocks or min(self.dilations) < 1:
            raise ConfigError(
                f"PixelCNNConfig.dilations must hold n_blocks={self.n_blocks} positive "
                f"integers (or be None for the automatic schedule); got {given!r}."
            )


def _check_int(cfg: object, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(
            f"{type(cfg).__name__}.{name} must be an integer in [{lo}, {hi}]; got {value!r}."
        )


class PixelCNN(GenerativeModel):
    """Gated PixelCNN (van den Oord et al. 2016) over ``L``-level images.

    Parameters
    ----------
    config : PixelCNNConfig or None, default=None
        Hyper-parameters; ``None`` uses the defaults (32×32 grey, 4 levels, ≈24k parameters).
    """

    family = "pixelcnn"
    # Tuned for the built-in sets: recognisable 32×32 faces after ~4 epochs (≈2 CPU minutes).
    training_defaults = {"lr": 1e-2, "batch_size": 32}
    # trunk features of strictly earlier pixels, (B, D, H, W), before the output head
    activation_layer = "head_in"

    def __init__(self, config: PixelCNNConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else PixelCNNConfig()
        C, F_, D = cfg.channels, cfg.hidden, cfg.head_hidden
        dil = cfg.dilations
        self.blocks = nn.ModuleList(
            GatedBlock(C if i == 0 else F_, F_, cfg.kernel_size, first=i == 0, dilation=dil[i])
            for i in range(cfg.n_blocks)
        )
        self.head_in = nn.Conv2d(F_, D, 1)
        # U_c: channel c of the current pixel sees its channels < c (none for c = 0).
        self.cond = nn.ModuleList(nn.Conv2d(c, D, 1, bias=False) for c in range(1, C))
        self.n_params_per_channel = cfg.levels if cfg.output == "categorical" else 3 * cfg.n_mix
        self.head_out = nn.Conv2d(C * D, C * self.n_params_per_channel, 1, groups=C)

    # ---- network ---------------------------------------------------------------------------

    def _to_input(self, level: torch.Tensor) -> torch.Tensor:
        return level.to(self.head_in.weight.dtype) * (2.0 / (self.config.levels - 1)) - 1.0

    def _trunk(self, x_in: torch.Tensor) -> torch.Tensor:
        """Features from strictly earlier pixels: (B, C, H, W) in [−1, 1] -> (B, D, H, W)."""
        v = h = x_in
        for block in self.blocks:
            v, h = block(v, h)
        return self.head_in(F.relu(h))

    def _head(self, feats: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """Per-channel parameters (B, C, P, H, W) from trunk features and the current pixel."""
        # self.cond[c - 1] serves channel c and reads channels 0 .. c − 1.
        z = [feats] + [feats + u(x_in[:, :c]) for c, u in enumerate(self.cond, start=1)]
        z = F.relu(torch.cat(z, dim=1))  # (B, C·D, H, W)
        out = self.head_out(z)  # (B, C·P, H, W)
        B, _, H, W = out.shape
        return out.view(B, self.config.channels, self.n_params_per_channel, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Distribution parameters for every pixel and channel.

        Parameters
        ----------
        x : Tensor of shape (B, C, H, W)
            Images in [0, 1].

        Returns
        -------
        Tensor of shape (B, C, P, H, W)
            ``P = L`` logits (categorical) or ``3·n_mix`` values (mixture logits, locations,
            log-scales) for logistic outputs. Entry ``[:, c, :, r, j]`` depends only on pixels
            before ``(r, j)`` and on channels ``< c`` of pixel ``(r, j)``.
        """
        check_images(x, channels=self.config.channels)
        return self.network(self._to_input(quantize(x, self.config.levels)))

    def network(self, x_in: torch.Tensor) -> torch.Tensor:
        """The network on an already scaled input (B, C, H, W) in [−1, 1] -> (B, C, P, H, W).

        Differentiable with respect to ``x_in`` (``forward`` quantises, which is not), so the
        autoregressive structure can be checked with autograd.
        """
        return self._head(self._trunk(x_in), x_in)

    # ---- protocol --------------------------------------------------------------------------

    def _log_prob_levels(self, params: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """Per-entry log-probabilities (B, C, H, W) of ``level`` under ``params``."""
        L = self.config.levels
        if self.config.output == "categorical":
            logp = F.log_softmax(params, dim=2)  # (B, C, L, H, W)
            return logp.gather(2, level.unsqueeze(2)).squeeze(2)
        K = self.config.n_mix
        p = params.permute(0, 1, 3, 4, 2)  # (B, C, H, W, 3K)
        logit_pi, mu, log_s = p[..., :K], p[..., K : 2 * K], p[..., 2 * K :].clamp(-7.0, 7.0)
        return discretized_logistic_log_prob(level, logit_pi, mu, log_s, L)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-likelihood of each image, in nats.

        Parameters
        ----------
        x : Tensor of shape (B, C, H, W)
            Images in [0, 1]; quantised to ``config.levels`` levels.

        Returns
        -------
        Tensor of shape (B,)
            ``Σ_{c, r, j} log p(level[c, r, j] | earlier entries)``.
        """
        check_images(x, channels=self.config.channels)
        level = quantize(x, self.config.levels)
        x_in = self._to_input(level)
        params = self._head(self._trunk(x_in), x_in)
        return self._log_prob_levels(params, level).sum(dim=(1, 2, 3))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """Draw ``n`` images autoregressively (one trunk pass per pixel).

        Parameters
        ----------
        n : int
            Number of images.
        generator : torch.Generator, int or None, default=None
            Source of randomness (a seed makes the draw reproducible); ``None`` uses torch's
            global generator.

        Returns
        -------
        Tensor of shape (n, C, H, W)
            Float images in [0, 1] on the ``L`` levels ``k / (L − 1)``.
        """
        cfg = self.config
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        gen = make_generator(generator, self.device)
        C, H, W, L = cfg.channels, cfg.height, cfg.width, cfg.levels
        level = torch.zeros(n, C, H, W, dtype=torch.long, device=self.device)
        for r in range(H):
            for j in range(W):
                feats = self._pixel_features(level, r, j)  # (n, D, 1, 1)
                for c in range(C):
                    x_px = self._to_input(level[:, :, r : r + 1, j : j + 1])
                    params = self._head(feats, x_px)[:, c, :, 0, 0]  # (n, P)
                    level[:, c, r, j] = self._draw(params, gen)
        return level.to(self.head_in.weight.dtype) / (L - 1)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(rows above, columns either side) that can influence a pixel's prediction."""
        cfg = self.config
        reach = sum(cfg.dilations) * (cfg.kernel_size // 2)
        # The vertical→horizontal link shifts down one row; type A shifts right one column.
        return reach + 1, reach + 1

    def _pixel_features(self, level: torch.Tensor, r: int, j: int) -> torch.Tensor:
        """Trunk features (B, D, 1, 1) at pixel (r, j), computed on a crop of the image.

        The prediction at (r, j) depends only on rows ``r − up .. r`` and columns
        ``j − side .. j + side``; zero padding at a crop edge only alters outputs outside that
        window, so the crop gives exactly the full-image features, much faster.
        """
        up, side = self.receptive_field
        r0, j0 = max(0, r - up), max(0, j - side)
        crop = level[:, :, r0 : r + 1, j0 : j + side + 1]  # (B, C, ≤ up+1, ≤ 2·side+1)
        return self._trunk(self._to_input(crop))[:, :, r - r0 : r - r0 + 1, j - j0 : j - j0 + 1]

    def _draw(self, params: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if self.config.output == "categorical":
            probs = F.softmax(params, dim=-1)
            return torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        K = self.config.n_mix
        return sample_discretized_logistic(
            params[:, :K], params[:, K : 2 * K], params[:, 2 * K :].clamp(-7.0, 7.0),
            self.config.levels, gen,
        )

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"family={self.family!r}, params={n:,}, levels={self.config.levels}"
