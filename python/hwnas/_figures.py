"""Writing matplotlib figures: the format follows the file name, and the file appears
whole or not at all."""

from __future__ import annotations

import os

from hwnas._io import atomic_write_file

#: Formats a figure may be written in, by file extension (what the Agg canvas writes).
FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_format(path: str | os.PathLike) -> str:
    """The format a figure written to ``path`` gets: its extension, or ``png`` without one.

    Called by command-line handlers before any work, so that ``--figure out.txt`` is
    refused at once rather than after the measurements it would plot.

    Raises:
        ValueError: An extension that is not one of :data:`FIGURE_FORMATS`.
    """
    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    if not ext:
        return "png"
    if ext not in FIGURE_FORMATS:
        raise ValueError(f"{os.fspath(path)}: a figure is written as {', '.join('.' + f for f in FIGURE_FORMATS)}, "
                         f"not .{ext}")
    return ext


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> str:
    """Writes ``fig`` to ``path`` atomically in the format its extension names, trimmed to
    what is drawn ("tight": long names and legends outside the axes stay whole).

    Returns:
        ``path`` as a string.
    """
    out = os.fspath(path)
    fmt = figure_format(out)
    atomic_write_file(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt, bbox_inches="tight"))
    return out
