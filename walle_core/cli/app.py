"""Entry point of the ``walle`` console script.

Each area of the core contributes its commands through a ``register(app)`` function in its own
module; plugins add theirs through the ``walle_register_commands`` hook. Nothing heavy is imported
here: command bodies import what they need.
"""

from __future__ import annotations

import typer

from walle_core import __version__
from walle_core.cli import bench, engine, plugins, stream

app = typer.Typer(
    name="walle",
    help="Walle: write an ML task once, release it to devices, run it beside the data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"walle {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Walle command line."""


plugins.register(app)
engine.register(app)
stream.register(app)
bench.register(app)


def main() -> None:
    """Console-script entry: add plugin commands, then run."""
    from walle_core.plugin.manager import get_hooks

    get_hooks().register_commands(app)
    app()
