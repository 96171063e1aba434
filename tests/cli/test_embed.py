"""``fisherlab embed``: embeddings saved to the workspace equal the library's, and deep kinds
check the model they are given."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fisher_core.embeddings import (
    fisher_score_embedding,
    fisher_vector_embedding,
    local_descriptor_embedding,
)
from fisher_core.workspace import Workspace, load_saved_model


def test_fisher_scores_equal_the_library_call(ws):
    w = Workspace(ws.root)
    saved = w.load_embedding("scores")
    model, _ = load_saved_model(w, "pc")
    ref = fisher_score_embedding(model, w.load_dataset("small").images, dim=16,
                                 dataset_key="workspace:small", model_name="pc")
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-5, atol=1e-6)
    assert saved.metadata() == ref.metadata()


def test_exact_scores_from_model_samples_equal_the_library_call(ws):
    out = ws.json("embed", "fisher-scores", "-d", "small", "-m", "pc", "--projection", "none",
                  "--fim-from", "samples", "--fim-samples", "8", "--power", "--l2")
    assert out["embedding"] == "pc-fisher-exact-fim_diag-c-fims8-pow-l2"  # the app's naming
    w = Workspace(ws.root)
    model, _ = load_saved_model(w, "pc")
    ref = fisher_score_embedding(model, w.load_dataset("small").images, dim=None,
                                 projection=None, fim_from="samples", n_fim_samples=8,
                                 power=0.5, l2=True)
    saved = w.load_embedding(out["embedding"])
    assert saved.dim == sum(p.numel() for p in model.parameters())
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-5, atol=1e-6)
    assert "--fim-from prior: choose data or samples" in ws.error(
        "embed", "fisher-scores", "-d", "small", "-m", "pc", "--fim-from", "prior")
    assert "--fim-samples applies to fisher-scores only" in ws.error(
        "embed", "afv", "-d", "small", "--fim-samples", "8")


def test_fisher_vectors_default_name_and_json(ws):
    out = ws.json("embed", "fisher-vector", "-d", "small", "-k", "2", "--no-power")
    name = "small-fv-k2-p3-analytic-l2"  # the app's naming
    assert out["saved"] == [{"kind": "embeddings", "name": name}]
    assert out["embedding"] == name and out["dataset"] == "workspace:small"
    ds = Workspace(ws.root).load_dataset("small")
    ref, _ = fisher_vector_embedding(ds, n_components=2, patch=3, stride=1, power=None,
                                     dataset_key="workspace:small")
    assert out["shape"] == list(ref.vectors.shape)
    np.testing.assert_allclose(Workspace(ws.root).load_embedding(name).vectors, ref.vectors,
                               rtol=1e-4, atol=1e-5)


def test_whitened_fisher_vectors_and_their_probe(ws):
    out = ws.json("embed", "fisher-vector", "-d", "small", "-k", "2", "--whiten", "12")
    name = "small-fv-k2-p3-analytic-pow-w12-l2"
    assert out["embedding"] == name and out["shape"] == [300, 12]
    w = Workspace(ws.root)
    ref, _ = fisher_vector_embedding(w.load_dataset("small"), n_components=2, patch=3,
                                     stride=1, whiten=12, dataset_key="workspace:small")
    saved = w.load_embedding(name)
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(saved.base, ref.base, rtol=1e-4, atol=1e-6)
    probe = ws.json("eval", "probe", name)["probes"][1]
    from fisher_core.metrics import linear_probe

    assert probe["accuracy"] == pytest.approx(
        linear_probe(saved, w.load_dataset("small").labels).accuracy)
    assert "--whiten applies to fisher-vector only" in ws.error(
        "embed", "pixels", "-d", "small", "--whiten", "4")
    assert "whiten=999 exceeds min(images, Fisher-vector dimension) = 46" in ws.error(
        "embed", "fisher-vector", "-d", "small", "-k", "2", "--whiten", "999")


def test_afv_options_equal_the_library_call(ws):
    from fisher_core.embeddings import afv_embedding

    ws("train", "ebgan", "-d", "small", "--epochs", "1", "--name", "gan", "--set",
       "g_width=4", "--set", "d_width=4", "--set", "latent_dim=4")
    out = ws.json("embed", "afv", "-d", "small", "-m", "gan", "--projection", "none",
                  "--normalize", "fim_diag", "--generator-samples", "32")
    assert out["embedding"] == "gan-afv-exact-fimproj-g32"
    w = Workspace(ws.root)
    model, _ = load_saved_model(w, "gan")
    ref = afv_embedding(model, w.load_dataset("small").images, dim=None, projection=None,
                        normalize="fim_diag", n_generator_samples=32)
    saved = w.load_embedding(out["embedding"])
    n_disc = sum(p.numel() for n, p in model.named_parameters() if n.startswith("disc."))
    assert saved.dim == n_disc == w.entry("models", "gan").meta["metrics"]["score_parameters"]
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-4, atol=1e-5)
    assert saved.params["n_generator_samples"] == 32 and saved.params["normalize"] == "fim_diag"
    assert ws.error("embed", "afv", "-d", "small", "-m", "gan", "--normalize", "none") == (
        "Error: --normalize none: afv takes fim_diag_exact or fim_diag.")


def test_activations_human_output(ws):
    result = ws("embed", "activations", "-d", "small", "-m", "pc", json_mode=False)
    assert re.match(r"Saved embedding pc-act-mean: activations · pc · none, 300 × \d+ "
                    r"\(dataset workspace:small\)\.", result.stdout)
    assert Workspace(ws.root).exists("embeddings", "pc-act-mean")


@pytest.mark.parametrize(("args", "line"), [
    (["fisher-scores"], "Error: embed fisher-scores needs --model NAME, a pixelcnn, vae or "
                        "fvvae model (saved pixelcnn/vae/fvvae models of workspace:small: "),
    (["latent", "-m", "pc"], "Error: embed latent needs a vae or fvvae model; 'pc' is a "
                             "pixelcnn (train one with 'fisherlab --workspace "),
    (["afv", "-m", "pc"], "Error: embed afv needs an ebgan model; 'pc' is a pixelcnn "),
    (["fisher-scores", "-m", "nope"], "Error: no model named 'nope' in the workspace "),
    (["pixels", "--dim", "8"], "Error: --dim applies to fisher-scores and afv only, not "
                               "pixels."),
    (["pixels", "--device", "cuda"], "Error: --device cuda: "),
    (["pixels", "--name", "small-pixels"], "Error: embeddings/small-pixels already exists in "
                                           "the workspace; pass --overwrite to replace it or "
                                           "choose another --name."),
    (["pixels", "--name", "a/b"], "Error: invalid name 'a/b': use 1-80 letters"),
])
def test_errors(ws, args, line):
    got = ws.error("embed", *args, "--dataset", "small")
    assert got.startswith(line), got


def test_a_model_of_another_dataset_is_refused(ws):
    assert ws.error("embed", "fisher-scores", "-d", "faces", "-m", "pc") == (
        f"Error: model 'pc' was trained on 'workspace:small', not 'workspace:faces'; use a "
        f"model of this dataset (train one with 'fisherlab --workspace {ws.root} train pixelcnn "
        f"--dataset faces').")


def test_a_bad_kind_is_a_usage_error(ws):
    line = ws.error("embed", "umap", "-d", "small", code=2)
    assert re.fullmatch(r"Error: Invalid value for '(KIND|kind)[^']*'.*'umap'.*"
                        r"See 'fisherlab embed --help'\.", line)


def test_vlad_of_sift_keypoints_equals_the_library_call(ws):
    out = ws.json("embed", "vlad", "-d", "faces", "--descriptors", "sift", "-k", "4")
    assert out["embedding"] == "faces-sift-vlad-k4-pca32"  # the app's naming
    assert out["kind"] == "vlad" and out["params"]["descriptors"] == "sift"
    w = Workspace(ws.root)
    ref = local_descriptor_embedding(w.load_dataset("faces"), descriptors="sift",
                                     encoding="vlad", n_components=4,
                                     dataset_key="workspace:faces")
    saved = w.load_embedding(out["embedding"])
    np.testing.assert_allclose(saved.vectors, ref.vectors, rtol=1e-6, atol=1e-7)
    assert saved.metadata() == ref.metadata()


def test_bow_of_dense_patches_and_orb_fisher_vectors(ws):
    out = ws.json("embed", "bow", "-d", "small", "-k", "8", "--no-power")
    assert out["embedding"] == "small-dense-bow-k8-p3-nopow"
    assert out["shape"] == [300, 8] and out["params"]["patch"] == 3
    out = ws.json("embed", "fisher-vector", "-d", "faces", "--descriptors", "orb", "-k", "2",
                  "--pca", "4")
    assert out["embedding"] == "faces-orb-fisher-k2-pca4"
    assert out["kind"] == "fisher_vector" and out["shape"] == [120, 2 * (1 + 2 * 6)]


@pytest.mark.parametrize(("args", "line"), [
    (["vlad", "--descriptors", "surf"], "Error: --descriptors surf: choose dense, sift or orb."),
    (["bow", "--descriptors", "sift", "--patch", "4"],
     "Error: --patch: dense descriptors only; --descriptors sift detects keypoints (leave "
     "--patch out)."),
    (["fisher-vector", "--descriptors", "orb", "-m", "pc", "--normalization", "none"],
     "Error: --model, --normalization: dense descriptors only; --descriptors orb detects "
     "keypoints (leave --model, --normalization out)."),
    (["vlad", "--normalization", "none"],
     "Error: --normalization applies to fisher-vector only, not vlad."),
    (["pixels", "--descriptors", "sift"],
     "Error: --descriptors applies to fisher-vector, vlad and bow only, not pixels."),
])
def test_local_descriptor_errors(ws, args, line):
    assert ws.error("embed", *args, "--dataset", "small") == line


def test_fisher_scores_sharded_over_two_local_workers(ws):
    pytest.importorskip("distributed")
    out = ws.json("embed", "fisher-scores", "-d", "small", "-m", "pc", "--dim", "16",
                  "--workers", "2", "--name", "scores-sharded")
    w = Workspace(ws.root)
    np.testing.assert_allclose(w.load_embedding(out["embedding"]).vectors,
                               w.load_embedding("scores").vectors, rtol=1e-4, atol=1e-5)
    assert out["params"]["sharded"] >= 2
    assert ws.error("embed", "fisher-scores", "-d", "small", "-m", "pc", "--workers", "2",
                    "--fim-from", "samples").startswith(
        "Error: --fim-from samples: sharded extraction estimates the FIM on the data")
    assert "--workers applies to fisher-scores only" in ws.error(
        "embed", "pixels", "-d", "small", "--workers", "2")


def test_chunked_fisher_scores_equal_the_in_memory_ones(ws):
    out = ws.json("embed", "fisher-scores", "-d", "small", "-m", "pc", "--dim", "16",
                  "--chunk-rows", "64", "--name", "scores-chunked")
    w = Workspace(ws.root)
    np.testing.assert_allclose(w.load_embedding(out["embedding"]).vectors,
                               w.load_embedding("scores").vectors, rtol=1e-4, atol=1e-5)
    assert out["params"]["chunk_rows"] == 64
    px = ws.json("embed", "pixels", "-d", "small", "--chunk-rows", "100", "--name", "px-c")
    np.testing.assert_array_equal(w.load_embedding(px["embedding"]).vectors,
                                  w.load_embedding("small-pixels").vectors)


@pytest.mark.parametrize(("args", "line"), [
    (["fisher-vector", "--chunk-rows", "10"], "embed fisher-vector --chunk-rows needs --model"),
    (["fisher-scores", "-m", "pc", "--chunk-rows", "10", "--workers", "2"],
     "--workers: not with --chunk-rows"),
    (["fisher-scores", "-m", "pc", "--chunk-rows", "10", "--projection", "none"],
     "--projection none: not with --chunk-rows"),
    (["afv", "--chunk-rows", "10"], "--chunk-rows applies to"),
])
def test_chunked_errors(ws, args, line):
    assert line in ws.error("embed", *args, "-d", "small")


def test_a_killed_chunked_extraction_resumes_to_the_same_array(ws, tmp_path):
    """SIGKILL a real ``fisherlab embed --chunk-rows`` once it has written two chunks; the
    same command again writes only the rest, and the result equals an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "fisher_core.cli", "--workspace", str(ws.root), "--json",
           "embed", "fisher-scores", "-d", "small", "-m", "pc", "--dim", "16",
           "--chunk-rows", "10", "--name", "scores-killed"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = ws.root / ".partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(stage.glob("scores-killed-*/part-*.npy"))) >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(stage.glob("scores-killed-*/part-*.npy"))
    assert 2 <= len(written) < 30  # killed mid-way (300 rows, 30 chunks)
    w = Workspace(ws.root)
    assert not w.exists("embeddings", "scores-killed")  # nothing half-written is live
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(w.load_embedding("scores-killed").vectors,
                               w.load_embedding("scores").vectors, rtol=1e-4, atol=1e-5)
    assert not list(stage.glob("scores-killed-*"))
