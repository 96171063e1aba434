"""Shared fixtures: the CLI run in-process through Typer's CliRunner, and a small workspace
(300 digits, a tiny PixelCNN, a few embeddings; 120 faces of 16×16) built once through it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fisher_core.cli import app
from fisher_core.data import load_builtin

TINY = ["--set", "hidden=4", "--set", "n_blocks=2", "--set", "head_hidden=8"]


class Cli:
    """Runs ``fisherlab [--workspace ROOT] [--json] ARGS`` in this process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.runner = CliRunner(mix_stderr=False)  # click < 8.2: stderr kept apart
        except TypeError:
            self.runner = CliRunner()  # click ≥ 8.2 and Typer's own: always apart

    def __call__(self, *args: object, json_mode: bool = True, root: Path | None = None,
                 code: int = 0):
        argv = ["--workspace", str(root or self.root)] + (["--json"] if json_mode else [])
        result = self.runner.invoke(app, argv + [str(a) for a in args], prog_name="fisherlab")
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr,
                                          result.exception)
        return result

    def json(self, *args: object) -> dict:
        """The one JSON object a successful command prints."""
        out = self(*args).stdout
        assert out.count("\n") == 1, out  # exactly one line: one object
        return json.loads(out)

    def error(self, *args: object, code: int = 1, root: Path | None = None) -> str:
        """The one error line a failing command prints (stdout stays empty)."""
        result = self(*args, code=code, root=root)
        assert result.stdout == ""
        errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1, result.stderr
        assert "Traceback" not in result.stderr
        return errors[0]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread while these tests run: tiny models on a shared 2-core machine are
    several times slower when two threads contend with other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory) -> Path:
    """300 digits as an .npz file (uint8 images 0..255, labels)."""
    d = load_builtin("digits")
    path = tmp_path_factory.mktemp("files") / "small.npz"
    np.savez(path, images=np.round(d.images[:300, 0] * 255).astype(np.uint8),
             labels=d.labels[:300])
    return path


@pytest.fixture(scope="session")
def ws(tmp_path_factory, small_npz) -> Cli:
    """A workspace with dataset ``small`` (300 digits), model ``pc`` (a tiny PixelCNN),
    embeddings ``small-pixels`` and ``scores`` (Fisher scores, 16 dims), and dataset
    ``faces`` (120 faces, 16×16) with embedding ``faces-pixels``. Tests add, never replace."""
    cli = Cli(tmp_path_factory.mktemp("ws") / "home")
    cli("data", "import", small_npz)
    cli("train", "pixelcnn", "--dataset", "small", "--epochs", "1", "--name", "pc", *TINY)
    cli("embed", "pixels", "--dataset", "small")
    cli("embed", "fisher-scores", "-d", "small", "-m", "pc", "--dim", "16", "--name", "scores")
    cli("data", "builtin", "faces", "--n", "120", "--size", "16")
    cli("embed", "pixels", "--dataset", "faces")
    return cli


@pytest.fixture
def fresh(tmp_path) -> Cli:
    """A CLI on a workspace folder that does not exist yet."""
    return Cli(tmp_path / "home")
