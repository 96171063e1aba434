"""``fisherlab train gmm``, ``fisherlab gmm-sweep`` and Fisher vectors of a trained GMM."""

from __future__ import annotations

import numpy as np

from fisher_core.embeddings import fisher_vector_embedding
from fisher_core.fisher import PatchDescriptor
from fisher_core.training import sweep_components
from fisher_core.workspace import Workspace, load_saved_model


def test_train_gmm_then_its_fisher_vectors_reuse_it(ws):
    out = ws.json("train", "gmm", "-d", "small", "--name", "g4", "--set", "n_components=4")
    assert out["family"] == "gmm" and out["saved"] == [{"kind": "models", "name": "g4"}]
    m = out["metrics"]
    assert m["parameters"] == 4 - 1 + 2 * 4 * 11 and np.isfinite(m["bic"])
    w = Workspace(ws.root)
    model, history = load_saved_model(w, "g4")
    assert m["epochs"] == len(history["epoch_train_loss"])  # EM iterations
    emb = ws.json("embed", "fisher-vector", "-d", "small", "--model", "g4")
    assert emb["embedding"] == "g4-fv-analytic-pow-l2" and emb["model"] == "g4"
    saved = w.load_embedding("g4-fv-analytic-pow-l2")
    # the same vectors as the library's pipeline handed the trained mixture and recipe
    ds = w.load_dataset("small")
    assert isinstance(model.descriptor(), PatchDescriptor)
    ref, _ = fisher_vector_embedding(ds, patch=3, stride=1, gmm=model.mixture())
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-5, atol=1e-6)


def test_gmm_sweep_table_and_figure(ws, tmp_path):
    out = ws.json("gmm-sweep", "-d", "small", "--k", "2,4", "--set", "max_descriptors=3000",
                  "--out", tmp_path / "k.html")
    assert [r["n_components"] for r in out["rows"]] == [2, 4]
    html = (tmp_path / "k.html").read_text()
    assert html.startswith("<!doctype html>") and "log-likelihood per descriptor" in html
    assert out["best_bic"] in (2, 4)


def test_gmm_sweep_matches_the_library(ws):
    from fisher_core.data import load_builtin

    out = ws.json("gmm-sweep", "-d", "small", "--k", "3", "--set", "max_descriptors=2000")
    images = np.round(load_builtin("digits").images[:300] * 255) / 255
    ref = sweep_components(images.astype(np.float32), [3], max_descriptors=2000)
    assert out["rows"][0]["val_ll"] == ref[0]["val_ll"]


def test_gmm_errors(ws):
    assert "--epochs, --lr: a gmm model is fitted by EM in one go" in ws.error(
        "train", "gmm", "-d", "small", "--epochs", "3", "--lr", "0.1")
    assert "with --model the trained GMM's own settings" in ws.error(
        "embed", "fisher-vector", "-d", "small", "--model", "g-none", "--patch", "3")
    assert "--k 2,x: write comma-separated integers" in ws.error(
        "gmm-sweep", "-d", "small", "--k", "2,x")
    assert "only max_descriptors, patch, pca, spatial, stride apply" in ws.error(
        "gmm-sweep", "-d", "small", "--set", "max_iter=3")
    assert "no model named 'nope'" in ws.error(
        "embed", "fisher-vector", "-d", "small", "--model", "nope")
