"""Device handling (issue 19) checked on the CPU: the condition behind the CUDA crash of
adversarial Fisher vectors, the TF32 guard, and the device list a selector offers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fisher_core.fisher._capture as cap
from fisher_core.embeddings.afv import adversarial_fisher_vectors
from fisher_core.models import EBGAN, EBGANConfig
from fisher_core.utils.devices import available_devices, full_precision

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_afv_when_hook_gradients_disagree_slightly(monkeypatch):
    """On CUDA, TF32 convolutions made the engine's hook gradients of the spectral-normed
    discriminator differ from autograd's by ~1e-3, so its planning sent those parameters to
    the torch.func path; a weight derived from them (W / σ(W)) then asked autograd for the
    gradient of an empty parameter list and crashed ("grad requires non-empty inputs").
    Reproduced here by perturbing the hook gradients the same way."""
    torch.manual_seed(0)
    gan = EBGAN(EBGANConfig(height=8, width=8, latent_dim=4, g_width=4, d_width=3)).eval()
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ref = adversarial_fisher_vectors(gan, x, n_generator_samples=16, dim=None, projection=None)
    exact = cap.weight_grads
    monkeypatch.setattr(cap, "weight_grads", lambda call, delta: exact(call, delta) * 1.001)
    got = adversarial_fisher_vectors(gan, x, n_generator_samples=16, dim=None,
                                     projection=None)
    # the weights now come from torch.func (exact); only the biases' hook path is unchanged
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3)


def test_full_precision_turns_tf32_off_and_restores_it():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    try:
        with full_precision():
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def test_available_devices_lists_the_cpu_first():
    devices = available_devices()
    assert devices[0] == "cpu"
    assert len(devices) == 1 + (torch.cuda.device_count() if torch.cuda.is_available() else 0)


@pytest.mark.parametrize("normalize", [None, "fim_diag", "fim_diag_exact"])
def test_fisher_scores_can_stay_on_the_device(normalize):
    """Issue 19: a tensor in, a tensor out on the working device, equal to the NumPy path."""
    from fisher_core.fisher import FisherScorer, fisher_scores
    from fisher_core.models import build_model

    torch.manual_seed(0)
    model = build_model("pixelcnn", channels=1, height=6, width=6, levels=4, hidden=4,
                        n_blocks=1, head_hidden=4)
    x = torch.randint(0, 4, (20, 1, 6, 6), generator=torch.Generator().manual_seed(2)) / 3.0
    kw = dict(dim=16, normalize=normalize, center=normalize is not None, seed=3)
    ref = fisher_scores(model, x.numpy(), **kw)
    got = fisher_scores(model, x, output="torch", **kw)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert got.device == x.device
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)
    scorer = FisherScorer(model, **kw).fit(x)
    np.testing.assert_allclose(scorer.transform(x, output="torch").numpy(),
                               scorer.transform(x), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="output must be 'numpy' or 'torch'; got 'list'"):
        scorer.transform(x, output="list")


def test_fit_transform_raw_equals_fit_transform():
    """Scores gathered from elsewhere (Dask shards) get the statistics of all rows exactly
    as the one-pass path gives them."""
    from fisher_core.fisher import FisherScoreError, FisherScorer, fisher_scores
    from fisher_core.models import build_model

    torch.manual_seed(0)
    model = build_model("pixelcnn", channels=1, height=6, width=6, levels=4, hidden=4,
                        n_blocks=1, head_hidden=4)
    x = torch.randint(0, 4, (30, 1, 6, 6), generator=torch.Generator().manual_seed(5)) / 3.0
    raw = fisher_scores(model, x, dim=16, seed=2)  # no centring, no scaling
    kw = dict(dim=16, seed=2, normalize="fim_diag", center=True, power=0.5, l2=True)
    got = FisherScorer(model, **kw).fit_transform_raw(raw, batch_size=7)
    np.testing.assert_allclose(got, FisherScorer(model, **kw).fit_transform(x), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(FisherScoreError, match=r"raw must be \(N, 16\) projected scores"):
        FisherScorer(model, **kw).fit_transform_raw(raw[:, :8])
