"""NpyRows / NpyWriter: chunked .npy I/O against NumPy's own reader and writer."""

from __future__ import annotations

import numpy as np
import pytest

from fisher_core.utils.io import NpyRows, NpyWriter


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int64])
def test_blocks_written_read_back_by_numpy_and_by_rows(tmp_path, dtype):
    a = (np.random.default_rng(0).random((101, 3, 5)) * 200).astype(dtype)
    path = tmp_path / "a.npy"
    with NpyWriter(path, a.shape, dtype) as w:
        for s in range(0, 101, 17):
            w.write(a[s:s + 17])
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), a)
    rows = NpyRows(path)
    assert (rows.shape, rows.dtype, len(rows)) == (a.shape, np.dtype(dtype), 101)
    np.testing.assert_array_equal(rows.read(40, 77), a[40:77])
    np.testing.assert_array_equal(rows.read(95, 500), a[95:])  # clipped at the end
    assert rows.read(200, 300).shape == (0, 3, 5)


def test_rows_of_files_numpy_wrote(tmp_path):
    a = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "v1.npy", a)  # NumPy's default: a version 1.0 header
    np.testing.assert_array_equal(NpyRows(tmp_path / "v1.npy").read(5, 9), a[5:9])
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    with pytest.raises(ValueError, match="must hold a C-ordered numeric array"):
        NpyRows(tmp_path / "f.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="must hold a C-ordered numeric array"):
        NpyRows(tmp_path / "o.npy")  # never unpickled
    truncated = tmp_path / "t.npy"
    truncated.write_bytes((tmp_path / "v1.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"t.npy is truncated \(rows 0:20 missing\)"):
        NpyRows(truncated).read(0, 20)


def test_writer_refuses_what_does_not_fit(tmp_path):
    path = tmp_path / "a.npy"
    w = NpyWriter(path, (4, 2), np.float32)
    with pytest.raises(ValueError, match=r"rows of shape \(2, 3\) do not fit"):
        w.write(np.zeros((2, 3)))
    w.write(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"do not fit the remaining 1 of \(4, 2\)"):
        w.write(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="only 3 of 4 rows were written"):
        w.close()
