"""Plots of a search run (matplotlib, Agg canvas; the global backend is not touched).

* :func:`plot_distribution_history`: per searchable layer, the probability of each
  candidate over the epochs (stacked areas, one small panel per layer).
* :func:`plot_accuracy_latency`: accuracy against latency of the evaluated
  architectures, with the chosen one and the baselines marked.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from hwnas.runs import atomic_write_file

__all__ = ["plot_distribution_history", "plot_accuracy_latency"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str, dpi: int = 120) -> str:
    atomic_write_file(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"))
    return path


def plot_distribution_history(history: Sequence[dict[str, Any]], choices: Sequence[Sequence[str]], path: str,
                              title: str = "") -> str:
    """Stacked per-candidate probabilities over epochs, one panel per layer.

    Args:
        history: Search history records, each with ``epoch`` and ``probabilities``
            (per layer, a list aligned with ``choices[layer]``).
        choices: Candidate names per layer.
        path: PNG path (written atomically).
    """
    import numpy as np
    from matplotlib import colormaps

    if not history:
        raise ValueError("the history is empty: nothing to plot")
    names = sorted({c for layer in choices for c in layer})
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    colours = {name: cmap(i % cmap.N) for i, name in enumerate(names)}
    num_layers = len(choices)
    cols = min(6, num_layers)
    rows = math.ceil(num_layers / cols)
    fig = _figure(2.2 * cols + 1.6, 1.6 * rows + 0.8)
    epochs = [0] + [int(r["epoch"]) for r in history]
    for layer in range(num_layers):
        ax = fig.add_subplot(rows, cols, layer + 1)
        n = len(choices[layer])
        start = [1.0 / n] * n  # the uniform distribution the search starts from
        probs = np.array([start] + [r["probabilities"][layer] for r in history]).T
        ax.stackplot(epochs, probs, colors=[colours[c] for c in choices[layer]], linewidth=0.0)
        ax.set_xlim(0, epochs[-1])
        ax.set_ylim(0, 1)
        ax.set_title(f"layer {layer}: {choices[layer][int(probs[:, -1].argmax())]}", fontsize=8)
        ax.tick_params(labelsize=6)
        if layer % cols == 0:
            ax.set_ylabel("probability", fontsize=7)
        if layer >= num_layers - cols:
            ax.set_xlabel("epoch", fontsize=7)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=colours[c], label=c) for c in names], loc="upper center",
               ncol=min(len(names), 9), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title or "architecture distribution per layer over epochs", y=1.04, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


def plot_accuracy_latency(points: Sequence[dict[str, Any]], path: str, title: str = "",
                          xlabel: str = "latency (us)", ylabel: str = "accuracy") -> str:
    """Accuracy against latency.

    Args:
        points: Dicts with ``latency``, ``accuracy``, ``label`` and ``kind``: ``"sample"``
            (grey dots), ``"chosen"`` (red star), ``"baseline"`` (black squares) or
            ``"searched"`` (blue triangles); optional ``accuracy_std`` draws an error bar.
        path: PNG path (written atomically).
    """
    if not points:
        raise ValueError("no points to plot")
    styles = {
        "sample": dict(marker="o", color="0.6", s=22, zorder=2),
        "argmax": dict(marker="D", color="tab:blue", s=30, zorder=3),
        "searched": dict(marker="^", color="tab:blue", s=50, zorder=3),
        "chosen": dict(marker="*", color="tab:red", s=160, zorder=4),
        "baseline": dict(marker="s", color="black", s=50, zorder=4),
    }
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    seen: set[str] = set()
    for point in points:
        kind = point.get("kind", "sample")
        style = styles.get(kind, styles["sample"])
        label = kind if kind not in seen else None
        seen.add(kind)
        if point.get("accuracy_std") is not None:
            ax.errorbar(point["latency"], point["accuracy"], yerr=point["accuracy_std"], fmt="none",
                        ecolor=style["color"], capsize=3, zorder=1)
        ax.scatter([point["latency"]], [point["accuracy"]], label=label, **style)
        if point.get("label") and kind in ("chosen", "baseline", "searched"):
            ax.annotate(point["label"], (point["latency"], point["accuracy"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "accuracy against latency")
    fig.tight_layout()
    return _save(fig, path)
