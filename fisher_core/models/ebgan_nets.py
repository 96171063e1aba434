"""The two networks of the energy-based GAN (:mod:`fisher_core.models.ebgan`).

D is a 3×3 convolution followed by ``n_scale`` stride-2 4×4 convolutions (LeakyReLU 0.2 after
each) and a spectrally normalised linear read-out a(x); G mirrors it with transposed
convolutions, BatchNorm and a tanh output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["Discriminator", "Generator", "frozen"]


def _widths(base: int, n: int) -> list[int]:
    """Feature maps per scale, finest first: base, 2·base, ... capped at 4·base."""
    return [base * min(2**i, 4) for i in range(n + 1)]


# D(x) from the logit a(x), per (objective, sigmoid): the negative energy log_prob returns
_READOUTS = {
    ("least_squares", True): torch.sigmoid,
    ("least_squares", False): lambda a: a,
    ("log_loss", True): F.logsigmoid,  # log σ(a), stable for any a
}


class Discriminator(nn.Module):
    """Spectrally normalised conv net: (B, C, H', W') in [−1, 1] → (B,) scalar D(x).

    :meth:`logit` is the last linear layer's output a(x); ``forward`` applies the objective's
    read-out (σ(a) or a for least squares, log σ(a) for the log loss).
    """

    def __init__(self, cfg: Any, grid: tuple[int, int]):  # cfg: an EBGANConfig
        super().__init__()
        w = _widths(cfg.d_width, cfg.n_scale)
        stem = spectral_norm(nn.Conv2d(cfg.channels, w[0], 3, padding=1))
        convs = [stem] + [
            spectral_norm(nn.Conv2d(w[i], w[i + 1], 4, stride=2, padding=1))
            for i in range(cfg.n_scale)
        ]
        # one block per scale; block outputs (after the activation) feed the D-pool baseline
        self.blocks = nn.ModuleList(nn.Sequential(c, nn.LeakyReLU(0.2)) for c in convs)
        self.out = spectral_norm(nn.Linear(w[-1] * grid[0] * grid[1], 1))
        self.readout = _READOUTS[(cfg.objective, cfg.sigmoid)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output, finest first: (B, w_i, H'/2^i, W'/2^i)."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """a(x), the read-out before any sigmoid, shape (B,)."""
        h = self.features(x)[-1]
        return self.out(h.flatten(1)).squeeze(1)  # (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.logit(x))


class Generator(nn.Module):
    """z (B, Z) → images (B, C, H', W') in [−1, 1] (tanh)."""

    def __init__(self, cfg: Any, grid: tuple[int, int]):  # cfg: an EBGANConfig
        super().__init__()
        w = _widths(cfg.g_width, cfg.n_scale)[::-1]  # coarsest first
        self.grid = grid
        self.w0 = w[0]
        self.inp = nn.Linear(cfg.latent_dim, w[0] * grid[0] * grid[1])
        self.inp_bn = nn.BatchNorm2d(w[0])
        # a 4×4 stride-2 transposed convolution costs ~2× less than upsampling + 3×3 conv
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(w[i], w[i + 1], 4, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(w[i + 1]), nn.ReLU())
            for i in range(cfg.n_scale)
        )
        self.to_img = nn.Conv2d(w[-1], cfg.channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z).view(z.shape[0], self.w0, *self.grid)  # (B, w0, h, w)
        h = F.relu(self.inp_bn(h))
        for up in self.ups:
            h = up(h)  # (B, w_i, 2h, 2w)
        return torch.tanh(self.to_img(h))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients to ``module``'s parameters (saves their weight gradients)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
