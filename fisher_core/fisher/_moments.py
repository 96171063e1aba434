"""Bookkeeping of :class:`~fisher_core.fisher.scores.FisherScorer`: running moments of the
scores (float64, mergeable) and progress counting over one or several passes."""

from __future__ import annotations

from collections.abc import Callable

import torch

Progress = Callable[[int, int | None], None] | None


class _Progress:
    """Counts examples and reports ``callback(done, total)``."""

    def __init__(self, callback: Progress, total: int | None):
        self.callback, self.total, self.done = callback, total, 0

    def step(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


class _Moments:
    """Running mean and sum of squared deviations (Chan et al.), float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, z: torch.Tensor) -> None:
        z = z.detach().to(torch.float64)
        b = z.shape[0]
        mb = z.mean(0)
        m2b = ((z - mb) ** 2).sum(0)
        if self.n == 0:
            self.n, self.mean, self.m2 = b, mb, m2b
            return
        n = self.n + b
        delta = mb - self.mean
        self.mean = self.mean + delta * (b / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * b / n)
        self.n = n

    def var(self) -> torch.Tensor:
        return self.m2 / self.n

    def second_moment(self) -> torch.Tensor:
        return self.m2 / self.n + self.mean**2


def _phase(progress: Progress, offset: int, total: int | None) -> Progress:
    """A progress callback for one pass of several, reporting overall counts."""
    if progress is None:
        return None
    return lambda done, _: progress(offset + done, total)
