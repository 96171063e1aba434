"""AppTest: Embeddings and Classify pages driven as a person would, on the digits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "ws"))


def _on(page: str, dataset: str = "digits") -> AppTest:
    """Start the app, load a built-in dataset on the Data page, then open ``page``."""
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.run()
    at.switch_page("../pages/data.py").run()
    at.selectbox(key="data_builtin").select(dataset)
    at.button[0].click()  # the built-in form's submit button
    at.run()
    assert at.session_state["dataset"].name == dataset
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, at.exception
    return at


def _rerun_until(at: AppTest, done, timeout: float = 120.0) -> AppTest:
    """Rerun the script (as the page's refresh timer would) until ``done(at)`` holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at.run()
        assert not at.exception, at.exception
        assert not at.error, at.error[0].value
        if done(at):
            return at
        time.sleep(0.5)
    raise AssertionError("the page never reached the expected state")


def _chart_titles(at: AppTest) -> list[str]:
    titles = []
    for chart in at.get("plotly_chart"):
        spec = chart.proto.spec
        titles.append(spec)
    return titles


def test_embeddings_page_fisher_vectors_umap_and_neighbours():
    at = _on("embeddings.py")
    assert "No embedding of this dataset yet" in at.info[0].value
    at.number_input(key="fv_k").set_value(4)
    at.button[0].click()  # "Compute Fisher vectors" (form submit)
    at.run()
    assert not at.exception, at.exception
    names = at.session_state["embedding_name"]
    assert names.startswith("digits-fv-k4")
    # The PCA preview shows at once; the UMAP view replaces it when the job ends.
    assert any("PCA preview" in s for s in _chart_titles(at)) or any(
        "UMAP of" in s for s in _chart_titles(at))
    _rerun_until(at, lambda a: any("UMAP of" in s for s in _chart_titles(a)))
    # Fisher-kernel neighbours of image 5: the query and 9 neighbours, mostly the same digit.
    nn_idx = next(w for w in at.number_input if w.key.startswith("nn_idx_"))
    nn_idx.set_value(5).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any("Select points" in c for c in captions)
    # the embedding can be downloaded three ways (files made only when clicked)
    assert [b.proto.label for b in at.get("download_button")] == [
        "npz", "CSV", "Projector files (zip)"]
    # the query image is shown first, then its 9 neighbours with their kernel values
    images = at.get("image")
    assert len(images) == 10, len(images)
    # Revisit: the UMAP layout comes from the cache, no job to wait for.
    t0 = time.perf_counter()
    at.switch_page("../pages/home.py").run()
    at.switch_page("../pages/embeddings.py").run()
    assert any("UMAP of" in s for s in _chart_titles(at))
    assert time.perf_counter() - t0 < 10
    # UMAP settings: another metric is another layout, computed in the background (the PCA
    # preview shows meanwhile), then cached like the first
    metric = next(w for w in at.selectbox if w.label == "Metric")
    metric.select("cosine").run()
    assert not at.exception
    assert any("PCA preview" in s for s in _chart_titles(at))
    _rerun_until(at, lambda a: any("UMAP of" in s for s in _chart_titles(a)))


def test_classify_page_probe_on_saved_embedding_and_pixels():
    at = _on("embeddings.py")
    at.radio(key="emb_method").set_value("Raw pixels (baseline)").run()
    at.button(key="emb_pixels").click().run()
    assert not at.exception
    at.switch_page("../pages/classify.py").run()
    assert not at.exception
    assert at.multiselect(key="clf_embs").value == ["digits-pixels"]
    at.slider(key="clf_folds").set_value(2)
    at.button(key="clf_run").click().run()
    _rerun_until(at, lambda a: len(a.dataframe) > 0)
    table = at.dataframe[0].value
    accs = dict(zip(table["embedding"], table["accuracy"], strict=True))
    # pixels are probed twice (the baseline and the saved copy) and must agree exactly
    assert accs["raw pixels"] == pytest.approx(accs["digits-pixels"])
    assert accs["raw pixels"] > 0.9


def test_classify_page_ablation_table():
    at = _on("classify.py")
    at.slider(key="clf_folds").set_value(2)
    at.number_input(key="abl_k").set_value(2)
    at.number_input(key="abl_n").set_value(300)
    at.button(key="abl_run").click().run()
    _rerun_until(at, lambda a: len(a.dataframe) > 0)
    table = at.dataframe[0].value
    assert len(table) == 12  # 3 normalisations × power on/off × L2 on/off
    assert set(table["normalization"]) == {"none", "analytic", "empirical"}
    # the page shows exactly what the library computes for the same settings
    from fisher_core import load_builtin
    from fisher_core.metrics import fisher_vector_ablation

    ds = load_builtin("digits")
    ref = fisher_vector_ablation(ds, ds.labels, n_components=2, patch=3, cv=2, max_images=300)
    np.testing.assert_allclose(table["accuracy"], [r["accuracy"] for r in ref])
    assert table["accuracy"].max() > 0.6
    # Issue 15: results were lost on a reload. A new session with the same settings shows
    # the saved table without running anything.
    fresh = _on("classify.py")
    fresh.slider(key="clf_folds").set_value(2)
    fresh.number_input(key="abl_k").set_value(2)
    fresh.number_input(key="abl_n").set_value(300).run()
    assert not fresh.exception and len(fresh.dataframe) == 1
    np.testing.assert_allclose(fresh.dataframe[0].value["accuracy"], table["accuracy"])
    assert any(c.value.startswith("Saved ") for c in fresh.caption)
    # whitening (issue 18): three more rows, the PCA fitted on each training fold
    fresh.number_input(key="abl_whiten").set_value(8)
    fresh.button(key="abl_run").click().run()
    _rerun_until(fresh, lambda a: len(a.dataframe) > 0 and len(a.dataframe[0].value) == 15)
    white = fresh.dataframe[0].value.iloc[12:]
    assert list(white["setting"]) == ["√+W8+L2"] * 3
    ref = fisher_vector_ablation(ds, ds.labels, n_components=2, patch=3, cv=2, max_images=300,
                                 whiten=8)
    np.testing.assert_allclose(white["accuracy"], [r["accuracy"] for r in ref[12:]])


def test_whitened_empirical_fisher_vectors_are_probed_without_leakage(tmp_path):
    at = _on("embeddings.py")
    at.number_input(key="fv_k").set_value(2)
    at.selectbox(key="fv_norm").select("empirical")
    at.number_input(key="fv_whiten").set_value(12)
    next(b for b in at.button if b.label == "Compute Fisher vectors").click()
    at.run()
    assert not at.exception and not at.error
    name = at.session_state["embedding_name"]
    assert name == "digits-fv-k2-p3-empirical-pow-w12-l2"
    from fisher_core.metrics import linear_probe
    from fisher_core.workspace import Workspace

    emb = Workspace().load_embedding(name)
    assert emb.dim == 12 and emb.base.shape == (1797, 46)
    at.switch_page("../pages/classify.py").run()
    at.multiselect(key="clf_embs").set_value([name])
    at.slider(key="clf_folds").set_value(2)
    at.button(key="clf_run").click().run()
    _rerun_until(at, lambda a: len(a.dataframe) > 0)
    accs = dict(zip(at.dataframe[0].value["embedding"], at.dataframe[0].value["accuracy"],
                    strict=True))
    from fisher_core import load_builtin

    y = load_builtin("digits").labels
    assert accs[name] == pytest.approx(linear_probe(emb, y, cv=2).accuracy)
    # an impossible whitening is refused with the reason, and the page keeps its state
    at.switch_page("../pages/embeddings.py").run()
    at.number_input(key="fv_whiten").set_value(5000)  # K back at its default 16: 368 dims
    next(b for b in at.button if b.label == "Compute Fisher vectors").click()
    at.run()
    assert at.error[0].value.startswith("whiten=5000 exceeds min")
    assert at.error[0].value.endswith("choose at most 368 dimensions.")
    assert at.session_state["embedding_name"] == name


def test_train_page_trains_saves_and_lists_a_model():
    at = _on("train.py")
    assert "No model trained on this dataset yet." in at.info[0].value
    at.selectbox(key="train_family").select("pixelcnn").run()
    at.number_input(key="cfg_pixelcnn_hidden").set_value(4)
    at.number_input(key="cfg_pixelcnn_n_blocks").set_value(2)
    at.number_input(key="train_epochs").set_value(2)
    at.text_input(key="train_name").input("tiny-px")
    at.button[0].click()  # the form's "Train"
    at.run()
    assert not at.exception, at.exception
    _rerun_until(at, lambda a: len(a.success) > 0, timeout=180)
    assert "Saved model **tiny-px**" in at.success[0].value
    table = at.dataframe[-1].value
    assert list(table["model"]) == ["tiny-px"]
    assert table["epochs"][0] == 2 and 0 < table["bits/dim (val)"][0] < 2
    # the run's curves stay visible, and its Fisher monitor (every family, issue 18) is drawn
    assert [c.key for c in at.get("plotly_chart")] == ["curves_final_train:tiny-px",
                                                       "train_monitor"]


def test_train_page_rejects_a_bad_name_and_keeps_state():
    at = _on("train.py")
    at.text_input(key="train_name").input("my model!")
    at.button[0].click()
    at.run()
    assert "Use letters, digits" in at.error[0].value
    assert at.session_state["dataset"].name == "digits"


def test_embeddings_page_deep_model_fisher_scores_and_activations(tmp_path):
    from fisher_core import Workspace, load_builtin
    from fisher_core.workspace import train_and_save

    train_and_save(load_builtin("digits"), "pixelcnn", config={"hidden": 4, "n_blocks": 2},
                   epochs=1, workspace=Workspace(tmp_path / "ws"), name="px",
                   dataset_key="builtin:digits")
    at = _on("embeddings.py")
    at.radio(key="emb_method").set_value("Deep model").run()
    at.number_input(key="deep_dim").set_value(64)
    at.button[0].click()  # "Compute embedding"
    at.run()
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == "px-fisher-sparse64-fim_diag-c"
                 if "embedding_name" in a.session_state else False)
    emb = at.session_state["embedding_name"]
    from fisher_core import Workspace as W

    saved = W(tmp_path / "ws").load_embedding(emb)
    assert saved.vectors.shape == (1797, 64) and saved.kind == "fisher"
    first = np.array(saved.vectors)  # compared with the sharded run below
    # centred and scaled by the diagonal Fisher information: unit second moment per column
    np.testing.assert_allclose((saved.vectors ** 2).mean(0), 1.0, atol=1e-2)
    at.radio(key="emb_method").set_value("Deep model").run()
    at.selectbox(key="deep_kind").select("Network activations (baseline)").run()
    at.button[0].click()
    at.run()
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == "px-act-mean")
    assert not at.exception
    # exact scores, FIM and centre from 16 model samples, power and L2 (issue 18)
    at.radio(key="emb_method").set_value("Deep model").run()
    n_params = W(tmp_path / "ws").entry("models", "px").meta["metrics"]["parameters"]
    at.selectbox(key="deep_kind").select("Fisher scores ∇θ log p(x)").run()
    assert any(f"1,797 × {n_params:,} floats" in c.value for c in at.caption)
    at.selectbox(key="deep_proj").select("none (exact)")
    at.radio(key="deep_fim_from").set_value("model samples")
    at.number_input(key="deep_fim_n").set_value(16)
    at.toggle(key="deep_power").set_value(True)
    at.toggle(key="deep_l2").set_value(True)
    at.button[0].click()
    at.run()
    name = "px-fisher-exact-fim_diag-c-fims16-pow-l2"
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == name)
    exact = W(tmp_path / "ws").load_embedding(name)
    assert exact.vectors.shape == (1797, n_params) and exact.projection is None
    # sharded over 2 local Dask workers (issue 20): the same vectors as in this process
    at.toggle(key="deep_power").set_value(False)
    at.toggle(key="deep_l2").set_value(False)
    at.radio(key="deep_fim_from").set_value("data")
    at.selectbox(key="deep_proj").select("sparse")
    at.number_input(key="deep_dim").set_value(64)
    at.number_input(key="deep_workers").set_value(2)
    at.button[0].click()
    at.run()
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == emb
                 and a.session_state.get("deep_job") is None, timeout=180)
    sharded = W(tmp_path / "ws").load_embedding(emb)
    assert sharded.params["sharded"] >= 2
    np.testing.assert_allclose(sharded.vectors, first, rtol=1e-4, atol=1e-5)
    assert exact.normalization == "center+fim_diag+from16samples+power0.5+l2"
    np.testing.assert_allclose(np.linalg.norm(exact.vectors, axis=1), 1.0, rtol=1e-4)


