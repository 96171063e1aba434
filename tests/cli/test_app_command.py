"""``fisherlab app``: runs what ``make app`` runs, on the CLI's workspace."""

from __future__ import annotations

import sys

import fisher_core.cli.cmd_app as cmd_app


class FakeProc:
    calls: list = []

    def __init__(self, cmd, cwd, env):
        FakeProc.calls.append((cmd, cwd, env))

    def wait(self, timeout=None):
        return 0


def test_runs_streamlit_from_the_repository_root(fresh, monkeypatch):
    monkeypatch.setattr(cmd_app.subprocess, "Popen", FakeProc)
    out = fresh.json("app", "--port", "8765")
    cmd, cwd, env = FakeProc.calls[-1]
    assert cmd == [sys.executable, "-m", "streamlit", "run", "app/main.py",
                   "--server.address", "127.0.0.1", "--server.port", "8765"]
    assert (cwd / "app" / "main.py").is_file() and (cwd / "fisher_core").is_dir()
    assert env["FISHERLAB_HOME"] == str(fresh.root)
    assert out == {"app": "stopped", "port": 8765, "workspace": str(fresh.root),
                   "exit_code": 0}


def test_without_the_app_one_line(fresh, monkeypatch, tmp_path):
    monkeypatch.setattr(cmd_app, "repo_root", lambda: tmp_path)
    assert fresh.error("app") == (
        f"Error: the app is not installed here ({tmp_path / 'app' / 'main.py'} is missing); run "
        "'fisherlab app' from a source checkout installed with 'pip install -e .'.")
