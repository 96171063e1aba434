"""Causal convolutions, the gated PixelCNN block and discretised output distributions.

Causality is obtained by padding and shifting instead of multiplying weights by a mask, so
every layer is a plain ``nn.Conv2d``: per-example gradient tools that match layer classes
exactly (BackPACK, Opacus) recognise them, and there are no masked-out parameters whose
Fisher score would be identically zero.

Raster order is row by row, left to right. Two stacks (van den Oord et al. 2016, "Conditional
image generation with PixelCNN decoders") avoid the blind spot of a single masked stack:

- the *vertical* stack at row ``r`` sees input rows ``≤ r`` (every column within reach); it is
  shifted down by one row before it feeds the horizontal stack, so that only rows ``< r``
  reach the output at row ``r``;
- the *horizontal* stack sees the current row left of the current column. Its first layer is
  "type A" (excludes the current pixel, by shifting right by one); later layers are "type B"
  (include it, since their input at that position already excludes the pixel itself).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GatedBlock",
    "HorizontalConv",
    "VerticalConv",
    "discretized_logistic_log_prob",
    "sample_discretized_logistic",
    "shift_down",
    "shift_right",
]


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Shift a (B, C, H, W) map down by one row (zeros enter at the top)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]  # (B, C, H, W)


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Shift a (B, C, H, W) map right by one column (zeros enter on the left)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]  # (B, C, H, W)


class VerticalConv(nn.Module):
    """Convolution whose output at row ``r`` depends on input rows ``r − d·(k//2) .. r``.

    A ``(k//2 + 1) × k`` kernel padded only at the top (and symmetrically left/right).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        half = kernel_size // 2
        # (left, right, top, bottom): nothing below row r may enter.
        self.pad = (dilation * half, dilation * half, dilation * half, 0)
        self.conv = nn.Conv2d(
            in_channels, out_channels, (half + 1, kernel_size), dilation=dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class HorizontalConv(nn.Module):
    """Convolution along the row: output at column ``j`` sees columns ``≤ j`` (type B) or
    ``< j`` (type A) of the same row.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        mask_type: str = "B",
        dilation: int = 1,
    ):
        super().__init__()
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B'; got {mask_type!r}.")
        half = kernel_size // 2
        self.mask_type = mask_type
        self.pad = (dilation * half, 0, 0, 0)
        self.conv = nn.Conv2d(in_channels, out_channels, (1, half + 1), dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, self.pad))
        return shift_right(y) if self.mask_type == "A" else y


def _gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation tanh(a) ⊙ σ(b) over the two channel halves of x (B, 2F, H, W)."""
    a, b = x.chunk(2, dim=1)  # (B, F, H, W) each
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One gated PixelCNN layer with a vertical and a horizontal stack.

    ``first=True`` builds the input layer (type A horizontal conv, no residual connection).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        *,
        first: bool = False,
        dilation: int = 1,
    ):
        super().__init__()
        self.first = first
        self.v_conv = VerticalConv(in_channels, 2 * channels, kernel_size, dilation)
        self.h_conv = HorizontalConv(
            in_channels, 2 * channels, kernel_size, mask_type="A" if first else "B",
            dilation=dilation,
        )
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)

    def vertical(
        self, v: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The vertical stack: (next v (B, F, H, W), its link to the horizontal stack
        (B, 2F, H, W)). The link at row r comes from rows < r only."""
        v_pre = self.v_conv(v)  # (B, 2F, H, W)
        # The vertical stack reaches row r itself, so it must be shifted down one row before
        # it may inform the horizontal stack at row r.
        link = self.v_to_h(shift_down(v_pre))  # (B, 2F, H, W)
        if bias is not None:
            v_pre = v_pre + bias
        return _gate(v_pre), link

    def horizontal(
        self, h: torch.Tensor, link: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The horizontal stack: next h (B, F, H, W) from h and the vertical link."""
        h_pre = self.h_conv(h) + link  # (B, 2F, H, W)
        if bias is not None:
            h_pre = h_pre + bias
        h_new = self.h_out(_gate(h_pre))
        return h_new if self.first else h_new + h

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer on both stacks. ``bias`` (B, 4F, H, W), optional, is a conditioning map
        added before the gates (first half to the vertical stack, second half to the
        horizontal one), as in the conditional PixelCNN of van den Oord et al. (2016); it
        must depend only on what the model is conditioned on, never on the image."""
        v_bias, h_bias = (None, None) if bias is None else bias.chunk(2, dim=1)
        v_new, link = self.vertical(v, v_bias)
        return v_new, self.horizontal(h, link, h_bias)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(−d)) for d > 0, accurate for small and large d (Mächler 2012)."""
    return torch.where(
        d < math.log(2.0), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d))
    )


def discretized_logistic_log_prob(
    level: torch.Tensor,
    logit_pi: torch.Tensor,
    mu: torch.Tensor,
    log_s: torch.Tensor,
    levels: int,
) -> torch.Tensor:
    """Log-probability of integer levels under a discretised logistic mixture.

    Level ``k`` has centre ``v_k = 2k/(L−1) − 1`` in [−1, 1] and the bin
    ``[v_k − δ, v_k + δ]`` with ``δ = 1/(L−1)``; the first and last bins extend to ∓∞, so the
    ``L`` probabilities of one mixture component telescope to exactly 1 (PixelCNN++).

    Parameters
    ----------
    level : Tensor of shape (...), int64
        Levels in ``0 .. L − 1``.
    logit_pi, mu, log_s : Tensor of shape (..., K)
        Mixture logits, component locations and log-scales (in the [−1, 1] space).
    levels : int
        Number of levels ``L``.

    Returns
    -------
    Tensor of shape (...)
        Log-probabilities in nats.
    """
    half = 1.0 / (levels - 1)
    v = (level.to(mu.dtype) * (2.0 * half) - 1.0).unsqueeze(-1)  # (..., 1)
    inv_s = torch.exp(-log_s)
    upper = (v + half - mu) * inv_s  # (..., K)
    lower = (v - half - mu) * inv_s
    # σ(a) − σ(b) = σ(a) σ(−b) (1 − e^{−(a−b)}): no cancellation, no fallback needed.
    log_mid = F.logsigmoid(upper) + F.logsigmoid(-lower) + _log1mexp(2.0 * half * inv_s)
    lv = level.unsqueeze(-1)
    log_comp = torch.where(
        lv == 0,
        F.logsigmoid(upper),
        torch.where(lv == levels - 1, F.logsigmoid(-lower), log_mid),
    )
    return torch.logsumexp(F.log_softmax(logit_pi, dim=-1) + log_comp, dim=-1)


def sample_discretized_logistic(
    logit_pi: torch.Tensor,
    mu: torch.Tensor,
    log_s: torch.Tensor,
    levels: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw levels from a discretised logistic mixture (parameters of shape (N, K)).

    A continuous logistic draw rounded to the nearest bin centre (and clamped) has exactly the
    discretised distribution, because the bins tile the real line.

    Returns
    -------
    Tensor of shape (N,), int64
    """
    k = torch.multinomial(F.softmax(logit_pi, dim=-1), 1, generator=generator)  # (N, 1)
    m = mu.gather(-1, k).squeeze(-1)  # (N,)
    s = torch.exp(log_s.gather(-1, k).squeeze(-1))
    u = torch.rand(m.shape, generator=generator, device=m.device, dtype=m.dtype)
    u = u.clamp(1e-6, 1.0 - 1e-6)
    x = m + s * (torch.log(u) - torch.log1p(-u))
    return torch.round((x + 1.0) * 0.5 * (levels - 1)).clamp(0, levels - 1).long()
