"""Plots of a search run (matplotlib, Agg canvas; the global backend is not touched).

* :func:`plot_distribution_history`: per searchable layer, the probability of each
  candidate over the epochs (stacked areas, one small panel per layer).
* :func:`plot_accuracy_latency`: accuracy against latency of the evaluated
  architectures, with the chosen one and the baselines marked.

Each ``plot_*`` function has a ``*_figure`` twin that returns the unsaved
:class:`matplotlib.figure.Figure`, so that callers (and tests) can inspect what
is drawn; the text of a distribution panel's title is the pure function
:func:`distribution_panel_title`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

from hwnas._figures import save_figure

__all__ = ["plot_distribution_history", "plot_accuracy_latency", "distribution_history_figure",
           "accuracy_latency_figure", "distribution_panel_title", "block_styles", "POINT_KINDS"]

#: Point kinds of :func:`plot_accuracy_latency`: legend text and marker. Points scored
#: with the supernet's shared weights are hollow, retrained and measured ones filled,
#: so that an untrained estimate never looks like a final result.
POINT_KINDS: dict[str, dict[str, Any]] = {
    "sample": dict(label="sampled architectures (supernet weights)", marker="o", color="0.55", size=22,
                   filled=False, zorder=2),
    "argmax": dict(label="most likely architecture (supernet weights)", marker="D", color="tab:purple", size=34,
                   filled=False, zorder=3),
    "chosen": dict(label="chosen architecture (supernet weights)", marker="*", color="tab:red", size=170,
                   filled=False, zorder=4),
    "baseline": dict(label="baseline (supernet weights, not retrained)", marker="s", color="black", size=46,
                     filled=False, zorder=4),
    "searched": dict(label="chosen architecture (retrained, measured)", marker="*", color="tab:red", size=190,
                     filled=True, zorder=5),
    "baseline_retrained": dict(label="baseline (retrained, measured)", marker="s", color="black", size=46,
                               filled=True, zorder=5),
}
#: Kinds whose points carry a text label next to them (the others are many, or named by the legend).
_ANNOTATED_KINDS = ("chosen", "searched", "baseline", "baseline_retrained")
#: Above this many microseconds the latency axis switches to milliseconds (short tick labels).
_MS_ABOVE_US = 1e4

# Distribution palette: hue by kernel size, the architecture figure's KERNEL_COLOURS.
_OTHER_KERNEL_HUE = "#8C8C8C"
_CUSTOM_HUES = ("#8172B3", "#937860", "#DA8BC3", "#CCB974", "#64B5CD", "#C44E52")
_SKIP_COLOUR = "#BDBDBD"  # mid grey: a pale one would read as empty panel
# Hatches tell the block families of one kernel size apart; "///" for groups as in the architecture figure.
_FAMILY_HATCHES = {"sep": "--", "choice": "xx", "choicex": "++"}
_EXTRA_HATCHES = ("\\\\\\", "||", "oo", "**", "OO", "\\\\--", "||..")


def _figure(width: float, height: float, layout: Optional[str] = None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str, dpi: int = 120) -> str:
    return save_figure(fig, path, dpi)


# ---------------------------------------------------------------------------------------- distribution


def _mix(colour: str, amount: float) -> tuple[float, float, float]:
    """``colour`` lightened towards white (``amount`` > 0) or darkened towards black (< 0)."""
    from matplotlib.colors import to_rgb

    rgb = to_rgb(colour)
    if amount >= 0:
        return tuple(c + (1.0 - c) * amount for c in rgb)  # type: ignore[return-value]
    return tuple(c * (1.0 + amount) for c in rgb)  # type: ignore[return-value]


def block_styles(names: Sequence[str]) -> dict[str, tuple[Any, Optional[str]]]:
    """Fill colour and hatch per candidate block, distinct for every name.

    The hue is the kernel size's (blue k3, orange k5, green k7, as in the architecture
    figure), the lightness the expansion (e1 light .. e6 dark), the hatch the family
    (``--`` separable, ``xx`` ShuffleNet unit, ``++`` ShuffleNet-X, ``///`` groups > 1,
    ``..`` squeeze-and-excitation); ``skip`` is light grey. A colour map would wrap
    (tab20 repeats after 20 names: the 32 blocks of the hurricane space) and its colours
    would mean nothing; these stay distinct and readable as "kernel, expansion, family".

    Args:
        names: Block names.

    Returns:
        ``{name: (colour, hatch or None)}``.
    """
    from hwnas.spaces.blocks import parse_block_name
    from hwnas.spaces.figure import KERNEL_COLOURS

    styles: dict[str, tuple[Any, Optional[str]]] = {}
    custom = 0
    for name in sorted(set(names)):
        try:
            spec = parse_block_name(name)
        except ValueError:
            spec = None  # a name the block library does not know still gets a colour
        if spec is not None and spec.is_skip:
            styles[name] = (_SKIP_COLOUR, None)
            continue
        if spec is None or spec.kernel is None:
            styles[name] = (_CUSTOM_HUES[custom % len(_CUSTOM_HUES)], None)
            custom += 1
            continue
        hue = KERNEL_COLOURS.get(spec.kernel, _OTHER_KERNEL_HUE)
        # e1 -> 0.6 towards white, e6 -> 0.35 towards black; blocks without an expansion in between.
        expansion = 3.5 if spec.expansion is None else min(max(spec.expansion, 1), 6)
        hatch = _FAMILY_HATCHES.get(spec.family, "")
        hatch += "///" if spec.groups > 1 else ""
        hatch += ".." if spec.se else ""
        styles[name] = (_mix(hue, 0.6 - (expansion - 1) / 5 * 0.95), hatch or None)
    # Two names can still meet (e.g. k9 and k11 share the grey hue): give the later one an extra hatch.
    seen: set[tuple[Any, Optional[str]]] = set()
    for name in sorted(styles):
        style, extra = styles[name], 0
        while style in seen:
            style = (styles[name][0], (styles[name][1] or "") + _EXTRA_HATCHES[extra % len(_EXTRA_HATCHES)]
                     * (1 + extra // len(_EXTRA_HATCHES)))
            extra += 1
        styles[name] = style
        seen.add(style)
    return styles


def _legend_order(name: str) -> tuple:
    """Legend order: kernel size, then family and expansion (so shades of one hue sit together)."""
    from hwnas.spaces.blocks import parse_block_name

    try:
        spec = parse_block_name(name)
    except ValueError:
        return (2, 0, "", 0, name)
    if spec.is_skip:
        return (3, 0, "", 0, name)
    if spec.kernel is None:
        return (2, 0, "", 0, name)
    return (0, spec.kernel, spec.family, spec.expansion or 0, name)


def distribution_panel_title(layer: int, choices: Sequence[str], probabilities: Sequence[float],
                             chosen: Optional[str] = None, tolerance: float = 1e-5) -> str:
    """Title of one layer's panel of :func:`plot_distribution_history`.

    The final epoch's most likely block is not necessarily the chosen one (the choice is
    made by evaluating candidates), so a given ``chosen`` block is named first and the
    most likely one only when it differs. A tie names no winner: ``"uniform"`` when all
    candidates are equally likely, else ``"tie A / B"``.

    Args:
        layer: Layer index.
        choices: The layer's candidate names.
        probabilities: The final probabilities, aligned with ``choices``.
        chosen: The chosen architecture's block for this layer (``None``: not known).
        tolerance: Probabilities closer than this are a tie (the history rounds them to 6 digits).

    Returns:
        One or two lines, e.g. ``"layer 3: chosen k5_e6"`` or
        ``"layer 3: chosen k5_e6\\nargmax k3_e6"``.
    """
    if len(choices) != len(probabilities) or not choices:
        raise ValueError(f"layer {layer}: {len(probabilities)} probabilities for {len(choices)} candidates")
    top = max(probabilities)
    best = [name for name, p in zip(choices, probabilities) if top - p <= tolerance]
    if len(best) == len(choices) and len(choices) > 1:
        state = "uniform"
    elif len(best) > 1:
        state = "tie " + " / ".join(best)
    else:
        state = f"argmax {best[0]}"
    if chosen is None:
        return f"layer {layer}: {state}"
    if best == [chosen]:
        return f"layer {layer}: chosen {chosen}"
    return f"layer {layer}: chosen {chosen}\n{state}"


def _warmup_spans(epochs: Sequence[float], warmup: Sequence[bool]) -> list[tuple[float, float]]:
    """Epoch intervals of consecutive warm-up records (record ``e`` covers ``(e - 1, e]``)."""
    spans: list[tuple[float, float]] = []
    for epoch, frozen in zip(epochs, warmup):
        if not frozen:
            continue
        if spans and spans[-1][1] == epoch - 1:
            spans[-1] = (spans[-1][0], epoch)
        else:
            spans.append((max(epoch - 1, 0), epoch))
    return spans


def distribution_history_figure(history: Sequence[dict[str, Any]], choices: Sequence[Sequence[str]],
                                title: str = "", chosen: Optional[Sequence[str]] = None):
    """The figure of :func:`plot_distribution_history`, not saved.

    Returns:
        A :class:`matplotlib.figure.Figure`: one axes per layer (in layer order) holding the
        panels, then nothing else.
    """
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("the history is empty: nothing to plot")
    if not choices:
        raise ValueError("choices is empty: a distribution needs at least one searchable layer")
    for layer, names in enumerate(choices):
        if not names:
            raise ValueError(f"layer {layer} has no candidate blocks")
    if chosen is not None:
        if len(chosen) != len(choices):
            raise ValueError(f"chosen has {len(chosen)} blocks, the history {len(choices)} layers")
        for layer, (block, names) in enumerate(zip(chosen, choices)):
            if block not in names:
                raise ValueError(f"layer {layer}: chosen block {block!r} is not one of its candidates {list(names)}")
    records = sorted(history, key=lambda r: float(r["epoch"]))
    for r in records:
        probs = r.get("probabilities")
        if probs is None or len(probs) != len(choices) or any(len(p) != len(c) for p, c in zip(probs, choices)):
            raise ValueError(f"history epoch {r['epoch']}: probabilities do not match the candidates of "
                             f"{len(choices)} layers")
    epochs = [float(r["epoch"]) for r in records]
    # Records without arch_step come from older histories: nothing known to be frozen.
    warmup = [r.get("arch_step") is False for r in records]
    # The search starts from the uniform distribution: drawn at epoch 0 unless the history has it.
    prepend = epochs[0] > 0
    if prepend:
        epochs = [0.0] + epochs

    names = sorted({c for layer in choices for c in layer}, key=_legend_order)
    styles = block_styles(names)
    num_layers = len(choices)
    cols = min(6, num_layers)
    rows = math.ceil(num_layers / cols)
    legend_rows = math.ceil(len(names) / min(len(names), 8))
    fig = _figure(2.3 * cols + 0.6, 1.75 * rows + 0.75 + 0.2 * legend_rows, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    spans = _warmup_spans(epochs[1:] if prepend else epochs, warmup)
    for layer in range(num_layers):
        ax = axes[layer // cols][layer % cols]
        n = len(choices[layer])
        series = [r["probabilities"][layer] for r in records]
        if prepend:
            series = [[1.0 / n] * n] + series
        probs = np.asarray(series, dtype=float).T
        colours = [styles[c][0] for c in choices[layer]]
        if len(epochs) == 1:
            # One record: a stacked bar (an area needs two epochs).
            bottom = 0.0
            for k, name in enumerate(choices[layer]):
                ax.bar(epochs, [probs[k, 0]], bottom=bottom, width=0.6, color=colours[k], hatch=styles[name][1],
                       edgecolor="white", linewidth=0.0)
                bottom += probs[k, 0]
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        else:
            polys = ax.stackplot(epochs, probs, colors=colours, linewidth=0.0)
            for poly, name in zip(polys, choices[layer]):
                if styles[name][1]:
                    poly.set_hatch(styles[name][1])
                    poly.set_edgecolor("white")  # hatch lines in white: visible on every shade
            ax.set_xlim(epochs[0], epochs[-1])
        for lo, hi in spans:
            # Over the areas (they fill the whole panel), light enough to show the probabilities.
            ax.axvspan(lo, hi, facecolor="white", alpha=0.45, edgecolor="0.45", hatch="\\\\", linewidth=0.0, zorder=3)
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        chosen_block = chosen[layer] if chosen is not None else None
        ax.set_title(distribution_panel_title(layer, choices[layer], probs[:, -1].tolist(), chosen_block), fontsize=7.5)
        ax.tick_params(labelsize=6)
        if layer % cols == 0:
            ax.set_ylabel("probability", fontsize=7)
        if layer >= num_layers - cols:
            ax.set_xlabel("epoch", fontsize=7)
    for extra in range(num_layers, rows * cols):
        axes[extra // cols][extra % cols].remove()
    handles = [Patch(facecolor=styles[c][0], hatch=styles[c][1], edgecolor="white", label=c) for c in names]
    if spans:
        handles.append(Patch(facecolor="white", alpha=0.6, edgecolor="0.45", hatch="\\\\",
                             label="warm-up (architecture frozen)"))
    # "outside" reserves the legend's room in the constrained layout, right below the panels
    # (no gap); above them it would collide with the suptitle.
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=7.5, frameon=False)
    fig.suptitle(title or "architecture distribution per layer over epochs", fontsize=10)
    return fig


def plot_distribution_history(history: Sequence[dict[str, Any]], choices: Sequence[Sequence[str]], path: str,
                              title: str = "", chosen: Optional[Sequence[str]] = None) -> str:
    """Stacked per-candidate probabilities over epochs, one panel per layer.

    Args:
        history: Search history records, each with ``epoch`` and ``probabilities`` (per
            layer, a list aligned with ``choices[layer]``); ``arch_step: False`` marks a
            warm-up epoch (architecture not trained), shaded in the panels.
        choices: Candidate names per layer.
        path: Output file: ``.png``, ``.svg`` or ``.pdf`` by its extension (written atomically).
        title: Figure title (default: a generic one).
        chosen: The chosen architecture's block per layer: panel titles name it (and the
            most likely block only where that differs). ``None``: titles name the final
            epoch's most likely block.

    Returns:
        ``path``.

    Raises:
        ValueError: Empty history or choices, a layer without candidates, probabilities
            not matching the candidates, or a chosen block that is not a candidate.
    """
    return _save(distribution_history_figure(history, choices, title, chosen), path)


# ---------------------------------------------------------------------------------------- accuracy/latency


def _finite(value: Any) -> bool:
    """Whether ``value`` is one finite real number: a Python, numpy or 0-d torch scalar
    (results read from tensors or arrays), not a bool."""
    if isinstance(value, bool) or value is None:
        return False
    if not isinstance(value, numbers.Real):
        if getattr(value, "ndim", None) != 0 or getattr(value, "dtype", None) is None:
            return False
        if getattr(value.dtype, "is_complex", False) or getattr(value, "dtype", None) == bool:
            return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _checked_points(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` with their kind filled in; refuses what would silently draw nothing."""
    if not points:
        raise ValueError("no points to plot")
    checked = []
    for i, point in enumerate(points):
        kind = point.get("kind", "sample")
        name = f"point {i} ({point.get('label') or kind})"
        if kind not in POINT_KINDS:
            raise ValueError(f"{name}: unknown kind {kind!r}; expected one of {sorted(POINT_KINDS)}")
        for key in ("latency", "accuracy"):
            if not _finite(point.get(key)):
                raise ValueError(f"{name}: {key} is {point.get(key)!r}; every point needs a finite latency and accuracy")
        if float(point["latency"]) < 0:
            raise ValueError(f"{name}: latency is negative ({point['latency']!r})")
        std = point.get("accuracy_std")
        if std is not None and not (_finite(std) and float(std) >= 0):
            raise ValueError(f"{name}: accuracy_std is {std!r}; expected a finite value >= 0 or None")
        checked.append({**point, "kind": kind, "latency": float(point["latency"]),
                        "accuracy": float(point["accuracy"]), "accuracy_std": None if std is None else float(std)})
    return checked


