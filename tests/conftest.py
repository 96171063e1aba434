"""Fixtures shared by every test package."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_torch_thread():
    """One intra-op torch thread for the test: tiny tensors gain nothing from more threads,
    which only add synchronisation on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
