"""Architecture figure in the style of the FBNet paper's Figure 4.

One box per searchable layer, left to right: colour gives the kernel size,
height gives the expansion ratio (e1 short, e6 tall), ``skip`` is an empty
dashed box, ``_g2`` blocks are hatched and squeeze-and-excitation blocks get a
dot. Vertical lines separate stages. Drawn with matplotlib's Agg canvas (no
display needed, the global backend is not touched) and saved atomically.
"""

from __future__ import annotations

import os
from typing import Optional, Union

from hwnas._io import atomic_write_file
from .architecture import Architecture
from .base import SearchSpace
from .blocks import parse_block_name

__all__ = ["draw_architecture", "KERNEL_COLOURS"]

#: Fill colour per kernel size (other kernels are grey).
KERNEL_COLOURS = {3: "#4C72B0", 5: "#DD8452", 7: "#55A868"}
_MAX_EXPANSION = 6.0


def _box_height(expansion: Optional[int]) -> float:
    # Height proportional to the expansion ratio; blocks without one (SEP, Choice) get e=2's height.
    e = 2 if expansion is None else expansion
    return max(e, 1) / _MAX_EXPANSION


def draw_architecture(
    arch: Union[Architecture, tuple[SearchSpace, Architecture]],
    path: str | os.PathLike,
    space: SearchSpace | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> str:
    """Draws ``arch`` and saves it as a PNG.

    Args:
        arch: An :class:`Architecture`, or a ``(space, arch)`` pair.
        path: Output file (``.png``); folders are created.
        space: The space, for channel/stride labels (optional).
        title: Figure title (default: space name, resolution, width).
        dpi: Resolution of the PNG.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    if isinstance(arch, tuple):
        space, arch = arch
    if not isinstance(arch, Architecture):
        raise ValueError(f"expected an Architecture or (space, Architecture), got {type(arch).__name__}")
    layers = space.resolve_layers(arch) if space is not None else None

    n = len(arch.choices)
    fig = Figure(figsize=(max(6.0, 0.42 * n + 1.5), 3.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    baseline = 0.0
    for i, name in enumerate(arch.choices):
        spec = parse_block_name(name)
        if spec.is_skip:
            ax.add_patch(Rectangle((i + 0.1, baseline), 0.8, _box_height(1), fill=False, linestyle="--", edgecolor="black", linewidth=1.0))
        else:
            colour = KERNEL_COLOURS.get(spec.kernel, "#999999")
            ax.add_patch(
                Rectangle((i + 0.1, baseline), 0.8, _box_height(spec.expansion), facecolor=colour, edgecolor="black",
                          linewidth=0.8, hatch="///" if spec.groups > 1 else None)
            )
            if spec.se:
                ax.plot([i + 0.5], [_box_height(spec.expansion) + 0.05], marker="o", markersize=3, color="black")
        ax.text(i + 0.5, -0.06, name, rotation=90, ha="center", va="top", fontsize=6)
        if layers is not None and (i == 0 or layers[i].stride != 1 or layers[i].c_out != layers[i - 1].c_out):
            ax.text(i + 0.5, 1.12, f"{layers[i].c_out}" + ("/s2" if layers[i].stride == 2 else ""), ha="center", fontsize=6)
    start = 0
    for length in (arch.stage_lengths or [n])[:-1]:
        start += length
        ax.axvline(start, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlim(0, n)
    ax.set_ylim(-0.9, 1.25)
    ax.axis("off")
    ax.set_title(title or f"{arch.space}  {arch.resolution}x{arch.resolution}  width {arch.width:g}", fontsize=9)
    handles = [Patch(facecolor=c, edgecolor="black", label=f"k={k}") for k, c in KERNEL_COLOURS.items()]
    handles.append(Patch(fill=False, linestyle="--", edgecolor="black", label="skip"))
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="groups=2"))
    ax.legend(handles=handles, loc="lower left", fontsize=6, ncol=len(handles), frameon=False, bbox_to_anchor=(0, 0))
    fig.text(0.99, 0.01, "height = expansion (e1..e6)", ha="right", fontsize=6)
    fig.tight_layout()
    out = os.fspath(path)
    atomic_write_file(out, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return out
