"""Atomic file writes: an interrupted writer leaves the old file and no temporary behind."""

from __future__ import annotations

import pytest

from fisher_core.utils import atomic_write, atomic_write_bytes


def test_killed_atomic_write_bytes_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def writer(fh):
        fh.write(b"new-partial")
        raise KeyboardInterrupt  # the process is interrupted mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, writer)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
