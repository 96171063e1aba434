"""How good a trained decoder is: held-out reconstruction errors, skill against the mean image,
and a warning when it is not worth decoding with. Works for any decoder with ``decode(z)``,
``loss(z, x)`` and a ``config.likelihood`` (both architectures of
:class:`fisher_core.explore.decode.Decoder`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["decoder_skill", "decoder_warning", "reconstruction_errors"]


def decoder_skill(metrics: dict[str, Any]) -> float | None:
    """1 − held-out MSE / MSE of the mean image: 0 for a decoder that ignores its input (it
    draws the same blurred mean face for every vector), 1 for a perfect one. None when the
    metrics lack either number (decoders saved before it was recorded)."""
    mse, base = metrics.get("val_mse"), metrics.get("val_mse_mean_image")
    if mse is None or not base:
        return None
    return 1.0 - float(mse) / float(base)


def decoder_warning(metrics: dict[str, Any], min_skill: float = 0.2) -> str | None:
    """Why a trained decoder is not worth decoding with, or None when it is fine.

    Flags a decoder that trained for no epoch, or whose held-out error is within
    ``1 − min_skill`` of the mean image's (every decoded image then looks alike).
    """
    skill = decoder_skill(metrics)
    epochs = metrics.get("epochs")
    capped = " It stopped at its time cap." if metrics.get("time_capped") else ""
    if epochs is not None and epochs < 1:
        return ("trained for no complete epoch" + (" (it hit its time cap)" if capped else "")
                + "; its images are noise or flat grey. Retrain it with more time.")
    if skill is not None and skill < min_skill:
        return (f"barely learned: held-out error {metrics['val_mse']:.4f} per pixel against "
                f"{metrics['val_mse_mean_image']:.4f} for the mean image (skill "
                f"{100 * skill:.0f} %), so its images all look alike.{capped} Retrain it with "
                "more time, or use another embedding.")
    return None


@torch.no_grad()
def reconstruction_errors(decoder: Any, z: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """Per-pixel errors of ``decoder`` on (z, images): ``mse`` of the decoded mean, plus ``bce``
    (Bernoulli) or ``ce`` (categorical, nats), keys prefixed with ``val_``."""
    decoder.eval()
    zt, xt = torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(images, dtype=torch.float32)
    mse = float(((torch.from_numpy(decoder.decode(z)) - xt) ** 2).double().mean())
    out = {"val_mse": mse}
    key = {"bernoulli": "val_bce", "categorical": "val_ce"}.get(decoder.config.likelihood)
    if key is not None:
        losses = [decoder.loss(zt[i : i + 512], xt[i : i + 512]).double()
                  for i in range(0, zt.shape[0], 512)]
        out[key] = float(torch.cat(losses).mean())
    return out
