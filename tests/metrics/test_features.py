"""Domain feature extractor: it learns a separable task, its features are deterministic and
survive save/load, the autoencoder fallback, and the Inception placeholder's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fisher_core.data import ImageDataset
from fisher_core.metrics import (
    DomainFeatureExtractor,
    FeatureExtractorConfig,
    InceptionExtractor,
    InceptionUnavailableError,
    load_feature_extractor,
    save_feature_extractor,
    train_feature_extractor,
)
from fisher_core.models import ConfigError, ModelFileError

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _separable(n: int = 320, seed: int = 0) -> ImageDataset:
    """8×8 noisy images: the label is which quadrant is bright, attribute 0 is a bright
    centre dot, attribute 1 is a dark frame."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    attrs = rng.random((n, 2)) < 0.5
    x = rng.uniform(0.1, 0.3, (n, 1, 8, 8))
    for i, (lab, (dot, frame)) in enumerate(zip(labels, attrs, strict=True)):
        r, c = divmod(int(lab), 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 0.5
        if dot:
            x[i, 0, 3:5, 3:5] = 1.0
        if frame:
            x[i, 0, [0, -1], :] = 0.0
            x[i, 0, :, [0, -1]] = 0.0
    return ImageDataset(np.clip(x, 0, 1).astype(np.float32), labels=labels, attributes=attrs,
                        attribute_names=["dot", "frame"], name="toy")


def test_learns_a_separable_task_and_reports_held_out_accuracy():
    ds = _separable()
    res = train_feature_extractor(ds, epochs=8, batch_size=32, lr=3e-3, seed=0, hidden=8,
                                  feature_dim=16, max_seconds=None, early_stopping_patience=None)
    ext, va = res.extractor, res.val_index
    assert ext.name == "domain-cnn(toy)" and va.size == 32
    acc = float((ext.predict_labels(ds.images[va]) == ds.labels[va]).mean())
    attr_acc = ((ext.predict_attributes(ds.images[va]) >= 0.5) == ds.attributes[va]).mean(0)
    assert res.metrics["label_accuracy"] == pytest.approx(acc)
    assert res.metrics["attribute_accuracy"] == pytest.approx(attr_acc.mean())
    assert res.metrics["attribute_accuracy/frame"] == pytest.approx(attr_acc[1])
    assert acc >= 0.9 and attr_acc.min() >= 0.9  # chance: 0.25 and 0.5
    h = res.train_result.history["epoch_val_nll"]
    assert h[-1] < 0.5 * h[0]


def test_features_are_deterministic_batch_independent_and_survive_save_load(tmp_path):
    torch.manual_seed(0)
    ext = DomainFeatureExtractor(FeatureExtractorConfig(
        channels=1, height=8, width=8, n_classes=4, n_attributes=2, feature_dim=6, hidden=4,
        dataset="toy"))
    x = _separable(n=20).images
    f = ext.features(x)
    assert f.dtype == np.float64 and f.shape == (20, 6)
    assert np.array_equal(f, ext.features(x))
    np.testing.assert_allclose(ext.features(x, batch_size=3), f, rtol=1e-6, atol=1e-7)
    # features are the penultimate layer: the heads are linear maps of them
    w, b = ext.attr_head.weight.detach().double().numpy(), ext.attr_head.bias.detach().double()
    np.testing.assert_allclose(ext.predict_attributes(x), 1 / (1 + np.exp(-(f @ w.T + b.numpy()))),
                               rtol=1e-5)
    save_feature_extractor(ext, tmp_path / "ext", metrics={"label_accuracy": 0.5})
    back = load_feature_extractor(tmp_path / "ext")
    assert back.name == "domain-cnn(toy)" and np.array_equal(back.features(x), f)
    with pytest.raises(ModelFileError, match="not a 'decoder'"):
        from fisher_core.explore import load_decoder

        load_decoder(tmp_path / "ext")
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\)"):
        ext.features(np.zeros((2, 1, 4, 4)))


def test_without_labels_or_attributes_it_is_an_autoencoder():
    ds = _separable(n=96)
    plain = ImageDataset(ds.images, name="plain")
    res = train_feature_extractor(plain, epochs=3, batch_size=32, hidden=4, feature_dim=8,
                                  max_seconds=None)
    ext = res.extractor
    assert ext.name == "domain-ae(plain)" and ext.config.autoencoder
    va = res.val_index
    recon = ext.recon_head.decode(ext.features(ds.images[va]))
    assert res.metrics["val_mse"] == pytest.approx(float(((recon - ds.images[va]) ** 2).mean()),
                                                   rel=1e-4)
    h = res.train_result.history["epoch_val_nll"]
    assert h[-1] < h[0]
    with pytest.raises(ValueError, match="has no attribute head"):
        ext.predict_attributes(ds.images[:2])
    with pytest.raises(ValueError, match="has no label head"):
        ext.predict_labels(ds.images[:2])


def test_config_and_input_errors():
    with pytest.raises(ConfigError, match="n_classes must be 0 or ≥ 2"):
        FeatureExtractorConfig(n_classes=1)
    with pytest.raises(ConfigError, match=r"feature_dim must be an integer in \[1, 4096\]"):
        FeatureExtractorConfig(feature_dim=0)
    with pytest.raises(TypeError, match="ds must be an ImageDataset"):
        train_feature_extractor(np.zeros((4, 1, 8, 8)))


def test_inception_is_never_downloaded_and_says_what_to_do(tmp_path):
    with pytest.raises(InceptionUnavailableError, match="never downloads weights"):
        InceptionExtractor.from_local(tmp_path / "pt_inception.pth")
    f = tmp_path / "pt_inception.pth"
    f.write_bytes(b"not really weights")
    with pytest.raises(InceptionUnavailableError, match="Use DomainFeatureExtractor"):
        InceptionExtractor.from_local(f)
