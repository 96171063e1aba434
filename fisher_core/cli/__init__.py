"""The ``fisherlab`` command line: datasets, training, embeddings, UMAP figures and evaluations
in the app's workspace, each command a few library calls (no maths here). ``main`` is the
console script's entry point, ``app`` the Typer application.
"""

from .app import app, main

__all__ = ["app", "main"]
