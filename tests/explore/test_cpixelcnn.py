"""The generative (conditional PixelCNN) decoder: its likelihood against a naive loop, causality
by autograd, the fast raster decoder against the full network, conditioning, decoding, training
and save/load (issue 17)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fisher_core.explore import Decoder, DecoderConfig, load_decoder, save_decoder, train_decoder
from fisher_core.explore.cpixelcnn import ConditionalPixelCNN
from fisher_core.models import ConfigError

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _net(seed: int = 0, channels: int = 2, height: int = 6, width: int = 7, levels: int = 5,
         n_blocks: int = 2) -> ConditionalPixelCNN:
    torch.manual_seed(seed)
    net = ConditionalPixelCNN(cond_dim=4, channels=channels, height=height, width=width,
                              levels=levels, hidden=6, n_blocks=n_blocks, cond_hidden=8,
                              head_hidden=8)
    with torch.no_grad():  # larger weights than the default init, so every path matters
        for p in net.parameters():
            p.mul_(3.0)
    return net.double()


def _decoder(seed: int = 0, **kw) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(in_dim=4, channels=1, height=6, width=5, likelihood="categorical",
                                 levels=4, hidden=8, architecture="pixelcnn", pixel_channels=6,
                                 pixel_blocks=2, **kw))


def test_loss_and_objective_are_per_pixel_cross_entropies_of_a_naive_loop():
    net = _net()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64)
    x = torch.rand(3, 2, 6, 7, generator=g, dtype=torch.float64)
    with torch.no_grad():
        logits = net(z, x).numpy()  # (B, C, L, H, W)
        loss = net.loss(z, x).numpy()
        direct = net.direct_out(net.condition(z)).view(3, 2, 5, 6, 7).numpy()
        objective = net.objective(z, x).numpy()
    level = np.round(x.numpy() * 4).astype(int)
    naive, naive_direct = np.zeros(3), np.zeros(3)
    for b, c, r, j in np.ndindex(3, 2, 6, 7):
        for out, v in [(naive, logits[b, c, :, r, j]), (naive_direct, direct[b, c, :, r, j])]:
            out[b] -= (v[level[b, c, r, j]] - np.log(np.exp(v).sum())) / (2 * 6 * 7)
    np.testing.assert_allclose(loss, naive, rtol=1e-10)
    # training adds the direct prediction's own cross-entropy (it teaches m(z) the image)
    np.testing.assert_allclose(objective, naive + naive_direct, rtol=1e-10)


def test_pixel_i_depends_only_on_earlier_pixels():
    net = _net(n_blocks=3)
    m = net.condition(torch.randn(1, 4, dtype=torch.float64))
    x_in = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    logits = net.network(m, x_in)  # (1, C, L, H, W)
    for r, j in [(0, 0), (2, 3), (5, 6), (4, 0)]:
        (grad,) = torch.autograd.grad(logits[0, :, :, r, j].sum(), x_in, retain_graph=True)
        seen = grad[0].abs().sum(0) > 0  # (H, W): pixels that reach (r, j)
        later = torch.zeros(6, 7, dtype=torch.bool)
        later.view(-1)[r * 7 + j:] = True
        assert not seen[later].any(), f"pixel {(r, j)} sees itself or a later pixel"
        if (r, j) != (0, 0):
            assert seen[r, j - 1] if j > 0 else seen[r - 1, j]  # the previous pixel counts


def test_fast_raster_decoding_gives_exactly_the_network_logits():
    """The row-cached vertical stack and the windowed horizontal stack of ``autoregress`` are
    the full network evaluated pixel by pixel (teacher forcing with a given image)."""
    net = _net(n_blocks=3, height=7, width=9)
    g = torch.Generator().manual_seed(2)
    m = net.condition(torch.randn(2, 4, generator=g, dtype=torch.float64))
    level = torch.randint(0, 5, (2, 2, 7, 9), generator=g)
    with torch.no_grad():
        full = net.network(m, net.to_input(level))  # (B, C, L, H, W)
        got = torch.zeros_like(full)

        def teacher(logits, r, j):
            got[:, :, :, r, j] = logits
            return level[:, :, r, j]

        assert torch.equal(net.autoregress(m, teacher), level)
    torch.testing.assert_close(got, full, rtol=1e-9, atol=1e-10)


def test_the_condition_changes_the_distribution_and_the_decoded_image():
    d = _decoder()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 6, 5, generator=g)
    z = torch.randn(2, 4, generator=g)
    with torch.no_grad():
        a, b = d(z[:1], x), d(z[1:], x)
    assert (a - b).abs().amax(dim=(1, 2)).min() > 1e-3  # every pixel's distribution moves
    imgs = d.decode(z.numpy())
    assert not np.array_equal(imgs[0], imgs[1])
    with pytest.raises(ValueError, match=r"depends on the image: call decoder\(z, x\)"):
        d(z)
    with pytest.raises(TypeError, match=r"draws its images: use decode\(z\)"):
        d.mean(z)


def test_arg_max_decoding_is_deterministic_and_picks_the_most_likely_level():
    d = _decoder()
    z = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    first = d.decode(z)
    assert np.array_equal(first, d.decode(z)) and np.array_equal(first[1], d.decode(z[1]))
    assert set(np.unique(first * 3).round(6)) <= {0.0, 1.0, 2.0, 3.0}
    with torch.no_grad():  # greedy: every pixel is the arg-max given the decoded earlier pixels
        logits = d(torch.from_numpy(z), torch.from_numpy(first))
    assert torch.equal(logits.argmax(dim=2), torch.from_numpy(np.round(first * 3)).long())
    warm = [d.decode(z, temperature=1.0, seed=s) for s in (0, 0, 1)]
    assert np.array_equal(warm[0], warm[1]) and not np.array_equal(warm[0], warm[2])
    assert not np.array_equal(warm[0], first)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"architecture must be one of \('direct', 'pixelcnn'\)"):
        DecoderConfig(in_dim=3, architecture="flow")
    with pytest.raises(ConfigError, match="must be 'categorical' for the pixelcnn"):
        DecoderConfig(in_dim=3, architecture="pixelcnn")
    with pytest.raises(ConfigError, match=r"temperature must be a number in \[0, 10\]"):
        DecoderConfig(in_dim=3, temperature=-1.0)
    with pytest.raises(ConfigError, match=r"pixel_blocks must be an integer in \[1, 32\]"):
        DecoderConfig(in_dim=3, pixel_blocks=0)
    with pytest.raises(ValueError, match="architecture must be one of"):
        train_decoder(np.zeros((4, 2)), np.zeros((4, 1, 4, 4)), architecture="gan")


def test_save_load_round_trip_and_old_decoders_default_to_direct(tmp_path):
    d = _decoder(temperature=0.5)
    d.set_standardization(np.arange(4.0), np.full(4, 2.0))
    save_decoder(d, tmp_path / "dec", metrics={"val_ce": 1.0})
    back = load_decoder(tmp_path / "dec")
    assert back.config == d.config and back.config.architecture == "pixelcnn"
    for (k, v), (k2, v2) in zip(d.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    z = np.random.default_rng(5).standard_normal((2, 4)).astype(np.float32)
    assert np.array_equal(back.decode(z), d.decode(z))
    # a decoder saved before issue 17 has no architecture field: it loads as a direct one
    torch.manual_seed(0)
    old = Decoder(DecoderConfig(in_dim=4, height=6, width=5, hidden=8, base_channels=4))
    save_decoder(old, tmp_path / "old")
    meta_file = tmp_path / "old" / "module.json"
    meta = json.loads(meta_file.read_text())
    for key in ("architecture", "pixel_channels", "pixel_blocks", "temperature"):
        del meta["config"][key]
    meta_file.write_text(json.dumps(meta))
    again = load_decoder(tmp_path / "old")
    assert again.config.architecture == "direct"
    assert np.array_equal(again.decode(z), old.decode(z))


def test_training_learns_the_images_of_the_condition():
    """8×8 images whose top or bottom half is lit, named by the embedding's sign: after a few
    epochs the greedy decode draws the right half for held-out rows."""
    rng = np.random.default_rng(0)
    n = 160
    z = rng.standard_normal((n, 2)).astype(np.float32)
    x = np.zeros((n, 1, 8, 8), np.float32)
    x[z[:, 0] > 0, :, :4] = 1.0
    x[z[:, 0] <= 0, :, 4:] = 1.0
    res = train_decoder(z, x, levels=2, architecture="pixelcnn", epochs=15, batch_size=32,
                        lr=1e-2, hidden=16, pixel_channels=8, pixel_blocks=2,
                        max_seconds=None, early_stopping_patience=None)
    d, va = res.decoder, res.val_index
    assert d.config.likelihood == "categorical" and d.config.levels == 2
    assert res.metrics["val_ce"] < 0.1 and "val_mse" in res.metrics
    assert np.abs(d.decode(z[va]) - x[va]).mean() < 0.05
