"""Plots of a search run (hwnas.search.plots) and the predicted-vs-measured plot of
hwnas.latency.validation: what is drawn, not only that a file appears."""

import math

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from hwnas.latency.validation import ValidationReport, plot_predicted_vs_measured
from hwnas.search.plots import (POINT_KINDS, accuracy_latency_figure, block_styles, distribution_history_figure,
                                distribution_panel_title, plot_accuracy_latency, plot_distribution_history)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _valid_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def _points(scale=1.0):
    """A run's points: samples, the chosen one, the supernet baseline, then the retrained ones."""
    return [
        {"latency": 5000 * scale, "accuracy": 0.60, "kind": "sample"},
        {"latency": 5600 * scale, "accuracy": 0.70, "kind": "sample"},
        {"latency": 5300 * scale, "accuracy": 0.72, "kind": "argmax"},
        {"latency": 6200 * scale, "accuracy": 0.89, "kind": "chosen"},
        {"latency": 9000 * scale, "accuracy": 0.45, "kind": "baseline", "label": "MobileNetV2-style"},
        {"latency": 6400 * scale, "accuracy": 0.98, "kind": "searched"},
        {"latency": 6500 * scale, "accuracy": 0.97, "kind": "baseline_retrained", "label": "MobileNetV2-style w0.35",
         "accuracy_std": 0.01},
    ]


def _scatter(ax, label):
    found = [c for c in ax.collections if c.get_label() == label]
    assert len(found) == 1, f"no single scatter labelled {label!r}"
    return found[0]


# ------------------------------------------------------------------------------- accuracy vs latency


def test_accuracy_latency_png_is_written(tmp_path):
    path = tmp_path / "sub" / "acc.png"
    assert plot_accuracy_latency(_points(), str(path), target=6300.0) == str(path)
    width, height = _valid_png(path)
    assert width > 400 and height > 300


def test_supernet_estimates_are_hollow_and_retrained_results_filled():
    ax = accuracy_latency_figure(_points()).axes[0]
    hollow = _scatter(ax, "baseline (supernet weights, not retrained)")
    assert len(hollow.get_facecolors()) == 0 or hollow.get_facecolors()[0][3] == 0
    for kind in ("sample", "argmax", "chosen"):
        faces = _scatter(ax, POINT_KINDS[kind]["label"]).get_facecolors()
        assert len(faces) == 0 or faces[0][3] == 0, kind
    for kind in ("searched", "baseline_retrained"):
        faces = _scatter(ax, POINT_KINDS[kind]["label"]).get_facecolors()
        assert len(faces) and faces[0][3] == 1, kind


def test_legend_is_descriptive_and_colours_distinct():
    ax = accuracy_latency_figure(_points()).axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "baseline (supernet weights, not retrained)" in texts
    assert not {"sample", "argmax", "chosen", "searched", "baseline"} & set(texts)
    # argmax and the retrained result used to share tab:blue; points of different
    # architectures must not share a colour (chosen/searched are one architecture).
    colours = {kind: to_rgb(style["color"]) for kind, style in POINT_KINDS.items()}
    assert colours["argmax"] != colours["searched"]
    assert len({colours[k] for k in ("sample", "argmax", "chosen", "baseline")}) == 4


def test_chosen_is_linked_to_its_retrained_result_by_an_arrow():
    ax = accuracy_latency_figure(_points()).axes[0]
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == 1
    assert arrows[0].xy == (6400, 0.98) and arrows[0].xyann == (6200, 0.89)
    # Without a retrained point there is nothing to link.
    points = [p for p in _points() if p["kind"] != "searched"]
    ax = accuracy_latency_figure(points).axes[0]
    assert not [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]


def test_latency_target_and_band_are_drawn():
    ax = accuracy_latency_figure(_points(), target=6300.0, target_band=(5670.0, 6930.0),
                                 target_band_label="target band (\u00b110%)").axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() == "latency target"]
    assert len(lines) == 1 and list(lines[0].get_xdata()) == [6300.0, 6300.0]
    assert "target band (\u00b110%)" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = accuracy_latency_figure(_points()).axes[0]
    assert not [line for line in ax.get_lines() if line.get_label() == "latency target"]


def test_latency_axis_starts_at_zero_with_plain_numbers():
    fig = accuracy_latency_figure(_points(), target=9500.0)
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0
    assert ax.get_xlim()[1] > 9500  # every point and the target are inside
    assert ax.get_xlabel() == "latency (us)" and ax.get_ylabel() == "accuracy"
    fig.canvas.draw()
    assert ax.xaxis.get_offset_text().get_text() == ""


def test_large_latencies_switch_to_milliseconds():
    fig = accuracy_latency_figure(_points(scale=200.0), xlabel="latency ({unit}): predicted or measured")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "latency (ms): predicted or measured"
    assert ax.get_xlim()[0] == 0 and 1800 < ax.get_xlim()[1] < 2200  # 1.8e6 us = 1800 ms, plus a margin
    fig.canvas.draw()
    assert ax.xaxis.get_offset_text().get_text() == ""  # no "1e6" multiplier
    assert all(float(t.get_text().replace("\u2212", "-")).is_integer() for t in ax.get_xticklabels() if t.get_text())


