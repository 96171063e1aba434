"""Every notebook in notebooks/ runs top to bottom at smoke size, in this environment's kernel.

Each jupytext percent file is read with ``jupytext.read`` and executed with nbclient in a
fresh ``python3`` kernel (the kernel spec of this virtual environment: checked below), with
``FISHERLAB_SMOKE=1`` and ``FISHERLAB_HOME`` pointing to a temporary folder, from a temporary
working directory. A failing cell fails the test (``CellExecutionError``). Then:

- some cell must have produced a plotly figure (``application/vnd.plotly.v1+json``);
- the notebook's last code cell prints a JSON dict of the numbers it measured, and the checks
  in ``CHECKS`` assert properties of them that hold at smoke size (agreement with
  scikit-image, probes above chance, finite FIDs, ...).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
PLOTLY = "application/vnd.plotly.v1+json"
CELL_TIMEOUT = 300  # seconds per cell; a whole notebook takes well under a minute at smoke size
# Appended to every notebook: which Python runs the kernel.
PROBE_CELL = "import json as _j, sys as _s\nprint(_j.dumps({'prefix': _s.prefix}))"

pytestmark = pytest.mark.timeout(900)


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _cell_seconds(cell) -> float:
    """Execution time nbclient recorded for a cell (NaN when it did not record it)."""
    ex = cell.get("metadata", {}).get("execution", {})
    try:
        start, end = (datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
    except (KeyError, ValueError):
        return math.nan
    return (end - start).total_seconds()


def _has_plotly(nb) -> bool:
    return any(PLOTLY in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def _above_chance(accuracies: dict[str, float], chance: float, margin: float) -> None:
    low = {k: v for k, v in accuracies.items() if not v > chance + margin}
    assert not low, f"probe accuracies not above chance {chance:.2f} + {margin}: {low}"


def _check_classical(s: dict) -> None:
    assert s["max_abs_diff_formulas"] < 1e-10
    assert s["max_abs_diff_skimage"] < 1e-10  # float64, σ block negated
    assert s["max_abs_diff_skimage_improved"] < 1e-6  # √ near 0 amplifies rounding
    # float32 arithmetic loses digits where a component's σ sits at the reg_covar floor
    assert s["max_abs_diff_skimage_float32"] < 0.05
    assert s["fv_dim"] == s["n_components"] * (1 + 2 * 11)  # 3×3 patch + (x, y)
    _above_chance(s["probe_accuracy"], s["chance"], 0.3)
    assert s["probe_fisher_vector_embedding"] > s["chance"] + 0.3
    assert s["ablation_best"]["accuracy"] >= max(
        v for k, v in s["probe_accuracy"].items() if k.startswith("FV")) - 0.1


def _check_pixelcnn(s: dict) -> None:
    assert set(s["fid_midpoint"]) == set(s["spaces"])
    for space, curve in s["fid"].items():
        assert len(curve) == len(s["alphas"]) and all(math.isfinite(f) and f >= 0
                                                       for f in curve), space
    assert s["fisher_dim"] == s["projection_dim"]
    assert s["kernel_correlation_exact_vs_projected"] > 0.9  # Johnson–Lindenstrauss
    assert all(math.isfinite(v) for v in s["decoder_val_mse"].values())
    assert 0.0 <= s["edit_success"] <= 1.0
    assert s["bits_per_dim"] > 0


def _check_fvvae(s: dict) -> None:
    assert s["max_abs_diff_fv_layer"] < 1e-4  # FV layer == fc.fisher_vector on its GMM
    assert s["fvvae_dim"] == s["n_components"] * (1 + 2 * (s["latent_dim"] + 2))
    assert s["fv_gmm"] == "descriptors" and s["final_em"]  # the defaults are what it shows
    _above_chance(s["probe_accuracy"], s["chance"], 0.03)  # one epoch of FV-VAE: barely
    assert s["probe_accuracy"]["GMM Fisher vectors"] > s["chance"] + 0.3
    assert s["probe_accuracy"]["FV-VAE"] > s["chance"] + 0.1  # descriptor GMM, EM refit


def _check_afv(s: dict) -> None:
    assert s["afv_dim"] == s["discriminator_parameters"]  # exact AFV: one entry per D weight
    _above_chance(s["probe_accuracy"], s["chance"], 0.05)
    assert s["probe_accuracy"]["AFV (exact)"] > s["probe_accuracy"]["D-pool"]  # the paper
    assert s["class_distances_symmetric"] and s["class_distance_diagonal_zero"]
    assert s["monitor_evaluations"] >= 1 and math.isfinite(s["monitor_best_heldout_fd"])


def _check_tour(s: dict) -> None:
    assert s["n_loaded"] == s["n_written"]
    assert s["labels_match"] and s["attributes_match"] and s["npz_matches"]
    assert s["images_max_diff"] < 1e-6  # 8-bit PNGs of 8-bit values round-trip exactly
    _above_chance(s["probe_accuracy"], s["chance"], 0.1)


def _check_scale(s: dict) -> None:
    assert s["import_equal"] and s["stored_dtype"] == "uint8"
    assert s["resumed_from"].startswith("resuming: 3 of ")  # the interrupted run's parts
    assert s["fv_max_diff_in_memory"] < 1e-5
    assert s["dask_max_diff_single_process"] < 1e-4
    assert s["dask_progress_reports"] >= 3


CHECKS: dict[str, Callable[[dict], None]] = {
    "01_classical_fisher_vectors": _check_classical,
    "02_pixelcnn_fisher_scores": _check_pixelcnn,
    "03_fv_vae": _check_fvvae,
    "04_adversarial_fisher_vectors": _check_afv,
    "05_tour": _check_tour,
    "06_scale": _check_scale,
}


def test_every_notebook_has_checks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
    assert {p.stem for p in NOTEBOOKS} == set(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_size(path: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FISHERLAB_SMOKE", "1")
    monkeypatch.setenv("FISHERLAB_HOME", str(tmp_path / "home"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebooks' own temp files
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")  # this environment's kernel spec first
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 3 and any(c.cell_type == "markdown" for c in nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_CELL))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    start = time.perf_counter()
    client.execute()  # CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    cells = sorted(((_cell_seconds(c), c.source.splitlines()[0][:50]) for c in nb.cells
                    if c.cell_type == "code" and c.source), reverse=True)
    print(f"{path.name}: executed in {seconds:.1f} s (kernel start included); slowest cells: "
          + "; ".join(f"{t:.1f} s {src!r}" for t, src in cells[:3]))

    kernel = json.loads(_stdout(nb.cells[-1]))
    assert Path(kernel["prefix"]).resolve() == Path(sys.prefix).resolve(), (
        "the python3 kernel does not run in this environment; install ipykernel here")
    assert _has_plotly(nb), f"{path.name} produced no plotly figure"
    last = [c for c in nb.cells[:-1] if c.cell_type == "code"][-1]
    summary = json.loads(_stdout(last))
    CHECKS[path.stem](summary)
    assert (tmp_path / "home").is_dir(), "the notebook ignored FISHERLAB_HOME"
