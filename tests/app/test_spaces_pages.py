"""AppTest: Interpolate and Manipulate pages with real (small) decoders on the digits."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core import Workspace, load_builtin
from fisher_core.embeddings import pixel_embedding
from fisher_core.workspace import train_embedding_decoder

from .test_pages import _on


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "ws"))


@pytest.fixture
def decoded(tmp_path):
    """A workspace where the digits' pixel embedding has a (quickly trained) decoder."""
    ws = Workspace(tmp_path / "ws")
    ds = load_builtin("digits")
    ws.save_embedding(pixel_embedding(ds, dataset_key="builtin:digits"), "digits-pixels")
    train_embedding_decoder(ws, "digits-pixels", ds, epochs=1, max_seconds=20, hidden=32,
                            base_channels=8)
    return ws


def _image_urls(at) -> list[str]:
    return [img.proto.imgs[0].url for img in at.get("imgs")] if at.get("imgs") else \
        [str(img.proto) for img in at.get("image")]


def test_interpolate_slider_changes_only_the_result(decoded):
    at = _on("interpolate.py")
    assert not at.exception
    assert at.multiselect(key="int_spaces").value == ["digits-pixels"]
    before = _image_urls(at)
    at.slider(key="int_alpha").set_value(1.0).run()
    assert not at.exception
    after = _image_urls(at)
    assert len(before) == len(after)
    changed = [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
    assert len(changed) == 1  # only the decoded image at α moved; A, B and the strip did not
    assert any(c.value.startswith("decoded in") for c in at.caption)
    assert at.get("download_button")


def test_manipulate_strength_and_groups(decoded):
    at = _on("manipulate.py")
    assert not at.exception
    assert at.radio(key="man_mode").value == "Two groups of labels"
    before = _image_urls(at)
    at.slider(key="man_strength").set_value(-2.0).run()
    assert not at.exception
    after = _image_urls(at)
    assert before != after
    at.multiselect(key="man_g2").set_value([]).run()
    assert "Both groups need at least one image" in at.error[0].value
    assert at.session_state["dataset"].name == "digits"


def test_pages_explain_what_is_missing(tmp_path):
    at = _on("interpolate.py")
    assert "No embedding of this dataset yet" in at.info[0].value
    at = _on("manipulate.py")
    assert "Train a decoder" in at.info[-1].value


def test_metrics_page_extractor_fid_edits_and_heatmap(decoded):
    from .test_pages import _rerun_until

    at = _on("metrics.py")
    assert not at.exception
    assert "needs a feature extractor" in at.info[0].value
    # the class-distance heatmap works with any saved embedding, no extractor needed
    assert len(at.get("plotly_chart")) == 1
    from fisher_core import load_builtin as lb
    from fisher_core.metrics import class_distance_matrix

    ds = lb("digits")
    _, dist = class_distance_matrix(ds.images.reshape(len(ds), -1), ds.labels)
    # a naive loop over class pairs gives the same matrix
    means = [ds.images.reshape(len(ds), -1)[ds.labels == c].mean(0) for c in range(10)]
    naive = [[float(((a - b) ** 2).sum() ** 0.5) for b in means] for a in means]
    np.testing.assert_allclose(dist, naive, rtol=1e-5, atol=1e-5)
    at.button(key="met_extractor").click().run()
    _rerun_until(at, lambda a: a.get("button") and any(
        b.label == "Compute FID curves" for b in a.button), timeout=240)
    at.slider(key="met_pairs").set_value(50)
    at.slider(key="met_steps").set_value(3)
    at.slider(key="met_repeats").set_value(2)
    at.button(key="met_fid").click().run()
    _rerun_until(at, lambda a: len(a.get("plotly_chart")) == 2, timeout=240)
    assert not at.exception
    ratios = next(d.value for d in at.dataframe if "ratio" in d.value.columns)
    assert len(ratios) >= 1 and (ratios["ratio"] >= 1).all()  # peak ≥ mean of the ends


def test_decoder_architecture_choice_trains_a_conditional_pixelcnn(tmp_path, monkeypatch):
    """Issue 17: the spaces panel offers direct / conditional PixelCNN decoders, passes the
    choice to the library and lists the architecture of every decoder."""
    import app.spaces_ui as ui

    seen = []
    real = ui.train_embedding_decoder

    def quick(ws, name, ds, **kw):  # the app's job, at test size
        seen.append(kw["architecture"])
        kw |= {"max_seconds": 20, "epochs": 1}
        return real(ws, name, ds, hidden=16, pixel_channels=4, pixel_blocks=1, **kw)

    monkeypatch.setattr(ui, "train_embedding_decoder", quick)
    ws = Workspace(tmp_path / "ws")
    ds = load_builtin("digits")
    ws.save_embedding(pixel_embedding(ds, dataset_key="builtin:digits"), "digits-pixels")
    at = _on("interpolate.py")
    radio = at.radio(key="dec_arch")
    assert radio.value == "direct" and radio.options == ["direct", "conditional PixelCNN"]
    assert "commits to one sharp image" in radio.help
    radio.set_value("pixelcnn").run()
    at.button(key="dec_train").click().run()
    from .test_pages import _rerun_until

    _rerun_until(at, lambda a: len(a.dataframe) > 0, timeout=120)
    assert seen == ["pixelcnn"]
    table = at.dataframe[0].value
    assert list(table["embedding"]) == ["digits-pixels"]
    assert list(table["decoder"]) == ["conditional PixelCNN"]
    assert ws.entry("decoders", "digits-pixels").meta["architecture"] == "pixelcnn"


def test_metrics_page_fisher_monitor_and_size_sweep(tmp_path):
    """Issue 18: the monitor of any family's run, and the training-set-size sweep, on the
    Metrics page; the sweep's table is the library's for the same settings."""
    from fisher_core.workspace import train_and_save, training_size_sweep

    from .test_pages import _rerun_until

    ds = load_builtin("digits")
    train_and_save(ds, "gmm", config={"n_components": 3}, workspace=Workspace(tmp_path / "ws"),
                   name="g3", dataset_key="builtin:digits")
    at = _on("metrics.py")
    assert at.selectbox(key="met_run").value == "g3"
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("g3: real vs the model" in t for t in titles)
    at.selectbox(key="sweep_family").select("gmm").run()
    at.multiselect(key="sweep_sizes").set_value([50, 100]).run()
    at.button(key="sweep_go").click().run()
    _rerun_until(at, lambda a: any(d.value.columns[0] == "n_train" for d in a.dataframe),
                 timeout=120)
    table = next(d.value for d in at.dataframe if d.value.columns[0] == "n_train")
    ref = training_size_sweep(ds, "gmm", [50, 100], steps=300)
    assert list(table["n_train"]) == [50, 100]
    np.testing.assert_allclose(table["heldout_fd"], [r["heldout_fd"] for r in ref], rtol=1e-6)
    assert any("Fisher similarity" in c.proto.spec for c in at.get("plotly_chart"))
