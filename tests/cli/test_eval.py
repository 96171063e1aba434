"""``fisherlab eval``: probes equal the library's, FID and edit scores train what is missing
(decoders, the feature extractor) once and save it."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.metrics import linear_probe
from fisher_core.workspace import Workspace, extractor_entry, load_rows

FAST = ["--decoder-epochs", "1", "--decoder-seconds", "20", "--extractor-epochs", "1"]


def test_probe_accuracy_equals_linear_probe(ws):
    out = ws.json("eval", "probe", "scores", "small-pixels", "--folds", "3")
    w = Workspace(ws.root)
    ds = w.load_dataset("small")
    rows = {r["embedding"]: r for r in out["probes"]}
    assert list(rows) == ["raw pixels", "scores", "small-pixels"]
    for name in ("scores", "small-pixels"):
        ref = linear_probe(w.load_embedding(name).vectors, ds.labels, cv=3, seed=0)
        assert rows[name]["accuracy"] == pytest.approx(ref.accuracy, abs=1e-12)
        assert rows[name]["std"] == pytest.approx(ref.std, abs=1e-12)
    ref = linear_probe(ds.images.reshape(len(ds), -1), ds.labels, cv=3, seed=0)
    assert rows["raw pixels"]["accuracy"] == pytest.approx(ref.accuracy, abs=1e-12)
    # saved as the app's Classify page saves it, so the page shows it
    saved, _ = load_rows(w, "probe", {"dataset": "workspace:small", "target": "label",
                                      "folds": 3})
    assert saved == out["probes"]
    assert out["saved"][0]["kind"] == "results"


def test_probe_human_and_errors(ws):
    text = ws("eval", "probe", "scores", "--folds", "2", json_mode=False).stdout
    assert text.startswith("Linear and cosine 10-NN probes on workspace:small, predicting label "
                           "(2-fold, seed 0)")
    assert "10-NN" in text
    assert "raw pixels" in text and "scores" in text
    assert ws.error("eval", "probe", "scores", "faces-pixels") == (
        "Error: the embeddings belong to different datasets (workspace:faces, workspace:small); "
        "probe the embeddings of one dataset at a time.")
    assert ws.error("eval", "probe", "scores", "--target", "smiling") == (
        "Error: --target smiling: choose one of label (dataset workspace:small).")


def test_interpolation_trains_what_is_missing_once(ws):
    w = Workspace(ws.root)
    assert extractor_entry(w, "workspace:faces") is None
    out = ws.json("eval", "interpolation", "-d", "faces", "--spaces", "faces-pixels",
                  "--pairs", "16", "--steps", "3", *FAST)
    assert out["alphas"] == [0.0, 0.5, 1.0]
    assert list(out["fid"]) == ["faces-pixels"] and len(out["fid"]["faces-pixels"]) == 3
    assert all(np.isfinite(out["fid"]["faces-pixels"]))
    assert out["extractor"] == "domain-cnn(faces)"
    assert {(t["kind"], t["name"]) for t in out["trained"]} == {
        ("decoders", "faces-pixels"), ("extractors", out["extractor_entry"])}
    assert w.exists("decoders", "faces-pixels") and extractor_entry(w, "workspace:faces")
    rows = w.load_result(f"fid-alpha-{out['extractor_entry']}")[0]["rows"]
    assert [r["fid"] for r in rows] == pytest.approx(out["fid"]["faces-pixels"])
    again = ws.json("eval", "interpolation", "-d", "faces", "--spaces", "faces-pixels",
                    "--pairs", "16", "--steps", "3")
    assert again["trained"] == [] and again["fid"] == out["fid"]  # seeded: the same numbers
    # 3 draws by default: spread reported, and the pixel space's ratio is its own reference
    assert out["repeats"] == 3 and len(out["fid_std"]["faces-pixels"]) == 3
    (ratio,) = out["ratios"]
    fid = out["fid"]["faces-pixels"]
    assert ratio["ratio"] == pytest.approx(max(fid) / (0.5 * (fid[0] + fid[-1])))
    assert ratio["ratio_vs_reference"] == pytest.approx(1.0)


def test_edits(ws):
    out = ws.json("eval", "edits", "-d", "faces", "--spaces", "faces-pixels", "-a",
                  "smiling,hat", "--strengths", "1,3", "--sources", "8", *FAST)
    rows = out["rows"]
    assert len(rows) == 2 * 2 * 2  # attributes × directions × strengths
    assert {r["attribute"] for r in rows} == {"smiling", "hat"}
    (point,) = out["operating_points"]  # one space
    at3 = [r for r in rows if r["strength"] == 3.0]
    assert point["fixed_success"] == pytest.approx(np.mean([r["success"] for r in at3]))
    assert all(0.0 <= r["success"] <= 1.0 for r in rows)


@pytest.mark.parametrize(("args", "line"), [
    (["edits", "-d", "small", "--spaces", "scores"],
     "Error: dataset 'small' has no attributes to edit; use one that has (e.g. 'fisherlab "
     "--workspace {root} data builtin faces')."),
    (["edits", "-d", "faces", "--spaces", "faces-pixels", "-a", "wings"],
     "Error: --attributes: wings not in 'faces'; choose from smiling, eyeglasses, eyes_open, "
     "hat."),
    (["interpolation", "-d", "small", "--spaces", "faces-pixels"],
     "Error: embedding 'faces-pixels' was computed on 'workspace:faces', not "
     "'workspace:small'; give spaces of this dataset."),
    (["interpolation", "-d", "small", "--spaces", ","],
     "Error: --spaces is empty; give one or more names separated by commas."),
    (["interpolation", "-d", "small", "--spaces", "scores", "--method", "cubic"],
     "Error: --method cubic: choose linear or slerp."),
    (["interpolation", "-d", "small", "--spaces", "scores", "--decoder-seconds", "soon"],
     "Error: --decoder-seconds soon: give a number of seconds or 'auto'."),
    (["edits", "-d", "faces", "--spaces", "faces-pixels", "--decoder-architecture", "gan"],
     "Error: --decoder-architecture gan: choose direct or pixelcnn."),
])
def test_errors(ws, args, line):
    assert ws.error("eval", *args) == line.format(root=ws.root)
    assert not Workspace(ws.root).exists("decoders", "scores")  # nothing trained


def test_size_sweep_equals_the_library_and_the_app_finds_it(ws):
    from fisher_core.workspace import load_rows, sweep_key, training_size_sweep

    out = ws.json("eval", "size-sweep", "-d", "small", "-f", "gmm", "--sizes", "40,120",
                  "--set", "n_components=3")
    w = Workspace(ws.root)
    ref = training_size_sweep(w.load_dataset("small"), "gmm", [40, 120],
                              config={"n_components": 3}, steps=300)
    assert [r["n_train"] for r in out["rows"]] == [40, 120]
    np.testing.assert_allclose([r["heldout_fd"] for r in out["rows"]],
                               [r["heldout_fd"] for r in ref], rtol=1e-6)
    saved, _ = load_rows(w, "size-sweep", sweep_key("workspace:small", "gmm", [40, 120], 300,
                                                    {"n_components": 3}))
    assert [r["train_fd"] for r in saved] == [r["train_fd"] for r in out["rows"]]
    assert ws.error("eval", "size-sweep", "-d", "small", "-f", "gan") == (
        "Error: --family gan: choose one of pixelcnn, vae, ebgan, fvvae, gmm.")
    assert ws.error("eval", "size-sweep", "-d", "small", "-f", "gmm", "--sizes", "10,x") == (
        "Error: --sizes 10,x: give whole numbers, e.g. 50,100,200.")
    assert ws.error("eval", "size-sweep", "-d", "small", "-f", "gmm", "--sizes",
                    "10,9999").startswith("Error: training-set sizes must be between 2 and 240")