def test_embeddings_page_gan_offers_afv_and_d_pool(tmp_path):
    from fisher_core import Workspace, load_builtin
    from fisher_core.workspace import train_and_save

    ds = load_builtin("digits")
    train_and_save(ds, "ebgan", config={"g_width": 8, "d_width": 4, "latent_dim": 4},
                   epochs=1, workspace=Workspace(tmp_path / "ws"), name="gan",
                   dataset_key="builtin:digits", monitor_every=1000)
    at = _on("embeddings.py")
    at.radio(key="emb_method").set_value("Deep model").run()
    at.selectbox(key="deep_model").select("gan").run()
    assert at.selectbox(key="deep_kind").options == [
        "Adversarial Fisher vectors (AFV)", "Discriminator pooled activations (D-pool)"]
    at.number_input(key="deep_dim").set_value(32)
    # the AFV's normalisation and generator sample count (issue 18)
    at.selectbox(key="deep_afv_norm").select("fim_diag")
    at.number_input(key="deep_afv_n").set_value(64)
    at.button[0].click()
    at.run()
    name = "gan-afv-sparse32-fimproj-g64"
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == name
                 if "embedding_name" in a.session_state else False, timeout=180)
    emb = Workspace(tmp_path / "ws").load_embedding(name)
    assert emb.kind == "afv" and emb.vectors.shape == (len(ds), 32)
    assert emb.params["normalize"] == "fim_diag" and emb.params["n_generator_samples"] == 64
    assert np.isfinite(emb.vectors).all()
    # projected-then-scaled: each coordinate has unit variance over the generator samples,
    # so on real images the scale is of order one
    assert 0.05 < float(emb.vectors.std()) < 20


