"""Architecture figure in the style of the FBNet paper's Figure 4.

One box per searchable layer, left to right: colour gives the kernel size,
height gives the expansion ratio (e1 short, e6 tall), ``skip`` is an empty
dashed box (marked ``1x1`` where the layer changes shape and the skip is a 1x1
convolution projection), ``_g2`` blocks are hatched and squeeze-and-excitation
blocks get a dot. Vertical lines separate stages. Long architectures wrap into
rows. Drawn with matplotlib's Agg canvas (no display needed, the global backend
is not touched) and saved atomically.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Union

from hwnas._figures import save_figure
from .architecture import Architecture
from .base import SearchSpace
from .blocks import parse_block_name

__all__ = ["draw_architecture", "architecture_figure", "KERNEL_COLOURS", "MAX_LAYERS_PER_ROW"]

#: Fill colour per kernel size (other kernels are grey).
KERNEL_COLOURS = {3: "#4C72B0", 5: "#DD8452", 7: "#55A868"}
_OTHER_COLOUR = "#999999"
#: Architectures longer than this wrap into rows (a single row becomes too wide to read).
MAX_LAYERS_PER_ROW = 30
_MAX_EXPANSION = 6.0

# Layout, in inches: the figure is sized from what it holds instead of a fixed size
# that cut long labels off.
_LAYER_WIDTH = 0.42
_BOX_UNIT = 1.1  # height of an e6 box
_CHANNEL_LABEL = 0.3  # room above the tallest box for the "16/s2" labels and the SE dot
_CHAR = 6 * 0.62 / 72  # width of one 6 pt character of a (rotated) block name
_ROW_GAP = 0.25
_SIDE = 0.3


def _box_height(expansion: Optional[int]) -> float:
    # Height proportional to the expansion ratio; blocks without one (SEP, Choice) get e=2's height.
    e = 2 if expansion is None else expansion
    return max(e, 1) / _MAX_EXPANSION


def _rows(n: int, per_row: int) -> list[tuple[int, int]]:
    """``(start, end)`` layer ranges of balanced rows of at most ``per_row`` layers."""
    if n == 0:
        return [(0, 0)]
    count = math.ceil(n / per_row)
    size = math.ceil(n / count)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def architecture_figure(
    arch: Union[Architecture, tuple[SearchSpace, Architecture]],
    space: SearchSpace | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    max_per_row: int = MAX_LAYERS_PER_ROW,
):
    """The figure of :func:`draw_architecture`, not saved (same arguments, no path).

    Returns:
        A :class:`matplotlib.figure.Figure`, one axes per row of layers.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    if isinstance(arch, tuple):
        space, arch = arch
    if not isinstance(arch, Architecture):
        raise ValueError(f"expected an Architecture or (space, Architecture), got {type(arch).__name__}")
    if not (isinstance(max_per_row, int) and max_per_row >= 1):
        raise ValueError(f"max_per_row must be a positive integer, got {max_per_row!r}")
    layers = space.resolve_layers(arch) if space is not None else None
    specs = [parse_block_name(name) for name in arch.choices]
    n = len(arch.choices)

    rows = _rows(n, max_per_row)
    per_row = max(end - start for start, end in rows) if n else 1
    # Room under the boxes for the longest rotated name, so that none is cut off.
    label_depth = 0.1 + _CHAR * max((len(name) for name in arch.choices), default=1)
    row_height = _CHANNEL_LABEL + _BOX_UNIT + label_depth
    title_height, key_height = 0.55, 0.55
    width = max(6.0, _LAYER_WIDTH * per_row + 2 * _SIDE)
    height = title_height + len(rows) * row_height + (len(rows) - 1) * _ROW_GAP + key_height
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)

    stage_starts = set()
    start = 0
    for length in (arch.stage_lengths or [n])[:-1]:
        start += length
        stage_starts.add(start)

    used: dict[str, Any] = {}  # legend entries actually needed, in drawing order
    for r, (first, last) in enumerate(rows):
        top = height - title_height - r * (row_height + _ROW_GAP)
        # Axes in data units: x = layer index, y = box height (1 = e6); sized in inches so
        # that a data unit of y is _BOX_UNIT inches whatever the row count.
        rect = (_SIDE / width, (top - row_height) / height, _LAYER_WIDTH * per_row / width, row_height / height)
        ax = fig.add_axes(rect)
        ax.set_xlim(first, first + per_row)
        ax.set_ylim(-label_depth / _BOX_UNIT, (_BOX_UNIT + _CHANNEL_LABEL) / _BOX_UNIT)
        ax.axis("off")
        for i in range(first, last):
            spec, name = specs[i], arch.choices[i]
            if spec.is_skip:
                projection = layers is not None and (layers[i].stride != 1 or layers[i].c_in != layers[i].c_out)
                ax.add_patch(Rectangle((i + 0.1, 0), 0.8, _box_height(1), fill=False, linestyle="--",
                                       edgecolor="black", linewidth=1.0))
                if projection:
                    # Not an empty layer: a 1x1 conv + BN that changes the shape (see primitives.Skip).
                    ax.text(i + 0.5, _box_height(1) / 2, "1x1", ha="center", va="center", fontsize=5.5)
                    used["skip_projection"] = Patch(fill=False, linestyle="--", edgecolor="black",
                                                    label="skip with 1x1 conv projection (marked 1x1)")
                else:
                    used["skip"] = Patch(fill=False, linestyle="--", edgecolor="black",
                                         label="skip" if layers is None else "skip (identity)")
            else:
                colour = KERNEL_COLOURS.get(spec.kernel, _OTHER_COLOUR)
                hatch = "///" if spec.groups > 1 else None
                ax.add_patch(Rectangle((i + 0.1, 0), 0.8, _box_height(spec.expansion), facecolor=colour,
                                       edgecolor="black", linewidth=0.8, hatch=hatch))
                kernel_key = f"k{spec.kernel}" if spec.kernel in KERNEL_COLOURS else "other"
                if kernel_key not in used:
                    used[kernel_key] = Patch(facecolor=colour, edgecolor="black",
                                             label=f"k={spec.kernel}" if spec.kernel in KERNEL_COLOURS else
                                             "other kernel / block")
                if hatch:
                    used[f"g{spec.groups}"] = Patch(facecolor="white", edgecolor="black", hatch=hatch,
                                                    label=f"groups={spec.groups}")
                if spec.se:
                    ax.plot([i + 0.5], [_box_height(spec.expansion) + 0.06], marker="o", markersize=3, color="black")
                    used["se"] = Line2D([], [], marker="o", markersize=3, color="black", linestyle="none",
                                        label="squeeze-and-excitation")
            ax.text(i + 0.5, -0.06, name, rotation=90, ha="center", va="top", fontsize=6)
            if layers is not None and (i == 0 or layers[i].stride != 1 or layers[i].c_out != layers[i - 1].c_out):
                ax.text(i + 0.5, 1.1, f"{layers[i].c_out}" + ("/s2" if layers[i].stride == 2 else ""),
                        ha="center", fontsize=6)
        for boundary in sorted(stage_starts):
            if first < boundary < last or (boundary == first and r > 0):
                # Only as tall as the boxes and their channel labels, not through the names below.
                ax.plot([boundary, boundary], [-0.02, 1.25], color="grey", linewidth=0.6, linestyle=":")
    default = f"{arch.space}  {arch.resolution}x{arch.resolution}  width {arch.width:g}"
    text = title or default
    if subtitle:
        text = f"{text}\n{subtitle}"
    fig.suptitle(text, fontsize=9, y=(height - 0.08) / height, va="top")

    order = ["k3", "k5", "k7", "other", "skip", "skip_projection"]
    handles = [used[k] for k in order if k in used] + [used[k] for k in sorted(used) if k.startswith("g")]
    handles += [used["se"]] if "se" in used else []
    # Below all rows, outside every axes, so that no stage line runs through it.
    legend_y = (key_height - 0.05) / height
    if handles:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, legend_y), fontsize=6,
                   ncol=len(handles), frameon=False, handlelength=1.8, columnspacing=1.2)
    key = "box height: expansion (e1..e6)"
    if layers is not None:
        key = "numbers: output channels, /s2: stride 2;  " + key
    fig.text(0.5, 0.06 / height, key, ha="center", va="bottom", fontsize=6)
    return fig


def draw_architecture(
    arch: Union[Architecture, tuple[SearchSpace, Architecture]],
    path: str | os.PathLike,
    space: SearchSpace | None = None,
    title: str | None = None,
    dpi: int = 150,
    subtitle: str | None = None,
    max_per_row: int = MAX_LAYERS_PER_ROW,
) -> str:
    """Draws ``arch`` and saves it (PNG, SVG or PDF, by the file's extension).

    Args:
        arch: An :class:`Architecture`, or a ``(space, arch)`` pair.
        path: Output file: ``.png``, ``.svg`` or ``.pdf`` by its extension (no extension:
            PNG); folders are created.
        space: The space, for channel/stride labels and to tell a projection skip (a
            1x1 conv where the layer changes shape) from an identity (optional).
        title: Figure title, replacing the default (space name, resolution, width).
        dpi: Resolution of a PNG (dots per inch).
        subtitle: A second title line under the title (e.g. what the architecture was
            searched for), keeping the default title's facts.
        max_per_row: Layers per row before the figure wraps into more rows.

    Returns:
        The path written.
    """
    fig = architecture_figure(arch, space, title, subtitle, max_per_row)
    # "tight" keeps everything drawn (long names, legend) and trims the margins.
    return save_figure(fig, path, dpi)
