"""Decoders and extractors in the workspace; FID curves and edit scores per space."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core import Workspace, load_builtin
from fisher_core.embeddings import pixel_embedding
from fisher_core.metrics import frechet_distance
from fisher_core.workspace import (
    decoded_embeddings,
    edit_scores,
    fid_curves,
    load_embedding_decoder,
    load_extractor,
    train_embedding_decoder,
    train_extractor,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ds = load_builtin("faces", n=240, size=16, seed=0)
    ws.save_embedding(pixel_embedding(ds, dataset_key="k"), "px")
    train_embedding_decoder(ws, "px", ds, epochs=1, max_seconds=10, hidden=32,
                            base_channels=8)
    train_extractor(ws, ds, "k", epochs=1, max_seconds=10)
    return ws, ds


def test_saved_decoder_and_extractor_are_found_by_name(setup):
    ws, ds = setup
    assert list(decoded_embeddings(ws, "k")) == ["px"]
    assert decoded_embeddings(ws, "other") == {}
    assert load_embedding_decoder(ws, "missing") is None
    assert load_extractor(ws, "other") is None
    ws.save_embedding(pixel_embedding(ds, dataset_key="k"), "px2")
    with pytest.raises(ValueError, match="'px2' has no decoder; train one first"):
        fid_curves(ws, ds, "k", ["px2"])
    ws.delete("embeddings", "px2")


def test_fid_curve_endpoints_equal_a_direct_computation(setup):
    ws, ds = setup
    rows = fid_curves(ws, ds, "k", ["px"], n_pairs=20, alphas=[0.0, 0.5, 1.0], seed=3,
                      repeats=1)  # one draw: the pairs below
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    assert [r["fid_std"] for r in rows] == [0.0, 0.0, 0.0]
    dec, ext = load_embedding_decoder(ws, "px"), load_extractor(ws, "k")
    z = ws.load_embedding("px").vectors
    rng = np.random.default_rng(3)  # the protocol's pairs: first ends i, second ends j ≠ i
    i = rng.integers(0, len(ds), 20)
    j = (i + rng.integers(1, len(ds), 20)) % len(ds)
    real = ext.features(ds.images)
    assert rows[0]["fid"] == pytest.approx(frechet_distance(real, ext.features(dec.decode(z[i]))))
    assert rows[2]["fid"] == pytest.approx(frechet_distance(real, ext.features(dec.decode(z[j]))))
    saved, _ = ws.load_result("fid-alpha-k")
    assert saved["rows"] == rows


def test_edit_scores_rows_per_strength_and_direction(setup):
    ws, ds = setup
    rows = edit_scores(ws, ds, "k", ["px"], attribute="hat", strengths=(1.0, 3.0),
                       n_sources=10)
    assert {(r["direction"], r["strength"]) for r in rows} == {
        (d, s) for d in ("add", "remove") for s in (1.0, 3.0)}
    assert all(0.0 <= r["success"] <= 1.0 and r["space"] == "px" for r in rows)
    # A second attribute is added to the saved table; rescoring one replaces its rows.
    more = edit_scores(ws, ds, "k", ["px"], attribute="smiling", strengths=(2.0,),
                       n_sources=10)
    again = edit_scores(ws, ds, "k", ["px"], attribute="hat", strengths=(5.0,), n_sources=10)
    saved = ws.load_result("edits-k")[0]["rows"]
    assert saved == more + again
    assert {(r["attribute"], r["strength"]) for r in saved} == {
        ("smiling", 2.0), ("hat", 5.0)}
    with pytest.raises(ValueError, match="attribute must be one of"):
        edit_scores(ws, ds, "k", ["px"], attribute="beard")


def test_decoders_record_their_architecture(tmp_path):
    """Issue 17: a pixelcnn decoder is saved, listed with its architecture and loaded back;
    decoders saved before there was a choice are listed as direct."""
    ws = Workspace(tmp_path / "ws")
    ds = load_builtin("faces", n=40, size=16, seed=0)
    ws.save_embedding(pixel_embedding(ds, dataset_key="k"), "px")
    dec, metrics = train_embedding_decoder(ws, "px", ds, epochs=1, max_seconds=10, hidden=8,
                                           architecture="pixelcnn", pixel_channels=4,
                                           pixel_blocks=1)
    assert decoded_embeddings(ws, "k")["px"]["architecture"] == "pixelcnn"
    back = load_embedding_decoder(ws, "px")
    assert back.config.architecture == "pixelcnn" and back.config.levels == 16
    z = ws.load_embedding("px").vectors[:3]
    assert np.array_equal(back.decode(z), dec.decode(z))
    entry = ws.entry("decoders", "px")
    meta = {k: v for k, v in entry.meta.items() if k != "architecture"}
    with ws.writer("decoders", "px", meta) as folder:  # as an older FisherLab saved it
        for f in entry.path.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
    assert decoded_embeddings(ws, "k")["px"]["architecture"] == "direct"
