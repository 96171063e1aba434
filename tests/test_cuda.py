"""Every library capability on CUDA gives the CPU's result (issue 19).

Skipped where torch sees no GPU (CI has none). On a GPU machine:

    .venv/bin/python -m pytest -m cuda tests/test_cuda.py -q

``FISHERLAB_TEST_DEVICE`` picks the device under test (default ``cuda``); set it to ``cpu`` to
run the same comparisons CPU against CPU, which checks the test code itself on a machine
without a GPU. Sizes are tiny: the whole module takes seconds on a GPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from fisher_core.data import load_builtin
from fisher_core.models import EBGAN, EBGANConfig, build_model

DEVICE = os.environ.get("FISHERLAB_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                       reason="no CUDA device here (set FISHERLAB_TEST_DEVICE=cpu to check "
                              "the comparisons CPU against CPU)"),
]


def _close(a, b, rtol=1e-4, atol=1e-5):
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def digits():
    return load_builtin("digits").subset(np.arange(200))


def test_gmm_fit(digits):
    from fisher_core.fisher import GaussianMixture

    x = digits.images.reshape(len(digits), -1).astype(np.float32)
    cpu = GaussianMixture(4, random_state=0, max_iter=50).fit(x)
    dev = GaussianMixture(4, random_state=0, max_iter=50, device=DEVICE).fit(x)
    assert dev.score(x) == pytest.approx(cpu.score(x), rel=1e-4, abs=1e-3)
    _close(dev.means_, cpu.means_, rtol=1e-3, atol=1e-3)


def test_fisher_vectors_and_descriptors(digits):
    from fisher_core.fisher import GaussianMixture, fisher_vector, image_descriptors

    desc = image_descriptors(digits.images)  # (N, L, D)
    gmm = GaussianMixture(4, random_state=0).fit(desc.reshape(-1, desc.shape[2]))
    cpu = fisher_vector(desc, gmm)
    _close(fisher_vector(desc, gmm, device=DEVICE), cpu, rtol=1e-4, atol=1e-5)
    on_device = torch.from_numpy(desc).to(DEVICE)  # stays where it is
    _close(fisher_vector(on_device, gmm, device=DEVICE), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("projection", [None, "sparse", "gaussian", "kron"])
@pytest.mark.parametrize("method", ["auto", "hooks", "func"])
def test_fisher_scores(digits, projection, method):
    from fisher_core.fisher import fisher_scores

    torch.manual_seed(0)
    model = build_model("pixelcnn", channels=1, height=8, width=8, levels=4, hidden=4,
                        n_blocks=1, head_hidden=4)
    x = digits.quantize(4).images[:32]
    kw = dict(dim=None if projection is None else 64, projection=projection, method=method,
              normalize="fim_diag", center=True, seed=1)
    cpu = fisher_scores(model, x, **kw)
    dev = fisher_scores(model.to(DEVICE), torch.from_numpy(x).to(DEVICE), output="torch", **kw)
    assert dev.device.type == torch.device(DEVICE).type
    _close(dev, cpu, rtol=1e-3, atol=1e-4)


def _gan(seed=0):
    torch.manual_seed(seed)
    return EBGAN(EBGANConfig(height=8, width=8, latent_dim=4, g_width=4, d_width=3))


def test_afv_after_training_on_the_device(digits):
    """The crash of issue 19: AFVs of an EBGAN trained on CUDA."""
    from fisher_core.embeddings.afv import adversarial_fisher_vectors
    from fisher_core.training import train

    gan = _gan()
    train(gan, digits.images, epochs=1, batch_size=32, device=DEVICE, seed=0)
    x = digits.images[:24]
    dev = adversarial_fisher_vectors(gan, x, n_generator_samples=32, dim=None,
                                     projection=None)
    cpu = adversarial_fisher_vectors(gan.cpu(), x, n_generator_samples=32, dim=None,
                                     projection=None)
    assert np.isfinite(dev).all()
    # generator samples are drawn on each device's own RNG: compare what does not depend on
    # them exactly — the spread of the vectors — and the vectors with the CPU's samples
    gan.to(DEVICE)
    from fisher_core.embeddings.afv import afv_scorer

    samples = torch.from_numpy(digits.images[100:132])
    sc_dev = afv_scorer(gan, dim=None, projection=None).fit(samples.to(DEVICE))
    sc_cpu = afv_scorer(gan.cpu(), dim=None, projection=None).fit(samples)
    gan.to(DEVICE)
    _close(sc_dev.transform(torch.from_numpy(x).to(DEVICE)), sc_cpu.transform(x),
           rtol=1e-3, atol=1e-3)
    assert cpu.shape == dev.shape


def test_fisher_monitor(digits):
    from fisher_core.metrics import FisherMonitor

    gan = _gan(1)
    cpu = FisherMonitor(gan, digits.images[:64], digits.images[64:128], n=16).evaluate(1)
    dev = FisherMonitor(gan.to(DEVICE), digits.images[:64], digits.images[64:128],
                        n=16).evaluate(1)
    for key in ("train_fd", "heldout_fd"):
        assert np.isfinite(dev[key]) and dev[key] > 0
    assert set(dev) == set(cpu)


def test_fvvae_and_deep_embeddings(digits):
    from fisher_core.embeddings import activation_embedding, fvvae_embedding

    torch.manual_seed(0)
    fv = build_model("fvvae", channels=1, height=8, width=8)
    cpu = fvvae_embedding(fv, digits.images).vectors
    dev = fvvae_embedding(fv.to(DEVICE), digits.images).vectors
    _close(dev, cpu, rtol=1e-3, atol=1e-4)
    torch.manual_seed(0)
    px = build_model("pixelcnn", channels=1, height=8, width=8, levels=4, hidden=4, n_blocks=1)
    x = digits.quantize(4).images
    _close(activation_embedding(px.to(DEVICE), x).vectors,
           activation_embedding(px.cpu(), x).vectors, rtol=1e-4, atol=1e-5)


def test_training_with_checkpoints_and_resume(digits, tmp_path):
    from fisher_core.workspace import Workspace, resume_run, train_and_save

    ws = Workspace(tmp_path)
    cfg = {"hidden": 4, "n_blocks": 2, "head_hidden": 4}
    run = train_and_save(digits, "pixelcnn", config=cfg, epochs=2, batch_size=32,
                         workspace=ws, name="px", dataset_key="d", device=DEVICE,
                         monitor=False)
    assert next(run.model.parameters()).device.type == "cpu"  # handed back on the CPU
    assert np.isfinite(run.metrics["val_bits_per_dim"])
    with pytest.raises(Exception, match="no interrupted run named 'px'"):
        resume_run(ws, "px", digits)  # it finished: nothing to resume


def test_decoder_extractor_fid_and_probe(digits):
    from fisher_core.explore.decode import train_decoder
    from fisher_core.metrics import frechet_distance, linear_probe
    from fisher_core.metrics.features import train_feature_extractor

    z = digits.images.reshape(len(digits), -1)
    dec = train_decoder(z, digits.images, epochs=1, hidden=16, base_channels=4,
                        device=DEVICE, max_seconds=None).decoder
    assert next(dec.parameters()).device.type == "cpu"
    out_cpu = dec.decode(z[:8])
    _close(dec.to(DEVICE).decode(z[:8]), out_cpu, rtol=1e-4, atol=1e-5)
    ext = train_feature_extractor(digits, epochs=1, hidden=8, feature_dim=8,
                                  device=DEVICE, max_seconds=None).extractor
    f_cpu = ext.features(digits.images)
    f_dev = ext.to(DEVICE).features(digits.images)
    _close(f_dev, f_cpu, rtol=1e-4, atol=1e-5)
    assert frechet_distance(f_dev[:100], f_dev[100:]) == pytest.approx(
        frechet_distance(f_cpu[:100], f_cpu[100:]), rel=1e-3, abs=1e-4)
    assert linear_probe(f_dev, digits.labels, cv=2).accuracy == pytest.approx(
        linear_probe(f_cpu, digits.labels, cv=2).accuracy, abs=0.02)
