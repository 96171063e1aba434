"""Workspace under several writers and readers: processes, threads, deletes, killed saves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from fisher_core.data import load_builtin
from fisher_core.workspace import EntryError, Workspace
from fisher_core.workspace import store as store_module

from .stress import REPO, leftovers, run


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="module")
def digits():
    return load_builtin("digits").subset(slice(0, 5))


def test_processes_saving_and_reading_the_same_names(tmp_path):
    """Two worker processes and this one save, read, list and delete for 3 s (defect 6)."""
    out = run(tmp_path / "ws", workers=2, seconds=3.0, seed=0)
    counts = out["counts"]
    assert out["examples"] == []
    assert counts["errors"] == 0 and counts["corrupt"] == 0
    assert counts["saves"] > 0 and counts["reads"] > 0
    assert out["leftovers"] == []


def test_reader_retries_when_a_save_replaces_the_version_it_reads(ws, digits, monkeypatch):
    """A save commits and cleans up between a reader's CURRENT and its payload (defect 6)."""
    ws.save_dataset(digits, "d")
    real = store_module.dataset_arrays
    calls = []

    def racing_load(entry, **kw):
        if not calls:  # the first read loses the race: the version it picked is removed
            ws.save_dataset(digits.subset(slice(0, 2)), "d")
        calls.append(entry.path)
        return real(entry, **kw)

    monkeypatch.setattr(store_module, "dataset_arrays", racing_load)
    assert len(ws.load_dataset("d")) == 2
    assert len(calls) == 2 and calls[0] != calls[1]


def test_genuinely_corrupt_entry_is_still_reported(ws, digits):
    ws.save_dataset(digits, "d")
    p = ws.entry("datasets", "d").path / "images.npy"
    p.write_bytes(b"garbage")
    with pytest.raises(EntryError, match="datasets/d is corrupt"):
        ws.load_dataset("d")


def test_delete_during_a_save_is_refused_clearly(ws, digits):
    """A delete while another writer fills its version must not pull it away (defect 6)."""
    ws.save_dataset(digits, "d")
    inside, release, errors = threading.Event(), threading.Event(), []

    def save():
        try:
            with ws.writer("datasets", "d", {"title": "x", "arrays": ["images"]}) as folder:
                (folder / "images.npy").write_bytes(
                    (ws.entry("datasets", "d").path / "images.npy").read_bytes())
                inside.set()
                release.wait(30)
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=save)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(EntryError, match="datasets/d is being written by another "
                                             "process or thread; try again"):
            ws.delete("datasets", "d")
    finally:
        release.set()
        t.join(30)
    assert errors == []
    assert len(ws.load_dataset("d")) == 5
    ws.delete("datasets", "d")  # once the save is over, the delete goes through
    assert not ws.exists("datasets", "d")
    assert leftovers(ws.root) == []


def test_killed_save_leaves_no_temporary_folder_after_the_next_open(ws, digits):
    """A writer killed mid-save leaves its temporary folder; the next open removes it."""
    ws.save_dataset(digits, "d")
    child = textwrap.dedent(f"""
        import time
        from fisher_core.workspace import Workspace
        ws = Workspace({str(ws.root)!r})
        with ws.writer("datasets", "d", {{}}) as folder:
            (folder / "arrays.safetensors").write_bytes(b"half" * 100_000)
            print("ready", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "ready"
        folder = ws.root / "datasets" / "d"
        assert [p for p in folder.iterdir() if p.name.startswith(".tmp-v-") and p.is_dir()]
        with pytest.raises(EntryError, match="is being written by another process"):
            ws.delete("datasets", "d")  # the child is alive: its save is in progress
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    Workspace(ws.root)  # the next open
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["CURRENT", ws.entry("datasets", "d").path.name])
    assert len(ws.load_dataset("d")) == 5


def test_old_unlocked_temporary_folders_are_removed_young_ones_kept(ws, digits):
    """A temporary folder without a writer lock (an older FisherLab) is reaped only when old."""
    ws.save_dataset(digits, "d")
    folder = ws.root / "datasets" / "d"
    old, young = folder / ".tmp-v-000000000000", folder / ".tmp-v-111111111111"
    for p in (old, young):
        p.mkdir()
        (p / "arrays.safetensors").write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    Workspace(ws.root)
    assert not old.exists() and young.exists()


def test_threads_saving_one_name_leave_one_version(ws, digits):
    """Threads of one process (the app's jobs) saving the same name at once."""
    errors = []

    def save(k):
        try:
            for i in range(10):
                ws.save_dataset(digits.subset(slice(0, 1 + (k + i) % 5)), "d")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert 1 <= len(ws.load_dataset("d")) <= 5
    assert leftovers(ws.root) == []
    assert np.isfinite(ws.load_dataset("d").images).all()


def test_open_removes_what_a_killed_commit_left(ws, digits):
    """A version renamed but never named by CURRENT, a half-written CURRENT, trash of a killed
    delete: all removed by the next open; the live version is untouched."""
    ws.save_dataset(digits, "d")
    folder = ws.root / "datasets" / "d"
    live = ws.entry("datasets", "d").path.name
    (folder / "v-0123456789ab").mkdir()
    (folder / ".CURRENT.abc.tmp").write_text("v-0123456789ab")
    (ws.root / "datasets" / ".trash-x-12345678").mkdir()
    Workspace(ws.root)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["CURRENT", live])
    assert not (ws.root / "datasets" / ".trash-x-12345678").exists()
    assert len(ws.load_dataset("d")) == 5


def test_workspace_written_without_locks_still_loads(tmp_path, digits):
    """An entry laid out by hand as older FisherLab versions wrote it (no lock files)."""
    ws = Workspace(tmp_path / "a")
    ws.save_dataset(digits, "d")
    old = tmp_path / "b" / "datasets" / "d"
    old.mkdir(parents=True)
    src = ws.entry("datasets", "d").path
    (old / "v-aaaaaaaaaaaa").mkdir()
    for f in src.iterdir():
        (old / "v-aaaaaaaaaaaa" / f.name).write_bytes(f.read_bytes())
    (old / "CURRENT").write_text("v-aaaaaaaaaaaa")
    back = Workspace(tmp_path / "b")
    assert back.names("datasets") == ["d"] and back.problems("datasets") == []
    np.testing.assert_array_equal(back.load_dataset("d").images, ws.load_dataset("d").images)
    back.save_dataset(digits.subset(slice(0, 2)), "d")
    assert len(back.load_dataset("d")) == 2
