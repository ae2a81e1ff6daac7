"""Where a command's document goes: standard output, or a file written atomically."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def write_or_print(text: str, out: Path | None) -> None:
    """`text` to stdout when `out` is None, else to `out` (atomically; said on stderr)."""
    if out is None:
        sys.stdout.write(text)
        return
    from sfteval.fileio import atomic_write_text

    atomic_write_text(out, text)
    typer.echo(f"wrote {out}", err=True)
