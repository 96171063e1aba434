"""``fisherlab umap``: a self-contained HTML figure, PNG through kaleido, clear errors."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest


def test_html_is_self_contained(ws, tmp_path):
    out = tmp_path / "u.html"
    data = ws.json("umap", "scores", "--out", out)
    assert data == {"saved": [], "embedding": "scores", "dataset": "workspace:small",
                    "out": str(out), "format": "html", "points": 300, "dims": 2,
                    "colour_by": "label", "umap": {"n_neighbors": 15, "min_dist": 0.1,
                                                   "metric": "euclidean", "pca_dims": 50}}
    html = out.read_text()
    assert "<script src=" not in html  # plotly.js inlined: opens offline
    assert "UMAP of scores (fisher, 16 dims)" in html
    assert [p.name for p in tmp_path.iterdir()] == ["u.html"]  # no temporary file left
    cos = ws.json("umap", "scores", "--out", tmp_path / "c.html", "--metric", "cosine",
                  "--min-dist", "0.5", "--pca-dims", "0", "--neighbors", "5")
    assert cos["umap"] == {"n_neighbors": 5, "min_dist": 0.5, "metric": "cosine",
                           "pca_dims": None}


@pytest.mark.skipif(importlib.util.find_spec("kaleido") is None
                    or not (shutil.which("chromium") or shutil.which("google-chrome")),
                    reason="PNG export needs kaleido and Chrome/Chromium")
def test_png(ws, tmp_path):
    out = tmp_path / "faces.png"
    data = ws.json("umap", "faces-pixels", "--out", out, "--colour-by", "smiling")
    assert data["format"] == "png" and data["colour_by"] == "smiling"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_kaleido_says_what_to_do(ws, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido → ImportError
    assert ws.error("umap", "scores", "--out", tmp_path / "u.png") == (
        "Error: PNG export needs the kaleido package and Chrome/Chromium (pip install "
        "'fisherlab[cli]'; BROWSER_PATH names the browser); or write an .html file instead.")
    assert not (tmp_path / "u.png").exists()


@pytest.mark.parametrize(("args", "line"), [
    (["scores", "--out", "{tmp}/u.svg"], "Error: --out {tmp}/u.svg: write an .html or a .png "
                                         "file."),
    (["scores", "--out", "{tmp}/no/u.html"], "Error: --out {tmp}/no/u.html: folder {tmp}/no "
                                             "does not exist."),
    (["scores", "--out", "{tmp}/u.html", "--colour-by", "hat"],
     "Error: --colour-by hat: choose one of label, none (dataset workspace:small)."),
    (["scores", "--out", "{tmp}/u.html", "--metric", "l1"],
     "Error: --metric l1: choose euclidean or cosine."),
    (["nope", "--out", "{tmp}/u.html"],
     "Error: no embedding named 'nope' in the workspace; compute it with 'fisherlab --workspace "
     "{root} embed KIND --dataset NAME' (saved: "),
])
def test_errors(ws, tmp_path, args, line):
    got = ws.error("umap", *(a.format(tmp=tmp_path) for a in args))
    assert got.startswith(line.format(tmp=tmp_path, root=ws.root)), got
