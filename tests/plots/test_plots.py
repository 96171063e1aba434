"""The shared figures: each checked against its inputs (what is drawn is what was given)."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.plots import (
    ablation_figure,
    attribute_share_figure,
    class_counts_figure,
    class_distance_figure,
    edit_scores_figure,
    embedding_scatter,
    fid_alpha_figure,
    image_grid_figure,
    interpolation_strips_figure,
    monitor_figure,
    montage,
    probe_figure,
    training_curves,
)


@pytest.fixture(scope="module")
def faces():
    return load_builtin("faces", n=40)


def test_embedding_scatter_carries_indices_and_colours(faces):
    xy = np.random.default_rng(0).normal(size=(40, 2))
    fig = embedding_scatter(xy, faces, colour_by="smiling", title="t")
    seen = {}
    for tr in fig.data:
        for i, x in zip(np.asarray(tr.customdata)[:, 0], tr.x, strict=True):
            seen[int(i)] = (tr.name, x)
    assert sorted(seen) == list(range(40))
    j = faces.attribute_names.index("smiling")
    for i, (name, x) in seen.items():
        assert name == ("yes" if faces.attributes[i, j] else "no") and x == xy[i, 0]
    assert fig.data[0].type == "scatter"  # SVG: points clickable
    fig3 = embedding_scatter(np.c_[xy, xy[:, :1]], faces)
    assert fig3.data[0].type == "scatter3d"
    with pytest.raises(ValueError, match=r"xy must be \(40, 2\) or \(40, 3\)"):
        embedding_scatter(xy[:5], faces)


def test_many_points_use_webgl_with_smaller_fainter_markers():
    from fisher_core.plots.embedding import marker_style

    ds = load_builtin("faces", n=6000, size=16)
    xy = np.random.default_rng(1).normal(size=(6000, 2))
    fig = embedding_scatter(xy, ds, colour_by="smiling")
    assert {tr.type for tr in fig.data} == {"scattergl"}  # WebGL beyond 5,000 points
    assert sum(len(tr.x) for tr in fig.data) == 6000
    assert fig.data[0].marker.size == marker_style(6000)["size"] < 5
    assert marker_style(5000) == {"size": 5, "opacity": 0.8}
    sizes = [marker_style(n)["size"] for n in (10, 5000, 20_000, 100_000, 10**7)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1.5
    assert marker_style(100_000)["opacity"] == pytest.approx(0.8 * (5000 / 100_000) ** 0.5,
                                                             abs=1e-3)


def test_data_figures_count_what_the_dataset_holds(faces):
    counts = class_counts_figure(faces).data[0]
    np.testing.assert_array_equal(counts.y, np.bincount(faces.labels,
                                                        minlength=len(faces.class_names)))
    share = attribute_share_figure(faces).data[0]
    np.testing.assert_allclose(share.y, faces.attributes.mean(0))
    digits = load_builtin("digits").subset(slice(0, 10))
    with pytest.raises(ValueError, match="has no attributes"):
        attribute_share_figure(digits)


def test_training_curves_and_monitor():
    state = {"steps": [(1, 3.0), (2, 2.5)], "epochs": [
        {"epoch": 1, "bits_per_dim": None, "val_nll": 5.0},
        {"epoch": 2, "bits_per_dim": None, "val_nll": 4.0}], "monitor": []}
    fig = training_curves(state)
    assert list(fig.data[0].y) == [3.0, 2.5] and list(fig.data[1].y) == [5.0, 4.0]
    history = [{"step": 10, "train_fd": 3.0, "heldout_fd": 2.0},
               {"step": 20, "train_fd": 1.0, "heldout_fd": 2.5}]
    star = monitor_figure(history).data[-1]
    assert (list(star.x), list(star.y)) == ([10], [2.0])  # the best held-out step
    with pytest.raises(ValueError, match="monitor history is empty"):
        monitor_figure([])


def test_result_figures_draw_the_rows():
    fid = [{"space": s, "alpha": a, "fid": f, "extractor": "cnn"}
           for s, f0 in (("fisher", 1.0), ("pixels", 2.0)) for a, f in
           zip((0.0, 0.5, 1.0), (f0, 3 * f0, f0), strict=True)]
    fig = fid_alpha_figure(fid)
    assert {tr.name: list(tr.y) for tr in fig.data} == {"fisher": [1, 3, 1], "pixels": [2, 6, 2]}
    assert fig.layout.yaxis.title.text == "FID (cnn)"
    edits = [{"space": "s", "strength": 3.0, "success": a, "preservation": b}
             for a, b in ((1.0, 0.5), (0.5, 1.0))]
    means = {tr.name: list(tr.y) for tr in edit_scores_figure(edits).data}
    assert means == {"s, success": [0.75], "s, preservation": [0.75]}
    probe = probe_figure([{"embedding": "a", "accuracy": 0.9, "std": 0.01}], target="smiling")
    assert list(probe.data[0].y) == [0.9] and "smiling" in probe.layout.title.text
    rows = [{"normalization": n, "power": p, "l2": l2, "accuracy": 0.5, "std": 0.0}
            for n in ("none", "analytic") for p in (False, True) for l2 in (False, True)]
    assert {tr.name for tr in ablation_figure(rows).data} == {"plain", "√", "+L2", "√+L2"}
    heat = class_distance_figure(np.array([[0.0, 1.0], [1.0, 0.0]]), ["a", "b"])
    np.testing.assert_array_equal(heat.data[0].z, [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"probe rows need columns"):
        probe_figure([{"embedding": "a"}])


def test_images_montage_grid_and_strips():
    imgs = np.random.default_rng(0).uniform(size=(5, 1, 4, 4)).astype(np.float32)
    m = montage(imgs, columns=3, min_side=4, pad=1)
    assert m.shape == (2 * 5 + 1, 3 * 5 + 1)
    np.testing.assert_array_equal(m[1:5, 6:10], (imgs[1, 0] * 255 + 0.5).astype(np.uint8))
    grid = image_grid_figure(imgs, [f"#{i}" for i in range(5)], columns=3, tile=8)
    assert len(grid.data) == 5 and grid.data[0].type == "image"
    strips = interpolation_strips_figure({"a": imgs[:3], "b": imgs[2:]}, [0, 0.5, 1], tile=8)
    assert len(strips.data) == 6
    with pytest.raises(ValueError, match="needs 3 images"):
        interpolation_strips_figure({"a": imgs[:2]}, [0, 0.5, 1])
