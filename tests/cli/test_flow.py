"""The whole flow on digits through the installed console script, one process per command,
as a user runs it: dataset → model → two embeddings → linear probes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fisher_core.workspace import Workspace, list_models


def _fisherlab() -> list[str]:
    script = Path(sys.executable).parent / "fisherlab"  # made by `pip install -e .`
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fisher_core.cli"]


def test_whole_flow_in_subprocesses(tmp_path):
    root = tmp_path / "ws"
    env = {**os.environ, "FISHERLAB_HOME": str(tmp_path / "unused"), "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> dict:
        proc = subprocess.run([*_fisherlab(), "--workspace", str(root), "--json", *args],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout.count("\n") == 1, proc.stdout  # one JSON object, nothing else
        return json.loads(proc.stdout)

    data = run("data", "builtin", "digits")
    assert data["saved"] == [{"kind": "datasets", "name": "digits"}] and data["n"] == 1797
    model = run("train", "pixelcnn", "--dataset", "digits", "--epochs", "1", "--batch-size",
                "256", "--set", "hidden=4", "--set", "n_blocks=2", "--set", "head_hidden=8")
    assert model["model"] == "digits-pixelcnn" and model["metrics"]["epochs"] == 1
    fv = run("embed", "fisher-vector", "--dataset", "digits", "-k", "4")
    scores = run("embed", "fisher-scores", "--dataset", "digits", "--model", "digits-pixelcnn",
                 "--dim", "32")
    assert scores["shape"] == [1797, 32] and scores["model"] == "digits-pixelcnn"
    probe = run("eval", "probe", fv["embedding"], scores["embedding"], "--folds", "2")
    acc = {r["embedding"]: r["accuracy"] for r in probe["probes"]}
    assert list(acc) == ["raw pixels", fv["embedding"], scores["embedding"]]
    assert acc["raw pixels"] > 0.9 and all(0.1 < a <= 1.0 for a in acc.values())

    w = Workspace(root)  # all of it where the app looks for it
    assert [e.name for e in list_models(w, "workspace:digits")] == ["digits-pixelcnn"]
    assert set(w.names("embeddings")) == {fv["embedding"], scores["embedding"]}
    assert not (tmp_path / "unused").exists()
