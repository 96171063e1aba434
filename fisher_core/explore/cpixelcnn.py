"""A PixelCNN conditioned on an embedding vector: a generative decoder p(x | z).

A direct decoder (:class:`fisher_core.explore.decode.Decoder` with ``architecture="direct"``)
predicts every pixel independently given z, so where several images fit z (between two faces,
after an edit) it draws their average: a blur. Yan, Ho & Abbeel (2019) propose a conditional
generative model instead; this is the autoregressive one::

    p(x | z) = Π_{r, j} Π_c p(x[c, r, j] | x[:, <(r, j)], z)

in raster order over ``L``-level images (the channels of one pixel are independent given the
earlier pixels and z). Decoding draws the pixels one after the other, so each one commits to a
single plausible image.

Network (van den Oord et al. 2016, "Conditional image generation with PixelCNN decoders"):

- conditioning map m(z): the (standardised) z → MLP → an (F, h0, w0) map with h0 ≈ H/8 →
  ``n_up`` × [nearest 2× upsampling + 3×3 convolution + ReLU] → cropped to (F, H, W). It
  depends on z only, so it carries the global layout and cannot break causality in x;
- gated blocks (:class:`fisher_core.models.layers.GatedBlock`, kernel 3, no dilation): block
  ℓ adds the bias W_ℓ m(z) (a 1×1 convolution to 4F channels) before its gates;
- output: the logits of a direct per-pixel prediction from m(z) alone, D(m) (a 1×1
  convolution to C·L), plus the head relu(W_in relu(h) + W_m m(z)) → a 1×1 convolution to
  C·L, the autoregressive correction. Training adds the cross-entropy of D(m) alone to the
  likelihood's (:meth:`ConditionalPixelCNN.objective`): without it the network learns to copy
  its neighbours long before it learns to read z, and greedy decoding then draws flat faces.

Decoding (:meth:`ConditionalPixelCNN.sample`) costs H·W small steps, batched over images: the
vertical stack advances one row at a time (its rows are cached), the horizontal stack and the
head run on the last ``n_blocks + 2`` columns of the current row only. Temperature 0 picks the
most likely level of every pixel in turn (deterministic and sharp); T > 0 samples from
softmax(logits / T).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import make_generator, quantize
from ..models.layers import GatedBlock

__all__ = ["ConditionalPixelCNN"]


def _cross_entropy(logits: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per example (B,) of logits (B, C, L, H, W) at levels (B, C, H, W)."""
    return F.cross_entropy(logits.transpose(1, 2), level, reduction="none").flatten(1).mean(1)

Chooser = Callable[[torch.Tensor, int, int], torch.Tensor]


