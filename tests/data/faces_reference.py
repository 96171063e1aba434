"""A frozen copy of the original, all-at-once faces renderer (before issue 14).

The library now renders faces in chunks to bound memory; the tests compare it against this
copy so that the images every saved result depends on stay identical. Do not "fix" this file.
"""

from __future__ import annotations

import numpy as np


def _nuisance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "scale": rng.uniform(0.62, 0.78, n),  # face half-height as a fraction of the image
        "dx": rng.uniform(-0.08, 0.08, n),
        "dy": rng.uniform(-0.06, 0.1, n),
        "angle": np.deg2rad(rng.uniform(-12.0, 12.0, n)),
        "background": rng.uniform(0.05, 0.35, n),
        "skin": rng.uniform(0.6, 0.9, n),
        "ink": rng.uniform(0.0, 0.12, n),
        "hat_tone": rng.uniform(0.85, 1.0, n),
        "eye_y": rng.uniform(-0.28, -0.18, n),
        "eye_dx": rng.uniform(0.28, 0.36, n),
        "mouth_w": rng.uniform(0.22, 0.32, n),
    }


def render_faces_reference(
    attributes: np.ndarray, *, size: int = 32, rng: np.random.Generator, noise: float = 0.03
) -> np.ndarray:
    """Render one grey face per attribute row.

    Parameters
    ----------
    attributes : ndarray of shape (N, 4), bool
        Columns in the order of :data:`FACE_ATTRIBUTES`.
    size : int, default=32
        Output height and width in pixels.
    rng : numpy.random.Generator
        Source of the nuisance variation.
    noise : float, default=0.03
        Standard deviation of additive Gaussian pixel noise.

    Returns
    -------
    ndarray of shape (N, 1, size, size), float32 in [0, 1]
    """
    n = attributes.shape[0]
    smile, glasses, eyes_open, hat = (attributes[:, i][:, None, None] for i in range(4))
    p = {k: v[:, None, None] for k, v in _nuisance(rng, n).items()}
    ss = 2 * size  # supersampled resolution
    g = (np.arange(ss) + 0.5) / ss * 2.0 - 1.0  # pixel centres in [-1, 1]
    gy, gx = np.meshgrid(g, g, indexing="ij")  # (ss, ss)
    # Inverse affine map: image coords -> face coords (translate, rotate, scale).
    x0, y0 = gx[None] - p["dx"], gy[None] - p["dy"]  # (N, ss, ss)
    c, s = np.cos(p["angle"]), np.sin(p["angle"])
    u = (c * x0 + s * y0) / p["scale"]
    v = (-s * x0 + c * y0) / p["scale"]

    img = np.broadcast_to(p["background"], u.shape).copy()
    face = (u / 0.78) ** 2 + (v / 0.95) ** 2 < 1.0
    img = np.where(face, p["skin"], img)
    ink = p["ink"]

    # Eyes: open = filled discs, closed = short horizontal strokes.
    for side in (-1.0, 1.0):
        eu, ev = u - side * p["eye_dx"], v - p["eye_y"]
        disc = eu**2 + ev**2 < 0.11**2
        stroke = (np.abs(ev) < 0.035) & (np.abs(eu) < 0.13)
        img = np.where(np.where(eyes_open, disc, stroke), ink, img)
        ring = (eu**2 + ev**2 > 0.16**2) & (eu**2 + ev**2 < 0.21**2)
        img = np.where(glasses & ring, ink, img)
    bridge = (np.abs(v - p["eye_y"]) < 0.03) & (np.abs(u) < p["eye_dx"] - 0.19)
    img = np.where(glasses & bridge, ink, img)

    # Nose: a small dot; mouth: a downward arc (smile) or a straight line.
    img = np.where(u**2 + (v - 0.08) ** 2 < 0.05**2, ink + 0.25, img)
    r = np.sqrt(u**2 + (v - 0.12) ** 2)
    arc = (np.abs(r - p["mouth_w"] * 1.25) < 0.045) & (v > 0.12 + 0.55 * p["mouth_w"])
    line = (np.abs(v - 0.5) < 0.035) & (np.abs(u) < p["mouth_w"])
    img = np.where(np.where(smile, arc, line), ink, img)

    # Hat: a brim across the forehead and a crown above it.
    brim = (np.abs(v + 0.72) < 0.07) & (np.abs(u) < 0.95)
    crown = (v < -0.72) & (v > -1.3) & (np.abs(u) < 0.55)
    img = np.where(hat & (brim | crown), p["hat_tone"], img)
    img = np.where(hat & brim & (np.abs(v + 0.72) < 0.025), ink + 0.3, img)

    img = img.reshape(n, size, 2, size, 2).mean(axis=(2, 4))  # (N, size, size) box filter
    img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)[:, None]  # (N, 1, H, W)