def _place_labels(fig, ax, labelled: Sequence[tuple[float, float, str]], avoid: Sequence[tuple[float, float]]) -> None:
    """Annotates each ``(x, y, text)`` at the first nearby spot that stays inside the axes
    and clear of the labels placed before and of the points in ``avoid``."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    # About a marker's size around every point, in display pixels.
    pad = 5 * fig.dpi / 72
    taken = [Bbox.from_extents(px - pad, py - pad, px + pad, py + pad)
             for px, py in (ax.transData.transform((x, y)) for x, y in avoid)]
    spots = [(8, 6, "left", "bottom"), (8, -6, "left", "top"), (-8, 6, "right", "bottom"),
             (-8, -6, "right", "top"), (0, 11, "center", "bottom"), (0, -11, "center", "top"),
             (10, 18, "left", "bottom"), (-10, -18, "right", "top")]
    for x, y, text in labelled:
        own = ax.transData.transform((x, y))
        others = [b for b in taken if not b.contains(*own)]
        fallback = None
        for dx, dy, ha, va in spots:
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                fontsize=7, zorder=6)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(b) for b in others):
                taken.append(box)
                break
            if inside and fallback is None:
                fallback = (dx, dy, ha, va)
            label.remove()
        else:
            # Nowhere clear: inside the frame at least (overlapping), else the first spot.
            dx, dy, ha, va = fallback or spots[0]
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                fontsize=7, zorder=6)
            taken.append(label.get_window_extent(renderer))


def accuracy_latency_figure(points: Sequence[dict[str, Any]], title: str = "", xlabel: str = "latency ({unit})",
                            ylabel: str = "accuracy", target: Optional[float] = None,
                            target_band: Optional[tuple[float, float]] = None,
                            target_band_label: str = "latency target band"):
    """The figure of :func:`plot_accuracy_latency`, not saved (same arguments, no path).

    Returns:
        A :class:`matplotlib.figure.Figure` with one axes, the plot.
    """
    import numpy as np
    from matplotlib.lines import Line2D

    checked = _checked_points(points)
    if target is not None and not (_finite(target) and target > 0):
        raise ValueError(f"latency target must be a positive number, got {target!r}")
    if target_band is not None:
        lo, hi = target_band
        if not (_finite(lo) and _finite(hi) and 0 <= lo <= hi):
            raise ValueError(f"target_band must be (low, high) latencies with 0 <= low <= high, got {target_band!r}")
    extent = max([p["latency"] for p in checked] + ([target] if target else []) +
                 ([target_band[1]] if target_band else []))
    # Long tick labels such as 12000 (or matplotlib's "1e6" offset) read badly: ms above 1e4 us.
    scale, unit = (1000.0, "ms") if extent > _MS_ABOVE_US else (1.0, "us")

    # Fixed axes rectangle (no layout engine), so that label positions computed below stay
    # valid when saved; the legend sits outside, on the right, and bbox_inches="tight" keeps it.
    fig = _figure(8.6, 4.4)
    ax = fig.add_axes((0.09, 0.12, 0.56, 0.78))
    for kind, style in POINT_KINDS.items():
        group = [p for p in checked if p["kind"] == kind]
        if not group:
            continue
        xs = np.array([p["latency"] for p in group]) / scale
        ys = np.array([p["accuracy"] for p in group])
        for p, x in zip(group, xs):
            if p.get("accuracy_std") is not None:
                ax.errorbar(x, p["accuracy"], yerr=p["accuracy_std"], fmt="none", ecolor=style["color"], capsize=3,
                            linewidth=0.9, zorder=1)
        face = style["color"] if style["filled"] else "none"
        ax.scatter(xs, ys, marker=style["marker"], s=style["size"], facecolors=face, edgecolors=style["color"],
                   linewidths=1.2, zorder=style["zorder"], label=style["label"])
    chosen = [p for p in checked if p["kind"] == "chosen"]
    searched = [p for p in checked if p["kind"] == "searched"]
    if len(chosen) == 1 and len(searched) == 1:
        # The same architecture twice: estimated with shared weights, then retrained and measured.
        start, end = chosen[0], searched[0]
        ax.annotate("", xy=(end["latency"] / scale, end["accuracy"]), xytext=(start["latency"] / scale, start["accuracy"]),
                    arrowprops=dict(arrowstyle="-|>", color="tab:red", linewidth=1.0, shrinkA=7, shrinkB=8), zorder=3)
    if target_band is not None:
        ax.axvspan(target_band[0] / scale, target_band[1] / scale, color="tab:green", alpha=0.12, linewidth=0,
                   label=target_band_label, zorder=0)
    if target is not None:
        ax.axvline(target / scale, color="tab:green", linestyle="--", linewidth=1.2, label="latency target", zorder=1)

    # x from 0: an axis starting near the smallest latency makes small gaps look large.
    ax.set_xlim(0, extent / scale * 1.12)
    ax.margins(y=0.14)
    ax.autoscale_view(scalex=False)
    ax.set_ylim(*ax.get_ylim())  # frozen: the label placement below needs the final limits
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.set_xlabel(xlabel.replace("{unit}", unit) if "{unit}" in xlabel else f"{xlabel} ({unit})")
    ax.set_ylabel(ylabel or "accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title or "accuracy against latency", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if len(chosen) == 1 and len(searched) == 1:
        handles.append(Line2D([], [], color="tab:red", linewidth=1.0, marker=">", markersize=4))
        labels.append("retrained from scratch")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0, fontsize=8,
              frameon=False)
    labelled = [(p["latency"] / scale, p["accuracy"], str(p["label"])) for p in checked
                if p["kind"] in _ANNOTATED_KINDS and p.get("label")]
    _place_labels(fig, ax, labelled, [(p["latency"] / scale, p["accuracy"]) for p in checked])
    return fig


def plot_accuracy_latency(points: Sequence[dict[str, Any]], path: str, title: str = "",
                          xlabel: str = "latency ({unit})", ylabel: str = "accuracy", target: Optional[float] = None,
                          target_band: Optional[tuple[float, float]] = None,
                          target_band_label: str = "latency target band") -> str:
    """Accuracy against latency.

    Points scored with the supernet's shared weights are drawn hollow, retrained and
    measured ones filled; an arrow links the chosen architecture's supernet estimate to
    its retrained result. The latency axis starts at 0 and is in microseconds, or in
    milliseconds when the largest value exceeds 1e4 us.

    Args:
        points: Dicts with ``latency`` (us), ``accuracy``, optional ``label`` (written next
            to chosen, searched and baseline points) and ``kind``, one of
            :data:`POINT_KINDS`: ``"sample"``, ``"argmax"``, ``"chosen"`` and
            ``"baseline"`` (supernet weights), ``"searched"`` and ``"baseline_retrained"``
            (retrained, measured); default ``"sample"``. Optional ``accuracy_std`` draws
            an error bar.
        path: Output file: ``.png``, ``.svg`` or ``.pdf`` by its extension (written atomically).
        title: Figure title (default: a generic one).
        xlabel: Latency axis label; ``{unit}`` is replaced by ``us`` or ``ms`` (appended in
            parentheses when absent).
        ylabel: Accuracy axis label (what the accuracy was measured on).
        target: The objective's latency target in us (a vertical line), or ``None``.
        target_band: ``(low, high)`` latencies in us of the selection's target band (shaded), or ``None``.
        target_band_label: Legend text of the band.

    Returns:
        ``path``.

    Raises:
        ValueError: No points, an unknown kind, a missing, NaN or infinite latency or
            accuracy (naming the point), or a bad target or band.
    """
    fig = accuracy_latency_figure(points, title, xlabel, ylabel, target, target_band, target_band_label)
    return _save(fig, path)