def test_labels_stay_inside_the_axes():
    points = _points() + [{"latency": 9100, "accuracy": 0.99, "kind": "baseline_retrained",
                           "label": "a long label at the top right corner"}]
    fig = accuracy_latency_figure(points)
    ax = fig.axes[0]
    fig.canvas.draw()
    frame = ax.get_window_extent()
    labels = [t for t in ax.texts if t.get_text()]
    assert len(labels) == 3
    boxes = [t.get_window_extent() for t in labels]
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("key, value", [("latency", float("nan")), ("latency", None), ("accuracy", float("inf")),
                                        ("accuracy", None)])
def test_non_finite_values_are_refused_naming_the_point(tmp_path, key, value):
    points = _points()
    points[4] = {**points[4], key: value}
    with pytest.raises(ValueError, match=rf"point 4 \(MobileNetV2-style\): {key} is"):
        plot_accuracy_latency(points, str(tmp_path / "a.png"))
    assert not (tmp_path / "a.png").exists()


def test_unknown_kind_and_empty_points_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'retrained'"):
        plot_accuracy_latency([{"latency": 1.0, "accuracy": 0.5, "kind": "retrained"}], str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="no points"):
        plot_accuracy_latency([], str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match="latency target"):
        accuracy_latency_figure(_points(), target=float("nan"))


# ------------------------------------------------------------------------------- distribution over epochs


CHOICES = [["k3_e1", "k5_e6", "skip"], ["k3_e1", "k3_e3"]]


def _history(epochs=3, warmup=1):
    records = []
    for e in range(1, epochs + 1):
        frozen = e <= warmup
        records.append({"epoch": e, "arch_step": not frozen, "probabilities": [
            [1 / 3] * 3 if frozen else [0.2, 0.7, 0.1], [0.5, 0.5] if frozen else [0.3, 0.7]]})
    return records


def test_panel_title_names_the_chosen_block_and_ties():
    names = ["k3_e1", "k5_e6", "skip"]
    assert distribution_panel_title(2, names, [0.2, 0.7, 0.1]) == "layer 2: argmax k5_e6"
    assert distribution_panel_title(2, names, [0.2, 0.7, 0.1], chosen="k5_e6") == "layer 2: chosen k5_e6"
    assert distribution_panel_title(2, names, [0.2, 0.7, 0.1], chosen="skip") == "layer 2: chosen skip\nargmax k5_e6"
    assert distribution_panel_title(0, names, [0.333333, 0.333333, 0.333333]) == "layer 0: uniform"
    assert distribution_panel_title(0, names, [1 / 3] * 3, chosen="k3_e1") == "layer 0: chosen k3_e1\nuniform"
    assert distribution_panel_title(0, names, [0.45, 0.1, 0.45]) == "layer 0: tie k3_e1 / skip"
    assert distribution_panel_title(0, ["k3_e1"], [1.0]) == "layer 0: argmax k3_e1"


def test_distribution_png_and_panel_titles(tmp_path):
    path = tmp_path / "d.png"
    assert plot_distribution_history(_history(), CHOICES, str(path), chosen=["skip", "k3_e3"]) == str(path)
    _valid_png(path)
    fig = distribution_history_figure(_history(), CHOICES, chosen=["skip", "k3_e3"])
    assert [ax.get_title() for ax in fig.axes] == ["layer 0: chosen skip\nargmax k5_e6", "layer 1: chosen k3_e3"]
    fig = distribution_history_figure(_history(epochs=2, warmup=2), CHOICES)
    assert [ax.get_title() for ax in fig.axes] == ["layer 0: uniform", "layer 1: uniform"]


def test_warmup_is_shaded_and_named_in_the_legend():
    fig = distribution_history_figure(_history(epochs=4, warmup=2), CHOICES)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "warm-up (architecture frozen)" in texts
    spans = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(spans) == 1 and spans[0].get_x() == 0 and spans[0].get_width() == 2
    fig = distribution_history_figure(_history(epochs=3, warmup=0), CHOICES)
    assert "warm-up (architecture frozen)" not in [t.get_text() for t in fig.legends[0].get_texts()]


def test_epoch_axis_has_integer_ticks():
    fig = distribution_history_figure(_history(epochs=3, warmup=1), CHOICES)
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_history_starting_at_epoch_zero_is_not_duplicated():
    records = [{"epoch": e, "probabilities": [[1 / 3] * 3, [0.5, 0.5]]} for e in (0, 1, 2)]
    fig = distribution_history_figure(records, CHOICES)
    assert fig.axes[0].get_xlim() == (0, 2)
    # A single record at epoch 0 still shows something (a bar), over a non-empty range.
    fig = distribution_history_figure(records[:1], CHOICES)
    low, high = fig.axes[0].get_xlim()
    assert high > low and len(fig.axes[0].patches) == 3