def test_selection_summary_counts_labels_and_attribute_shares():
    from app.explorer import selection_summary
    from fisher_core import load_builtin

    ds = load_builtin("faces", n=64, size=16, seed=0)
    idx = [int(i) for i in np.flatnonzero(ds.attributes[:, 0] == 1)[:10]]
    text = selection_summary(ds, idx)
    counts = np.bincount(ds.labels[idx], minlength=len(ds.class_names))
    top = int(np.argmax(counts))
    assert text.startswith(f"labels: {ds.class_names[top]} {counts[top]}")
    assert f"smiling 100% (all {ds.attributes[:, 0].mean():.0%})" in text


def test_train_page_fits_a_patch_gmm_and_chooses_k():
    at = _on("train.py")
    at.selectbox(key="train_family").select("gmm").run()
    assert not at.exception, at.exception
    assert any("fitted by EM" in c.value for c in at.caption)
    assert not any(n.key == "train_epochs" for n in at.number_input)  # no epochs for EM
    at.number_input(key="cfg_gmm_n_components").set_value(4)
    at.text_input(key="train_name").input("g4")
    next(b for b in at.button if b.label == "Fit").click()
    at.run()
    _rerun_until(at, lambda a: len(a.success) > 0, timeout=180)
    assert "Saved model **g4**" in at.success[0].value
    table = at.dataframe[-1].value
    assert list(table["family"]) == ["gmm"] and table["BIC"][0] < 0
    # choosing K: the sweep runs in the background and draws its figure
    at.multiselect(key="gmm_ks").set_value([2, 4]).run()
    next(b for b in at.button if b.key == "gmm_sweep_go").click()
    at.run()
    _rerun_until(at, lambda a: any("Best K" in c.value for c in a.caption), timeout=120)
    # its Fisher vectors, from the Embeddings page, reuse the trained mixture
    at.switch_page("../pages/embeddings.py").run()
    at.radio(key="emb_method").set_value("Deep model").run()
    at.selectbox(key="deep_model").select("g4").run()
    assert at.selectbox(key="deep_kind").options == [
        "GMM Fisher vector (this trained GMM, improved FV)"]
    at.button[0].click()
    at.run()
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == "g4-fv"
                 if "embedding_name" in a.session_state else False)


