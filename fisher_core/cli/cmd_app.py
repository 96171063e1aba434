"""``fisherlab app``: launch the Streamlit app (what ``make app`` runs) on this workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import CliError, session

__all__ = ["app_command", "register", "repo_root"]


def repo_root() -> Path:
    """The folder holding the ``fisher_core`` package (a source checkout's root)."""
    return Path(__file__).resolve().parents[2]


def app_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that starts the app (run from :func:`repo_root`)."""
    return [sys.executable, "-m", "streamlit", "run", "app/main.py",
            "--server.address", host, "--server.port", str(port)]


def app(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8501,
) -> None:
    """Run the FisherLab app on http://127.0.0.1:PORT with this workspace (Ctrl-C stops it)."""
    sess = session(ctx)
    root = repo_root()
    if not (root / "app" / "main.py").is_file():
        raise CliError(f"the app is not installed here ({root / 'app' / 'main.py'} is missing); "
                       "run 'fisherlab app' from a source checkout installed with "
                       "'pip install -e .'.")
    env = {**os.environ, "FISHERLAB_HOME": str(sess.root)}
    sess.ui.log(f"FisherLab app on http://127.0.0.1:{port} (workspace {sess.root}); "
                "Ctrl-C stops it.")
    proc = subprocess.Popen(app_command(port), cwd=root, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the app got the same Ctrl-C: let it shut down cleanly
        try:
            proc.wait(timeout=15)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.terminate()
            proc.wait()
        code = 130
    if code not in (0, 130, -2):
        raise CliError(f"the app exited with status {code}.", code if code > 0 else 1)
    sess.ui.result({"app": "stopped", "port": port, "workspace": str(sess.root),
                    "exit_code": code}, "The app has stopped.")


def register(app_: typer.Typer) -> None:
    """Add ``app`` to ``app_``."""
    app_.command("app")(app)
