"""Chunked, resumable extraction into the workspace equals the in-memory embeddings."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.embeddings import (
    activation_embedding,
    fisher_score_embedding,
    patch_gmm_embedding,
    pixel_embedding,
)
from fisher_core.workspace import (
    ArrayRows,
    Workspace,
    chunked_embedding,
    partial_folder,
    train_and_save,
)
from fisher_core.workspace import extract as extract_module

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ds = load_builtin("digits").subset(np.arange(300))
    ws.save_dataset(ds, "d")
    px = train_and_save(ds, "pixelcnn", config={"hidden": 4, "n_blocks": 2, "head_hidden": 4},
                        epochs=1, workspace=ws, name="px", dataset_key="workspace:d",
                        monitor=False)
    gmm = train_and_save(ds, "gmm", config={"n_components": 4, "max_iter": 5}, epochs=1,
                         workspace=ws, name="gmm", dataset_key="workspace:d", monitor=False)
    return ws, ds, px.model, gmm.model


def test_dataset_rows_read_what_was_saved(saved):
    ws, ds, _, _ = saved
    rows = ws.dataset_rows("d")
    assert (rows.n, rows.shape) == (300, (1, 8, 8))
    np.testing.assert_array_equal(rows.read(37, 101), ds.images[37:101])
    np.testing.assert_array_equal(rows.labels, ds.labels)
    assert rows.read(290, 400).shape == (10, 1, 8, 8)  # clipped at the end


@pytest.mark.parametrize("kind", ["pixels", "activations", "fisher_vector", "fisher_scores"])
def test_chunked_equals_in_memory(saved, kind):
    ws, ds, px, gmm = saved
    seen = []
    options = {"dim": 32, "power": 0.5, "l2": True} if kind == "fisher_scores" else {}
    model = {"pixels": None, "activations": px, "fisher_vector": gmm, "fisher_scores": px}[kind]
    name = {"fisher_vector": "gmm", "pixels": None}.get(kind, "px")
    got = chunked_embedding(ws, f"c-{kind}", ws.dataset_rows("d"), kind, model=model,
                            model_name=name, options=options, chunk_rows=64,
                            dataset_key="workspace:d", progress=lambda f, m: seen.append(f))
    ref = {"pixels": lambda: pixel_embedding(ds, dataset_key="workspace:d"),
           "activations": lambda: activation_embedding(px, ds.images, dataset_key="workspace:d",
                                                       model_name="px"),
           "fisher_vector": lambda: patch_gmm_embedding(gmm, ds.images, model_name="gmm",
                                                        dataset_key="workspace:d"),
           "fisher_scores": lambda: fisher_score_embedding(px, ds.images, dim=32, power=0.5,
                                                           l2=True, dataset_key="workspace:d",
                                                           model_name="px")}[kind]()
    np.testing.assert_allclose(got.vectors, ref.vectors, rtol=1e-4, atol=1e-5)
    meta = got.metadata()
    assert meta["params"].pop("chunk_rows") == 64
    assert meta == ref.metadata()
    owner = ws.load_embedding(f"c-{kind}").vectors
    while not isinstance(owner, mmap.mmap) and owner.base is not None:
        owner = owner.base
    assert isinstance(owner, mmap.mmap)  # backed by the file, not a copy in memory
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert not list((ws.root / ".partial").iterdir())  # the staging folder is gone


class Stop(Exception):
    pass


@pytest.mark.parametrize("kind", ["fisher_scores", "pixels"])
def test_an_interrupted_extraction_resumes_to_the_same_array(saved, monkeypatch, kind):
    ws, ds, px, _ = saved
    model = px if kind == "fisher_scores" else None
    options = {"dim": 16}
    full = chunked_embedding(ws, f"whole-{kind}", ArrayRows(ds.images, "mem"), kind, model=model,
                             options=options, chunk_rows=50)
    real = extract_module._chunk_fn
    computed = []

    def counting(kind, model, options):
        f = real(kind, model, options)

        def g(x, i):
            if len(computed) == 3 and stop_after_three:
                raise Stop  # killed after three chunks were written
            computed.append(i)
            return f(x, i)
        return g

    monkeypatch.setattr(extract_module, "_chunk_fn", counting)
    stop_after_three = True
    with pytest.raises(Stop):
        chunked_embedding(ws, f"again-{kind}", ArrayRows(ds.images, "mem"), kind, model=model,
                          options=options, chunk_rows=50)
    assert not ws.exists("embeddings", f"again-{kind}")  # nothing half-written is live
    stage = partial_folder(ws, f"again-{kind}", {"kind": kind, "data": "mem", "model": None,
                                         "model_version": None, "options": options,
                                         "chunk_rows": 50})
    assert sorted(p.name for p in stage.glob("part-*.npy")) == [
        "part-000000.npy", "part-000001.npy", "part-000002.npy"]
    stop_after_three, computed[:] = False, []
    seen = []
    resumed = chunked_embedding(ws, f"again-{kind}", ArrayRows(ds.images, "mem"), kind, model=model,
                                options=options, chunk_rows=50,
                                progress=lambda f, m: seen.append(m))
    assert [i for i in computed if i > 0] == [3, 4, 5]  # only the missing chunks (+ record)
    assert seen[0] == "resuming: 3 of 6 chunks already written"
    np.testing.assert_array_equal(resumed.vectors, full.vectors)
    assert not stage.exists()


def test_a_different_setting_does_not_resume_from_other_parts(saved):
    ws, ds, _, _ = saved
    a = partial_folder(ws, "e", {"kind": "pixels", "chunk_rows": 50})
    b = partial_folder(ws, "e", {"kind": "pixels", "chunk_rows": 64})
    assert a != b and a.parent == b.parent


def test_what_cannot_be_chunked_is_refused(saved):
    ws, ds, px, gmm = saved
    rows = ws.dataset_rows("d")
    with pytest.raises(ValueError, match="normalize='fim_diag_exact' cannot be chunked"):
        chunked_embedding(ws, "x", rows, "fisher_scores", model=px,
                          options={"normalize": "fim_diag_exact"})
    with pytest.raises(ValueError, match="chunked Fisher vectors take normalization"):
        chunked_embedding(ws, "x", rows, "fisher_vector", model=gmm, options={"whiten": 8})
    with pytest.raises(ValueError, match="a activations embedding needs a model"):
        chunked_embedding(ws, "x", rows, "activations")
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer; got 0"):
        chunked_embedding(ws, "x", rows, "pixels", chunk_rows=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        chunked_embedding(ws, "x", rows, "latent", model=px)


def test_datasets_saved_by_earlier_versions_still_load_and_read(tmp_path):
    """Before issue 20 a dataset was one arrays.safetensors; it loads, and reads in chunks."""
    from fisher_core.utils.io import save_arrays

    ws = Workspace(tmp_path / "ws")
    ds = load_builtin("digits").subset(np.arange(50))
    meta = {"summary": ds.summary(), "class_names": ds.class_names, "attribute_names": [],
            "levels": None, "title": ds.name}
    with ws.writer("datasets", "old", meta) as d:
        save_arrays(d / "arrays.safetensors",
                    {"images": np.round(ds.images * 255).astype(np.uint8), "labels": ds.labels})
    np.testing.assert_allclose(ws.load_dataset("old").images, ds.images, atol=1 / 510)
    rows = ws.dataset_rows("old")
    assert (rows.n, rows.shape) == (50, (1, 8, 8))
    np.testing.assert_array_equal(rows.read(10, 20), ws.load_dataset("old").images[10:20])
    np.testing.assert_array_equal(rows.labels, ds.labels)


def test_parts_of_data_that_changed_are_removed_not_resumed(tmp_path, monkeypatch):
    """A staging folder whose dataset was saved again can never resume: the next
    extraction of that name removes it; one of live data is kept."""
    ws = Workspace(tmp_path / "ws")
    ds = load_builtin("digits").subset(np.arange(100))
    ws.save_dataset(ds, "d")
    real = extract_module._chunk_fn

    def stopping(kind, model, options):
        f = real(kind, model, options)

        def g(x, i):
            if i == 1:
                raise Stop
            return f(x, i)
        return g

    monkeypatch.setattr(extract_module, "_chunk_fn", stopping)
    with pytest.raises(Stop):
        chunked_embedding(ws, "e", ws.dataset_rows("d"), "pixels", chunk_rows=40)
    with pytest.raises(Stop):  # other settings, same live data: kept
        chunked_embedding(ws, "e", ws.dataset_rows("d"), "pixels", chunk_rows=30)
    assert len(list((ws.root / ".partial").glob("e-*"))) == 2
    ws.save_dataset(ds.subset(np.arange(90)), "d")  # a new version: those parts are stale
    monkeypatch.setattr(extract_module, "_chunk_fn", real)
    out = chunked_embedding(ws, "e", ws.dataset_rows("d"), "pixels", chunk_rows=40)
    assert out.n == 90
    assert not list((ws.root / ".partial").glob("e-*"))
