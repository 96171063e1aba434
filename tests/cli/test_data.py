"""``fisherlab data``: built-in and imported datasets saved to the workspace, and listed."""

from __future__ import annotations

import re

import numpy as np

from fisher_core.data import load_builtin, load_file
from fisher_core.workspace import Workspace


def test_builtin_digits_is_saved_under_its_name(fresh):
    out = fresh.json("data", "builtin", "digits")
    assert out["saved"] == [{"kind": "datasets", "name": "digits"}]
    assert out["key"] == "workspace:digits" and out["n"] == 1797 and out["shape"] == [1, 8, 8]
    saved = Workspace(fresh.root).load_dataset("digits")
    ref = load_builtin("digits")
    np.testing.assert_allclose(saved.images, ref.images, atol=1 / 255)
    np.testing.assert_array_equal(saved.labels, ref.labels)


def test_saving_twice_needs_overwrite_and_digits_takes_no_options(fresh):
    fresh("data", "builtin", "digits")
    assert fresh.error("data", "builtin", "digits") == (
        "Error: datasets/digits already exists in the workspace; pass --overwrite to replace it "
        "or choose another --name.")
    fresh("data", "builtin", "digits", "--overwrite")
    assert fresh.error("data", "builtin", "digits", "--n", "5", "--name", "d5") == (
        "Error: digits is a fixed dataset (1,797 8×8 images): --n, --seed and --size apply to "
        "faces only.")


def test_builtin_faces_options_and_human_output(fresh):
    result = fresh("data", "builtin", "faces", "--n", "40", "--size", "16", "--seed", "3",
                   "--name", "f40", json_mode=False)
    assert result.stdout.startswith(f"Saved dataset f40 (40 images, 1×16×16, 16 classes) to "
                                    f"{fresh.root}.")
    ds = Workspace(fresh.root).load_dataset("f40")
    ref = load_builtin("faces", n=40, size=16, seed=3)
    np.testing.assert_allclose(ds.images, ref.images, atol=0.5 / 255)
    assert ds.attribute_names == ref.attribute_names


def test_import_and_a_corrupt_file_changes_nothing(ws, small_npz, tmp_path):
    ds = Workspace(ws.root).load_dataset("small")
    np.testing.assert_allclose(ds.images, load_file(small_npz).images, atol=1e-6)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip" * 8)
    line = ws.error("data", "import", bad, "--name", "small", "--overwrite")
    assert re.fullmatch(r"Error: bad\.npz is not a valid zip archive \(.*\); re-create it\.", line)
    np.testing.assert_array_equal(Workspace(ws.root).load_dataset("small").images, ds.images)
    assert ws.error("data", "import", tmp_path / "none.npz") == (
        f"Error: no file {tmp_path / 'none.npz'}; give the path of a dataset file.")


def test_import_resizes(fresh, small_npz):
    out = fresh.json("data", "import", small_npz, "--size", "12", "--name", "s12")
    assert out["shape"] == [1, 12, 12] and out["n"] == 300 and out["classes"] == 10


def test_list(ws):
    out = ws.json("data", "list")
    rows = {r["name"]: r for r in out["datasets"]}
    assert rows["small"]["models"] == ["pc"] and rows["small"]["n"] == 300
    assert {"small-pixels", "scores"} <= set(rows["small"]["embeddings"])
    assert rows["faces"]["attributes"] == ["smiling", "eyeglasses", "eyes_open", "hat"]
    human = ws("data", "list", json_mode=False).stdout
    assert human.startswith(f"{len(rows)} dataset(s) in {ws.root}.") and "small" in human


def test_workspace_and_name_errors(fresh, tmp_path):
    assert fresh.error("data", "list") == (
        f"Error: no workspace at {fresh.root}; add a dataset first (fisherlab --workspace "
        f"{fresh.root} data builtin digits) or check the path.")
    assert not fresh.root.exists()  # a read never creates it
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert fresh.error("data", "list", root=afile) == (
        f"Error: workspace {afile} is a file, not a folder; pass --workspace PATH of a folder.")
    assert fresh.error("data", "builtin", "digits", "--name", "bad name") == (
        "Error: invalid name 'bad name': use 1-80 letters, digits, '_', '-' or '.', starting "
        "with a letter or digit.")


def test_usage_errors_are_one_line(fresh):
    assert fresh.error("data", "frob", code=2) == (
        "Error: No such command 'frob'. See 'fisherlab data --help'.")
    line = fresh.error("data", "builtin", "mnist", code=2)
    assert re.fullmatch(r"Error: Invalid value for '(DATASET|dataset)[^']*'.*'mnist'.*"
                        r"See 'fisherlab data builtin --help'\.", line)
