import numpy as np
import pytest
from scipy.stats import kendalltau

from hwnas.latency.build import build_table
from hwnas.latency.targets import get_target
from hwnas.latency.validation import (
    error_metrics,
    fit_linear_correction,
    sample_spread_architectures,
    validate_table,
)


def test_error_metrics_against_hand_computation():
    measured = [100.0, 200.0, 400.0, 50.0]
    predicted = [110.0, 190.0, 400.0, 40.0]
    m = error_metrics(predicted, measured)
    assert m["mape_pct"] == pytest.approx((10 + 5 + 0 + 20) / 4)
    assert m["max_err_pct"] == pytest.approx(20)
    assert m["bias_pct"] == pytest.approx((10 - 5 + 0 - 20) / 4)
    assert m["kendall_tau"] == pytest.approx(kendalltau(predicted, measured).statistic)
    assert m["within_10pct"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive"):
        error_metrics([1, 2], [0, 1])


def test_linear_correction_recovers_the_line():
    raw = np.array([10.0, 20.0, 35.0, 50.0])
    fit = fit_linear_correction(raw, 0.9 * raw - 3.0)
    assert fit["a"] == pytest.approx(0.9) and fit["b"] == pytest.approx(-3.0)


def test_spread_sampling_covers_more_range_than_uniform(tiny_space):
    from hwnas.latency.validation import _cost_proxy

    def size(arch):
        return sum(_cost_proxy(c) for c in arch.choices)

    spread = [size(a) for a in sample_spread_architectures(tiny_space, 30, seed=1)]
    uniform = [size(tiny_space.sample(seed=s)) for s in range(30)]
    assert np.std(spread) > np.std(uniform)
    assert len({a.key() for a in sample_spread_architectures(tiny_space, 20, seed=2)}) == 20


def test_validate_end_to_end_writes_report_and_png(tiny_space, fast_timing, tmp_path):
    target = get_target("eager")
    table = build_table(tiny_space, target, config=fast_timing, progress=False)
    report = validate_table(table, tiny_space, target, num_archs=4, num_calibration=3, config=fast_timing,
                            progress=False, plot_path=tmp_path / "p.png", report_path=tmp_path / "r.json",
                            refine_strength=0.03)
    assert set(report.metrics) == {"raw", "overhead", "linear", "proportional", "refined"}
    assert report.metrics["refined"]["n_models"] == 3 and report.metrics["refined"]["strength"] == 0.03
    # The comparison fit is the proportional one: table sums less the per-call overhead
    # each entry but one paid, scaled; no fitted intercept.
    prop = report.metrics["proportional"]
    assert prop["a"] > 0 and prop["b"] == pytest.approx(-prop["a"] * (table.num_units() - 1) * table.call_overhead)
    expected = error_metrics([prop["a"] * r + prop["b"] for r in report.raw], report.measured)
    assert prop["mape_pct"] == pytest.approx(expected["mape_pct"])
    assert len(report.measured) == 4 and all(m > 0 for m in report.measured)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    data = json.loads((tmp_path / "r.json").read_text())
    assert data["format"] == "hwnas.latency_validation" and data["version"] == 1
    assert table.correction is not None and table.correction["n"] == 3
    other = get_target("eager", batch=2)
    with pytest.raises(ValueError, match="batch"):
        validate_table(table, tiny_space, other, num_archs=2, num_calibration=0, progress=False)


def test_proportional_correction_is_the_relative_least_squares_scale():
    from hwnas.latency import fit_linear_correction

    raw = [100.0, 200.0, 400.0]
    measured = [120.0, 250.0, 460.0]
    fit = fit_linear_correction(raw, measured, intercept=False)
    # Hand-derived: minimise sum (a * r_i - 1)^2 with r_i = raw_i / measured_i.
    r = [x / y for x, y in zip(raw, measured)]
    assert fit["a"] == pytest.approx(sum(r) / sum(v * v for v in r))
    assert fit["b"] == 0.0 and fit["n"] == 3 and fit["fit"] == "proportional"
    # Exact proportional data is recovered exactly; a two-parameter fit agrees there.
    exact = fit_linear_correction(raw, [1.2 * x for x in raw], intercept=False)
    assert exact["a"] == pytest.approx(1.2)
    assert fit_linear_correction(raw, [1.2 * x for x in raw])["b"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 1"):
        fit_linear_correction([], [], intercept=False)


def test_proportional_correction_removes_a_known_offset_first():
    # Whole models pay a * (raw - offset): e.g. 20 entries that each paid a 3 us session run.
    raw = [130.0, 150.0, 400.0]
    measured = [0.5 * (x - 60.0) for x in raw]
    fit = fit_linear_correction(raw, measured, intercept=False, offset=60.0)
    assert fit["a"] == pytest.approx(0.5) and fit["b"] == pytest.approx(-30.0) and fit["offset"] == 60.0
    # Hand-derived like the plain scale, on raw - offset.
    noisy = [25.0, 40.0, 160.0]
    r = [(x - 60.0) / y for x, y in zip(raw, noisy)]
    assert fit_linear_correction(raw, noisy, intercept=False, offset=60.0)["a"] == pytest.approx(sum(r) / sum(v * v for v in r))
    # Without the offset the scale overestimates the smallest model by 15%.
    plain = fit_linear_correction(raw, measured, intercept=False)
    assert plain["a"] * raw[0] / measured[0] > 1.14
    # An offset as large as a model's sum is capped at 0.9 times the smallest sum.
    capped = fit_linear_correction(raw, [10.0, 20.0, 50.0], intercept=False, offset=500.0)
    assert capped["offset"] == pytest.approx(117.0) and capped["a"] > 0
    with pytest.raises(ValueError, match="offset"):
        fit_linear_correction(raw, measured, intercept=False, offset=-1.0)


def test_affine_correction_is_held_above_a_tenth_of_the_smallest_sum():
    raw = [100.0, 200.0, 400.0]
    # Exact affine data inside the bound is recovered as is.
    fit = fit_linear_correction(raw, [2.0 * r - 50.0 for r in raw], floor=60.0)
    assert fit["fit"] == "affine" and fit["a"] == pytest.approx(2.0) and fit["b"] == pytest.approx(-50.0)
    # The bound is b >= -0.9 * a * floor: with floor 60 and a = 2, -108. Data that asks for
    # b = -150 gets the proportional fit of raw - 54 (hand-derived) instead.
    measured = [2.0 * r - 150.0 for r in raw]
    held = fit_linear_correction(raw, measured, floor=60.0)
    r = [(x - 54.0) / y for x, y in zip(raw, measured)]
    assert held["offset"] == pytest.approx(54.0) and held["floor"] == 60.0
    assert held["a"] == pytest.approx(sum(r) / sum(v * v for v in r))
    assert held["a"] * 60.0 + held["b"] == pytest.approx(0.1 * held["a"] * 60.0)
    # Without a floor the free fit is returned, whatever its intercept.
    assert fit_linear_correction(raw, measured)["b"] == pytest.approx(-150.0)
    with pytest.raises(ValueError, match="floor"):
        fit_linear_correction(raw, measured, floor=150.0)
    # The cheapest architecture itself among the calibration models, its sum added up in
    # another order: a floor above the smallest sum in the last bits is that sum.
    edge = fit_linear_correction(raw, measured, floor=100.0 * (1 + 1e-14))
    assert edge["floor"] == 100.0 and edge["a"] * 100.0 + edge["b"] >= 0.1 * edge["a"] * 100.0 - 1e-9


def test_per_block_correction_recovers_its_terms_and_holds_its_bounds():
    from hwnas.latency.table import apply_correction

    raw = [300.0, 500.0, 800.0, 1200.0, 1500.0]
    blocks = [0.0, 4.0, 9.0, 14.0, 20.0]
    # Exact data a * (raw - offset) + per_block * n is recovered, offset included.
    measured = [0.95 * (x - 4.0) + 61.0 * n for x, n in zip(raw, blocks)]
    fit = fit_linear_correction(raw, measured, intercept=False, offset=4.0, blocks=blocks)
    assert fit["fit"] == "blocks" and fit["a"] == pytest.approx(0.95) and fit["per_block"] == pytest.approx(61.0)
    assert fit["offset"] == 4.0 and fit["b"] == pytest.approx(-0.95 * 4.0) and "depth" not in fit
    for x, n, y in zip(raw, blocks, measured):
        assert apply_correction(fit, x, blocks=n) == pytest.approx(y)
    # Data that asks for a negative per-block term gets 0: the proportional fit (hand-derived).
    cheaper = [1.2 * x - 5.0 * n for x, n in zip(raw, blocks)]
    held = fit_linear_correction(raw, cheaper, intercept=False, blocks=blocks)
    r = [x / y for x, y in zip(raw, cheaper)]
    assert held["per_block"] == 0.0 and held["a"] == pytest.approx(sum(r) / sum(v * v for v in r))
    with pytest.raises(ValueError, match="intercept"):
        fit_linear_correction(raw, measured, blocks=blocks)
    with pytest.raises(ValueError, match="blocks must be 5"):
        fit_linear_correction(raw, measured, intercept=False, blocks=blocks[:-1])
    with pytest.raises(ValueError, match="blocks must be 5"):
        fit_linear_correction(raw, measured, intercept=False, blocks=[-1.0] * len(raw))
    # A per-block term cannot be applied without the block count.
    with pytest.raises(ValueError, match="per-block term"):
        apply_correction(fit, 500.0)


def test_an_older_depth_correction_still_predicts_as_fitted():
    # Tables saved before calibration version 6 carry depth * n^2: a resumed run must see
    # the costs it started with. Hand-computed: 1.1 * 1000 - 2 + 2.5 * 9^2 = 1300.5.
    from hwnas.latency.table import apply_correction

    old = {"kind": "linear", "a": 1.1, "b": -2.0, "n": 12, "fit": "depth", "offset": 1.8, "depth": 2.5}
    assert apply_correction(old, 1000.0, blocks=9, blocks_squared=81) == pytest.approx(1300.5)
    with pytest.raises(ValueError, match="depth term"):
        apply_correction(old, 1000.0, blocks=9)


def test_spread_with_varied_skips_reaches_mostly_skipped_architectures(tiny_space):
    from hwnas.spaces import get_space

    def skipped(arch):
        return sum(c == "skip" for c in arch.choices)

    offered = sum("skip" in layer.choices for layer in tiny_space.layers)
    varied = [skipped(a) for a in sample_spread_architectures(tiny_space, 30, seed=1, vary_skips=True)]
    # Skip shares from none to all of the layers that offer skip.
    assert min(varied) == 0 and max(varied) == offered
    # In an FBNet space (skip is one of nine blocks) the block-size axis alone rarely
    # skips half of the layers; the skip axis does so for about half of the draws.
    space = get_space("fbnet_small", resolution=8, width=0.25)
    half = sum("skip" in layer.choices for layer in space.layers) / 2
    plain = [skipped(a) >= half for a in sample_spread_architectures(space, 20, seed=0)]
    spread = [skipped(a) >= half for a in sample_spread_architectures(space, 20, seed=0, vary_skips=True)]
    assert sum(plain) <= 2 and sum(spread) >= 7


def test_stored_proportional_correction_keeps_the_smallest_model_positive(tiny_space, fast_timing):
    target = get_target("eager")
    table = build_table(tiny_space, target, config=fast_timing, progress=False)
    # An overhead far above what the entries paid (a noisy identity timing) is capped
    # at 0.9 times the smallest architecture's table sum.
    table.call_overhead = 1e6
    validate_table(table, tiny_space, target, num_archs=2, num_calibration=2, config=fast_timing, progress=False,
                   intercept=False)
    cheapest = tiny_space.make_arch([min(layer, key=lambda c: table.value(layer[c])) for layer in table.layers])
    assert table.smallest_sum() == pytest.approx(table.raw_sum(cheapest))
    assert table.correction["offset"] == pytest.approx(0.9 * table.raw_sum(cheapest))
    assert table.predict(cheapest) > 0


def test_a_table_whose_calibration_sums_are_all_alike_is_refused_before_measuring(tiny_space, fast_timing):
    class Refusing(type(get_target("eager"))):
        def measure(self, *args, **kwargs):  # pragma: no cover - must not be reached
            raise AssertionError("measured although no correction can be fitted")

    target = Refusing()
    table = build_table(tiny_space, get_target("eager"), config=fast_timing, progress=False)
    # Every entry 0: every calibration sum is 0, through which no slope can be fitted
    # (a least-squares solver would return an arbitrary one).
    for entry in table.entries.values():
        entry.value = 0.0
    with pytest.raises(ValueError, match="calibration models' table sums are all 0: no correction can be fitted"):
        validate_table(table, tiny_space, target, num_archs=2, num_calibration=3, config=fast_timing,
                       progress=False)
    assert table.correction is None


def test_a_correction_that_falls_with_the_table_sum_is_refused(tiny_space, fast_timing):
    from hwnas.latency import Target
    from hwnas.latency.harness import sample_statistics
    from hwnas.latency.table import LatencyTable, TableEntry

    class Backwards(Target):
        """Deterministic: a model "takes" less the more parameters it has."""

        name = "backwards"

        def measure(self, module, input_shape, config):
            return sample_statistics([1e6 / (1.0 + sum(p.numel() for p in module.parameters()))] * 5)

    target = Backwards()
    # Entries that grow with the block (skip 0, and stem and head 0): the smallest sum is
    # 0, so the affine fit has no floor to hold it, and the sums rank the models backwards.
    table = LatencyTable.for_space(tiny_space, target.fingerprint())
    for key in table.required_keys():
        block, channels, _, _ = key.split("|")
        size = 0.0 if block in ("skip", "stem", "head") else float(channels[1:].split("-")[1]) * (
            3.0 if "e3" in block else 1.0)
        table.entries[key] = TableEntry(size, block, 1, 1, 1, (1, 1))
    assert table.smallest_sum() == 0
    with pytest.warns(UserWarning, match="do not grow with their table sums.*this correction is not stored"):
        report = validate_table(table, tiny_space, target, num_archs=2, num_calibration=4, config=fast_timing,
                                progress=False)
    assert table.correction is None
    # The measurements are still reported.
    assert len(report.measured) == 2 and "linear" in report.metrics