def test_bad_distribution_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="choices is empty"):
        plot_distribution_history(_history(), [], str(tmp_path / "d.png"))
    with pytest.raises(ValueError, match="layer 1 has no candidate"):
        plot_distribution_history(_history(), [["k3_e1"], []], str(tmp_path / "d.png"))
    with pytest.raises(ValueError, match="history is empty"):
        plot_distribution_history([], CHOICES, str(tmp_path / "d.png"))
    with pytest.raises(ValueError, match="do not match"):
        plot_distribution_history(_history(), [["k3_e1", "k5_e6"], ["k3_e1", "k3_e3"]], str(tmp_path / "d.png"))
    with pytest.raises(ValueError, match="not one of its candidates"):
        plot_distribution_history(_history(), CHOICES, str(tmp_path / "d.png"), chosen=["k7_e6", "k3_e1"])
    assert not (tmp_path / "d.png").exists()


def test_block_palette_stays_distinct_beyond_twenty_blocks():
    from hwnas.spaces import get_space
    from hwnas.spaces.figure import KERNEL_COLOURS

    names = sorted({c for layer in get_space("hurricane").layers for c in layer.choices})
    assert len(names) == 32
    styles = block_styles(names)
    assert len(set(styles.values())) == 32
    # Hue follows the architecture figure's kernel colours: a k5 block is more orange than blue.
    k5 = np.array(styles["mb_k5_e3"][0])
    assert np.linalg.norm(k5 - to_rgb(KERNEL_COLOURS[5])) < np.linalg.norm(k5 - to_rgb(KERNEL_COLOURS[3]))
    # Lightness follows the expansion.
    assert sum(styles["mb_k3_e1"][0]) > sum(styles["mb_k3_e3"][0]) > sum(styles["mb_k3_e6"][0])


# ------------------------------------------------------------------------------- predicted vs measured


def _report(measured, raw, overhead=None, linear=None):
    metric = {"mape_pct": 10.0, "kendall_tau": 0.8}
    return ValidationReport(table_fingerprint={"target": "eager"}, machine="m", archs=["a"] * len(measured),
                            measured=measured, raw=raw, overhead=overhead, linear=linear,
                            metrics={"raw": metric, "overhead": metric, "linear": metric}, correction=None)


@pytest.fixture
def svg_backend():
    """A backend other than Agg, so that switching it is seen (and undone afterwards)."""
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    yield
    matplotlib.use(before)


def test_predicted_vs_measured_keeps_the_backend(tmp_path, svg_backend):
    before = matplotlib.get_backend()
    measured = [4000.0, 6000.0, 9000.0]
    plot_predicted_vs_measured(_report(measured, [2400.0, 3600.0, 5400.0], linear=[4100.0, 5800.0, 9300.0]),
                               tmp_path / "v.png")
    assert matplotlib.get_backend() == before
    _valid_png(tmp_path / "v.png")


def test_predicted_vs_measured_equal_axes_and_merged_series(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), savefig(self, *a, **k))[1])
    measured = [4000.0, 6000.0, 9000.0]
    raw = [2400.0, 3600.0, 5400.0]
    plot_predicted_vs_measured(_report(measured, raw, overhead=list(raw), linear=[4100.0, 5800.0, 19000.0]),
                               tmp_path / "v.png")
    ax = drawn[0].axes[0]
    assert ax.get_xlim() == ax.get_ylim()
    low, high = ax.get_xlim()
    assert low <= 2400 and high >= 19000  # every value, predicted or measured, is inside
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("raw = overhead:") for t in texts)
    assert not any(t.startswith("overhead") for t in texts)


def test_predicted_vs_measured_refuses_empty_and_bad_reports(tmp_path):
    with pytest.raises(ValueError, match="no measured architectures"):
        plot_predicted_vs_measured(_report([], []), tmp_path / "v.png")
    with pytest.raises(ValueError, match="raw predictions have 2 values for 3"):
        plot_predicted_vs_measured(_report([1.0, 2.0, 3.0], [1.0, 2.0]), tmp_path / "v.png")
    with pytest.raises(ValueError, match="NaN or infinite"):
        plot_predicted_vs_measured(_report([1.0, math.nan], [1.0, 2.0]), tmp_path / "v.png")
    assert not (tmp_path / "v.png").exists()


def test_numpy_and_torch_scalars_are_plotted(tmp_path):
    import numpy as np
    import torch

    points = [{"latency": np.float32(6000.0), "accuracy": torch.tensor(0.9), "kind": "sample"},
              {"latency": np.int64(7000), "accuracy": np.float64(0.95), "kind": "searched"}]
    path = tmp_path / "scalars.png"
    assert plot_accuracy_latency(points, str(path), target=np.float64(6500.0)) == str(path)
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="point 0"):
        plot_accuracy_latency([{"latency": np.float32("nan"), "accuracy": 0.9}], str(tmp_path / "nan.png"))


def test_a_label_with_other_braces_keeps_them():
    fig = accuracy_latency_figure(_points(), xlabel="latency {unit} {n}")
    assert fig.axes[0].get_xlabel() == "latency us {n}"  # str.format raised KeyError: 'n'
