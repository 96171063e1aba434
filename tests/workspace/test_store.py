"""Workspace: round trips, atomic writes under a killed writer, corrupt entries skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.embeddings import Embedding
from fisher_core.workspace import EntryError, Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def test_dataset_roundtrip_is_exact(ws):
    ds = load_builtin("faces", n=50)
    ws.save_dataset(ds, "faces-50")
    back = ws.load_dataset("faces-50")
    np.testing.assert_array_equal(back.labels, ds.labels)
    np.testing.assert_array_equal(back.attributes, ds.attributes)
    np.testing.assert_allclose(back.images, ds.images, atol=0)  # float32 kept when lossy
    q = ds.quantize(4)
    ws.save_dataset(q, "faces-q")
    back = ws.load_dataset("faces-q")
    assert back.levels == 4
    np.testing.assert_allclose(back.images, q.images, atol=0)
    assert back.attribute_names == ds.attribute_names


def test_uint8_when_lossless_is_decided_and_written_a_block_at_a_time(ws):
    from fisher_core.data import ImageDataset

    rng = np.random.default_rng(0)
    # 48 KiB per image: 200 images are eight blocks (an eighth of the bytes each)
    q = rng.integers(0, 256, size=(200, 3, 64, 64)).astype(np.float32) / 255.0
    entry = ws.save_dataset(ImageDataset(q.copy()), "eight-bit")
    stored = np.load(entry.path / "images.npy", allow_pickle=False)
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, np.round(q.astype(np.float64) * 255).astype(np.uint8))
    np.testing.assert_array_equal(ws.load_dataset("eight-bit").images, q)
    off = q.copy()
    off[-1, 2, 63, 63] = 0.5  # one value, in the last block, is not k/255
    entry = ws.save_dataset(ImageDataset(off), "not-eight-bit")
    stored = np.load(entry.path / "images.npy", allow_pickle=False)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, off)


def test_embedding_and_result_roundtrip(ws):
    emb = Embedding(np.arange(12, dtype=np.float32).reshape(4, 3), "faces", "pixels",
                    params={"k": 3})
    ws.save_embedding(emb, "e1")
    back = ws.load_embedding("e1")
    np.testing.assert_array_equal(back.vectors, emb.vectors)
    assert back.metadata() == emb.metadata()
    ws.save_result("r1", {"acc": [0.5, 0.7]}, {"curve": np.linspace(0, 1, 5)})
    data, arrays = ws.load_result("r1")
    assert data == {"acc": [0.5, 0.7]}
    np.testing.assert_array_equal(arrays["curve"], np.linspace(0, 1, 5))


def test_list_newest_first_overwrite_and_delete(ws):
    ds = load_builtin("digits").subset(slice(0, 10))
    ws.save_dataset(ds, "a")
    ws.save_dataset(ds, "b")
    assert ws.names("datasets") == ["b", "a"]
    ws.save_dataset(ds.subset(slice(0, 3)), "a")
    assert len(ws.load_dataset("a")) == 3
    assert len([p for p in (ws.root / "datasets" / "a").iterdir() if p.is_dir()]) == 1
    ws.delete("datasets", "a")
    assert ws.names("datasets") == ["b"]
    with pytest.raises(EntryError, match="no dataset named 'a'"):
        ws.load_dataset("a")


def test_failed_writer_leaves_old_entry(ws):
    ds = load_builtin("digits").subset(slice(0, 5))
    ws.save_dataset(ds, "d")
    with pytest.raises(RuntimeError, match="boom"), ws.writer("datasets", "d", {}) as folder:
        (folder / "arrays.safetensors").write_bytes(b"partial")
        raise RuntimeError("boom")
    assert len(ws.load_dataset("d")) == 5


def test_killed_writer_leaves_old_entry(ws, tmp_path):
    ds = load_builtin("digits").subset(slice(0, 5))
    ws.save_dataset(ds, "d")
    child = textwrap.dedent(f"""
        import sys, time
        from fisher_core.workspace import Workspace
        ws = Workspace({str(ws.root)!r})
        with ws.writer("datasets", "d", {{}}) as folder:
            (folder / "arrays.safetensors").write_bytes(b"half")
            print("ready", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(ws.load_dataset("d")) == 5  # the old version is live
    assert ws.problems("datasets") == []
    ws.save_dataset(ds.subset(slice(0, 2)), "d")  # and the next save still works
    assert len(ws.load_dataset("d")) == 2


def test_corrupt_entries_reported_and_skipped(ws):
    ds = load_builtin("digits").subset(slice(0, 5))
    for name in ("good", "bad-meta", "bad-current", "bad-payload"):
        ws.save_dataset(ds, name)
    e = ws.entry("datasets", "bad-meta")
    (e.path / "meta.json").write_text("{not json")
    (ws.root / "datasets" / "bad-current" / "CURRENT").write_text("v-missing")
    p = ws.entry("datasets", "bad-payload").path / "images.npy"
    p.write_bytes(p.read_bytes()[:50])
    (ws.root / "datasets" / "stray-folder").mkdir()
    assert sorted(ws.names("datasets")) == ["bad-payload", "good"]
    problems = dict(ws.problems("datasets"))
    assert "meta.json" in problems["bad-meta"]
    assert "missing" in problems["bad-current"]
    assert "no dataset named" in problems["stray-folder"]
    with pytest.raises(EntryError, match="datasets/bad-payload is corrupt"):
        ws.load_dataset("bad-payload")
    assert len(ws.load_dataset("good")) == 5


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b", "x" * 81])
def test_bad_names_rejected(ws, name):
    with pytest.raises(EntryError, match="invalid name"):
        ws.save_dataset(load_builtin("digits").subset(slice(0, 2)), name)


def test_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "home"))
    assert Workspace().root == tmp_path / "home"


def test_embeddings_open_memory_mapped_and_old_files_still_load(tmp_path):
    """Issue 20: a 100k-row embedding opens without reading it whole (copy-on-write memory
    map: writing to the array never touches the file); entries saved as safetensors before
    still load."""
    import mmap

    from fisher_core.embeddings import Embedding
    from fisher_core.utils.io import save_arrays

    ws = Workspace(tmp_path)
    rows = np.random.default_rng(0).normal(size=(100_000, 16)).astype(np.float32)
    ws.save_embedding(Embedding(rows, "d", "fisher"), "big")
    emb = ws.load_embedding("big")
    owner = emb.vectors
    while not isinstance(owner, mmap.mmap) and owner.base is not None:
        owner = owner.base
    assert isinstance(owner, mmap.mmap)  # backed by the file, not a copy in memory
    np.testing.assert_array_equal(emb.vectors, rows)
    emb.vectors[0] = 7.0  # private to this process
    np.testing.assert_array_equal(ws.load_embedding("big").vectors[0], rows[0])
    # an entry written by an earlier version (safetensors) loads unchanged
    ws.save_embedding(Embedding(rows[:5], "d", "fisher"), "old")
    folder = ws.entry("embeddings", "old").path
    (folder / "vectors.npy").unlink()
    save_arrays(folder / "vectors.safetensors", {"vectors": rows[:5]})
    np.testing.assert_array_equal(ws.load_embedding("old").vectors, rows[:5])
