"""One way to print for every command: rich on a terminal, plain wide text in CI logs."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

__all__ = ["make_console"]


def make_console(file: TextIO | None = None) -> Console:
    """A console that wraps for a terminal and stays one-line-per-fact when piped.

    Not a TTY (CI, ``| tee``, tests): no colour, no live widgets, 120 columns and no soft
    wrapping, so each printed line can be grepped as is.

    Example::

        console = make_console()
        console.print("[bold]served by[/] smart-primary")
    """
    out = file if file is not None else sys.stdout
    tty = out.isatty()
    return Console(
        file=out,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else 120,
        no_color=not tty,
        emoji=False,
    )
