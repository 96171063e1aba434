"""The ``fisherlab`` Typer application: global options, the command tree, and errors turned
into one line and an exit status (never a traceback)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..utils import __version__
from . import cmd_app, cmd_data, cmd_embed, cmd_eval, cmd_train, cmd_umap
from .common import Session, debug, describe_error

__all__ = ["app", "main"]


# Recent Typer vendors click (typer._click), older Typer uses click itself: the classes are
# taken from Typer's public names, never from the click package.
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_PASS = (typer.Exit, typer.Abort, _CLICK_ERROR)


def _error(line: str) -> None:
    typer.echo(f"Error: {line}", err=True)


class FisherGroup(TyperGroup):
    """The root command group: every error ends as one ``Error: ...`` line on stderr."""

    ORDER = ("data", "train", "gmm-sweep", "embed", "umap", "eval", "app")

    def list_commands(self, ctx: typer.Context) -> list[str]:
        """The commands in the order of the workflow."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: self.ORDER.index(n) if n in self.ORDER else 99)

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the command; library errors and Ctrl-C become one line and an exit status."""
        try:
            return super().invoke(ctx)
        except (*_PASS, BrokenPipeError):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            if debug() and not isinstance(exc, KeyboardInterrupt):
                raise
            line, code = describe_error(exc)
            _error(line)
            raise typer.Exit(code) from None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """As click's, with usage errors printed as one line that points to ``--help``."""
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _CLICK_ERROR as exc:
            message = exc.format_message().strip()
            if message:  # no message: a group called without a command, its help shown
                where = exc.ctx.command_path if getattr(exc, "ctx", None) else "fisherlab"
                _error(f"{message} See '{where} --help'.")
            code = exc.exit_code
        except BrokenPipeError:  # `fisherlab ... | head`: stop quietly, as click does
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 1
        except typer.Abort:
            _error("aborted.")
            code = 1
        else:
            code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=FisherGroup,
    name="fisherlab",
    help="FisherLab from the command line: datasets, models, embeddings, UMAP figures and "
         "evaluations, saved in the same workspace as the app.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fisherlab {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", help="Workspace folder (default: $FISHERLAB_HOME or "
        "~/.fisherlab, the app's).", show_default=False)] = None,
    json_mode: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout instead of a summary and a table.")
    ] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """FisherLab from the command line. Progress and errors go to stderr."""
    ctx.obj = Session(json_mode=json_mode) if workspace is None else Session(
        workspace.expanduser(), json_mode, explicit=True)


cmd_data.register(app)
cmd_train.register(app)
cmd_embed.register(app)
cmd_umap.register(app)
cmd_eval.register(app)
cmd_app.register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``fisherlab`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name; defaults to ``sys.argv[1:]``.
    """
    app(args=list(argv) if argv is not None else None, prog_name="fisherlab")