def test_device_selector_shows_only_where_there_is_a_gpu(monkeypatch):
    """Issue 19: nothing changes on a CPU-only machine; with CUDA devices, the pages that
    train or embed offer them and pass the choice on."""
    import app.train_ui as train_ui
    import fisher_core.utils.devices as devices

    started = []
    monkeypatch.setattr(train_ui, "start", lambda *args: started.append(args))
    at = _on("train.py")
    assert not any(s.label == "Device" for s in at.selectbox)
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cuda:0"])
    at.run()
    picker = at.selectbox(key="train_device")
    assert picker.options == ["cpu", "cuda:0"] and picker.value == "cuda:0"
    picker.select("cpu")
    at.text_input(key="train_name").input("dev-px")
    next(b for b in at.button if b.label == "Train").click()
    at.run()
    assert not at.exception
    name, ds, family, config, opts, ds_key = started[0]
    assert name == "dev-px" and opts["device"] == "cpu"
    at.switch_page("../pages/embeddings.py").run()
    at.radio(key="emb_method").set_value("Deep model").run()
    assert not at.exception


def test_embeddings_page_chunk_by_chunk_into_the_workspace(tmp_path):
    """A workspace dataset's Fisher scores written chunk by chunk (issue 20): the in-memory
    library result; settings that cannot be chunked are refused with a message."""
    from fisher_core import Workspace, load_builtin
    from fisher_core.embeddings import fisher_score_embedding
    from fisher_core.workspace import train_and_save

    ws = Workspace(tmp_path / "ws")
    ds = load_builtin("digits").subset(np.arange(600))
    ws.save_dataset(ds, "d600")
    model = train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 2,
                                                   "head_hidden": 4},
                           epochs=1, workspace=ws, name="px", dataset_key="workspace:d600",
                           monitor=False).model
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.run()
    at.switch_page("../pages/data.py").run()
    at.radio(key="data_source").set_value("Workspace").run()
    at.selectbox(key="data_saved").select("d600")
    at.button(key="data_load_saved").click().run()
    assert at.session_state["dataset_key"] == "workspace:d600"
    at.switch_page("../pages/embeddings.py").run()
    at.radio(key="emb_method").set_value("Deep model").run()
    at.number_input(key="deep_dim").set_value(32)
    at.toggle(key="deep_chunked").set_value(True)
    at.radio(key="deep_fim_from").set_value("model samples")
    at.button[0].click()
    at.run()
    assert "Chunk-by-chunk Fisher scores take the FIM and centre from the data" in \
        at.error[0].value
    at.radio(key="deep_fim_from").set_value("data")
    at.button[0].click()
    at.run()
    name = "px-fisher-sparse32-fim_diag-c"
    _rerun_until(at, lambda a: a.session_state["embedding_name"] == name
                 if "embedding_name" in a.session_state else False)
    saved = ws.load_embedding(name)
    assert saved.params["chunk_rows"] == 2048
    ref = fisher_score_embedding(model, ds.images, dim=32)
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-4, atol=1e-5)