class ConditionalPixelCNN(nn.Module):
    """Gated PixelCNN over ``levels``-level images, conditioned on a vector.

    Parameters
    ----------
    cond_dim : int
        Dimension k of the conditioning vector (standardised by the caller).
    channels, height, width : int
        Image shape (C, H, W).
    levels : int
        Quantisation levels L (2..256) of every pixel.
    hidden : int, default=16
        Feature maps F of the gated stacks and of the conditioning map.
    n_blocks : int, default=3
        Gated blocks; a pixel sees ``n_blocks + 1`` rows above and columns to its left.
    cond_hidden : int, default=256
        Width of the conditioning MLP's hidden layer.
    head_hidden : int, default=32
        Width of the output head.
    """

    def __init__(self, *, cond_dim: int, channels: int, height: int, width: int, levels: int,
                 hidden: int = 16, n_blocks: int = 3, cond_hidden: int = 256,
                 head_hidden: int = 32) -> None:
        super().__init__()
        self.shape, self.levels, self.hidden = (channels, height, width), levels, hidden
        side = min(height, width)
        self.n_up = max(0, int(math.floor(math.log2(side / 8)))) if side >= 8 else 0
        self.h0, self.w0 = -(-height // 2**self.n_up), -(-width // 2**self.n_up)
        self.cond_mlp = nn.Sequential(
            nn.Linear(cond_dim, cond_hidden), nn.ReLU(),
            nn.Linear(cond_hidden, hidden * self.h0 * self.w0), nn.ReLU(),
        )
        self.cond_ups = nn.ModuleList(
            nn.Conv2d(hidden, hidden, 3, padding=1) for _ in range(self.n_up))
        self.blocks = nn.ModuleList(
            GatedBlock(channels if i == 0 else hidden, hidden, 3, first=i == 0)
            for i in range(n_blocks)
        )
        self.block_bias = nn.ModuleList(nn.Conv2d(hidden, 4 * hidden, 1) for _ in range(n_blocks))
        self.head_in = nn.Conv2d(hidden, head_hidden, 1)
        self.head_bias = nn.Conv2d(hidden, head_hidden, 1, bias=False)
        self.head_out = nn.Conv2d(head_hidden, channels * levels, 1)
        self.direct_out = nn.Conv2d(hidden, channels * levels, 1)

    # ---- network ---------------------------------------------------------------------------

    def condition(self, z: torch.Tensor) -> torch.Tensor:
        """Conditioning map m(z): (B, k) -> (B, F, H, W)."""
        _, H, W = self.shape
        m = self.cond_mlp(z).view(z.shape[0], self.hidden, self.h0, self.w0)  # (B, F, h0, w0)
        for conv in self.cond_ups:
            m = F.relu(conv(F.interpolate(m, scale_factor=2, mode="nearest")))
        return m[:, :, :H, :W]  # (B, F, H, W)

    def to_input(self, level: torch.Tensor) -> torch.Tensor:
        """Integer levels -> network input in [−1, 1] (same shape)."""
        return level.to(self.head_in.weight.dtype) * (2.0 / (self.levels - 1)) - 1.0

    def _head(self, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, L, h, w) from stack features h and the map m, both (B, F, h, w)."""
        d = F.relu(self.head_in(F.relu(h)) + self.head_bias(m))
        out = self.head_out(d) + self.direct_out(m)  # (B, C·L, h, w)
        return out.view(out.shape[0], self.shape[0], self.levels, *out.shape[2:])

    def network(self, m: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, L, H, W) from the map m (B, F, H, W) and the input x_in (B, C, H, W)
        in [−1, 1]; entry [:, :, :, r, j] depends on x_in only through pixels before (r, j).
        Differentiable in x_in, so causality can be checked with autograd."""
        v = h = x_in
        for block, bias in zip(self.blocks, self.block_bias, strict=True):
            v, h = block(v, h, bias(m))
        return self._head(h, m)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, C, L, H, W) of images x (B, C, H, W) in [0, 1] given z."""
        return self.network(self.condition(z), self.to_input(quantize(x, self.levels)))

    def loss(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example cross-entropy, nats per pixel and channel, shape (B,):
        −log p(x | z) / (C·H·W)."""
        return _cross_entropy(self(z, x), quantize(x, self.levels))

    def objective(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Training loss (B,): :meth:`loss` plus the cross-entropy of the direct prediction
        D(m(z)) alone, which teaches the conditioning map the image early on."""
        m = self.condition(z)
        level = quantize(x, self.levels)
        direct = self.direct_out(m)  # (B, C·L, H, W)
        direct = direct.view(direct.shape[0], self.shape[0], self.levels, *direct.shape[2:])
        return _cross_entropy(self.network(m, self.to_input(level)), level) + (
            _cross_entropy(direct, level))

    # ---- decoding --------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, temperature: float = 0.0,
               generator: torch.Generator | int | None = None) -> torch.Tensor:
        """Draw one image per conditioning vector, pixel after pixel in raster order.

        Parameters
        ----------
        z : Tensor of shape (B, k)
            Standardised conditioning vectors.
        temperature : float, default=0.0
            0 takes the most likely level of each pixel (deterministic); T > 0 samples from
            softmax(logits / T).
        generator : torch.Generator, int or None, default=None
            Randomness for T > 0 (a seed makes the draw reproducible).

        Returns
        -------
        Tensor of shape (B, C, H, W)
            Float images on the L levels k / (L − 1).
        """
        gen = make_generator(generator, z.device)

        def choose(logits: torch.Tensor, r: int, j: int) -> torch.Tensor:  # (B, C, L) -> (B, C)
            if temperature <= 0:
                return logits.argmax(dim=-1)
            probs = F.softmax(logits.double() / temperature, dim=-1).flatten(0, 1)  # (B·C, L)
            return torch.multinomial(probs, 1, generator=gen).view(logits.shape[:2])

        level = self.autoregress(self.condition(z), choose)
        return level.to(z.dtype) / (self.levels - 1)

    def autoregress(self, m: torch.Tensor, choose: Chooser) -> torch.Tensor:
        """Fill the levels (B, C, H, W) pixel by pixel; ``choose(logits (B, C, L), r, j)``
        returns the levels (B, C) of pixel (r, j). Gives exactly :meth:`network`'s logits.

        Row r first advances the vertical stack: each block's rows are kept, and its output
        row r − 1 and its link to row r need only rows r − 2 .. r of its input (a 2×3 kernel
        on rows ≤ r − 1; row r is a placeholder that never reaches them). Pixel (r, j) then
        runs the horizontal stack on columns j − n_blocks − 1 .. j of row r, which hold its
        whole horizontal receptive field (a type-A shift plus one column per block).
        """
        B, (C, H, W), n = m.shape[0], self.shape, len(self.blocks)
        level = torch.zeros(B, C, H, W, dtype=torch.long, device=m.device)
        vs = [self.to_input(level)] + [m.new_zeros(B, self.hidden, H, W) for _ in range(n)]
        reach = n + 1
        for r in range(H):
            lo = max(0, r - 2)
            links, h_bias = [], []
            for i, (block, proj) in enumerate(zip(self.blocks, self.block_bias, strict=True)):
                v_bias, hb = proj(m[:, :, lo : r + 1]).chunk(2, dim=1)  # (B, 2F, ≤3, W) each
                v_new, link = block.vertical(vs[i][:, :, lo : r + 1], v_bias)
                if r > 0:
                    vs[i + 1][:, :, r - 1] = v_new[:, :, -2]  # (B, F, W)
                links.append(link[:, :, -1:])  # (B, 2F, 1, W)
                h_bias.append(hb[:, :, -1:])
            for j in range(W):
                j0 = max(0, j - reach)
                h = vs[0][:, :, r : r + 1, j0 : j + 1]  # (B, C, 1, ≤ reach + 1)
                for i, block in enumerate(self.blocks):
                    h = block.horizontal(h, links[i][..., j0 : j + 1], h_bias[i][..., j0 : j + 1])
                logits = self._head(h[..., -1:], m[:, :, r : r + 1, j : j + 1])[..., 0, 0]
                level[:, :, r, j] = choose(logits, r, j)  # (B, C)
                vs[0][:, :, r, j] = self.to_input(level[:, :, r, j])
        return level
