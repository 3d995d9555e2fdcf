import json

import pytest
import torch

from hwnas.latency.build import build_table
from hwnas.latency.table import LatencyTable, entry_key
from hwnas.latency.targets import get_target
from hwnas.spaces import get_space

from _latency_fixtures import make_tiny_space


class _Stop(Exception):
    pass


def test_keys_are_distinct_shape_block_pairs(tiny_space):
    table = LatencyTable.for_space(tiny_space, get_target("eager").fingerprint())
    expected = {entry_key(c, l.c_in, l.c_out, l.stride, l.in_hw) for l in tiny_space.layers for c in l.choices}
    keys = table.required_keys()
    assert len(keys) == len(set(keys))
    assert set(keys) == expected | {table.stem_key, table.head_key}
    # Layers 2 and 3 differ in shape (stride 2 then stride 1); layers 0 and 1 share one.
    assert table.layers[0] == table.layers[1]
    assert len(expected) == 3 + 3 + 3


def test_build_resume_loses_nothing_and_measures_each_key_once(tiny_space, fast_timing, tmp_path):
    path = tmp_path / "t.json"
    target = get_target("eager")
    seen = []

    def stop_after_three(key, entry):
        seen.append(key)
        if len(seen) == 3:
            raise _Stop

    with pytest.raises(_Stop):
        build_table(tiny_space, target, path, config=fast_timing, progress=False, on_entry=stop_after_three)
    partial = LatencyTable.load(path)
    assert len(partial.entries) == 3 and not partial.complete
    assert json.loads(path.read_text())["complete"] is False

    resumed = []
    table = build_table(tiny_space, target, path, config=fast_timing, progress=False,
                        on_entry=lambda k, e: resumed.append(k))
    assert table.complete
    assert set(resumed).isdisjoint(seen) and len(resumed) == len(table.required_keys()) - 3
    for key in seen:  # measurements from before the interruption are kept as they were
        assert table.entries[key].value == partial.entries[key].value
    assert LatencyTable.load(path).to_dict()["entries"] == table.to_dict()["entries"]



def test_reopening_a_complete_table_keeps_its_fitted_correction(tiny_space, fast_timing, tmp_path):
    # A search cache reopens its table every run: the correction fitted once must come back
    # with it, or every search pays the calibration measurements again.
    path = tmp_path / "t.json"
    table = build_table(tiny_space, get_target("eager"), path, config=fast_timing, progress=False)
    table.correction = {"kind": "linear", "a": 1.25, "b": -3.0, "n": 4}
    table.save(path)
    measured = []
    again = build_table(tiny_space, get_target("eager"), path, config=fast_timing, progress=False,
                        on_entry=lambda k, e: measured.append(k))
    assert measured == []
    assert again.correction == {"kind": "linear", "a": 1.25, "b": -3.0, "n": 4}
    arch = tiny_space.sample(seed=0)
    assert again.predict(arch) == pytest.approx(1.25 * again.predict(arch, correction="none") - 3.0)


def test_mixing_fingerprints_is_refused_unless_allowed(tiny_space, fast_timing, tmp_path, monkeypatch):
    monkeypatch.setattr("hwnas._argtypes.available_cpus", lambda: 4)  # threads=2 below, on any machine
    path = tmp_path / "t.json"
    build_table(tiny_space, get_target("eager"), path, config=fast_timing, progress=False)
    data = json.loads(path.read_text())
    data["fingerprint"]["cpu_model"] = "Some Other CPU"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="cpu_model"):
        build_table(tiny_space, get_target("eager"), path, config=fast_timing, progress=False)
    with pytest.raises(ValueError, match="threads"):
        LatencyTable.load(path).check_compatible(
            LatencyTable.for_space(tiny_space, get_target("eager", threads=2).fingerprint()))
    table = build_table(tiny_space, get_target("eager"), path, config=fast_timing, progress=False, allow_mixed=True)
    assert table.complete


def test_unknown_version_is_a_clear_error(tiny_space, tmp_path):
    table = LatencyTable.for_space(tiny_space, {"target": "x"})
    path = tmp_path / "t.json"
    table.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "hwnas.latency_table" and data["version"] == 1
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        LatencyTable.load(path)


def _synthetic_table(space):
    table = LatencyTable.for_space(space, {"target": "synthetic"})
    from hwnas.latency.table import TableEntry

    for i, key in enumerate(table.required_keys()):
        table.entries[key] = TableEntry(float(10 + 3 * i), key.split("|")[0], 1, 1, 1, (1, 1))
    return table


def test_predict_is_the_eq3_sum_and_corrections(tiny_space):
    table = _synthetic_table(tiny_space)
    arch = tiny_space.make_arch(["k3_e3", "skip", "k5_e3", "k3_e1"])
    expected = table.value(table.stem_key) + table.value(table.head_key) + sum(
        table.value(table.layers[i][c]) for i, c in enumerate(arch.choices))
    assert table.predict(arch, correction="none") == pytest.approx(expected)
    table.call_overhead = 2.0
    assert table.predict(arch, correction="overhead") == pytest.approx(expected - 2.0 * (4 + 2 - 1))
    with pytest.raises(ValueError, match="no fitted correction"):
        table.predict(arch, correction="linear")
    table.correction = {"kind": "linear", "a": 0.5, "b": 3.0}
    assert table.predict(arch) == pytest.approx(0.5 * expected + 3.0)
    with pytest.raises(ValueError, match="correction must be"):
        table.predict(arch, correction="bogus")


def test_expected_latency_is_eq9_and_differentiable(tiny_space):
    table = _synthetic_table(tiny_space)
    arch = tiny_space.make_arch(["k3_e1", "k3_e3", "skip", "k5_e3"])
    one_hot = torch.zeros(4, 3)
    for i, c in enumerate(arch.choices):
        one_hot[i, tiny_space.layers[i].choices.index(c)] = 1.0
    assert table.expected_latency(one_hot).item() == pytest.approx(table.predict(arch, correction="none"))
    logits = torch.randn(4, 3, requires_grad=True)
    probs = torch.softmax(logits, -1)
    probs.retain_grad()
    value = table.expected_latency(probs, include_fixed=False)
    manual = sum((probs[i] * table.layer_costs(i)).sum() for i in range(4))
    assert value.item() == pytest.approx(manual.item(), rel=1e-6)
    value.backward()
    for i in range(4):  # d E[lat] / d p_{l,i} = LUT(l, i)
        assert torch.allclose(probs.grad[i], table.layer_costs(i))
    batched = table.expected_latency([one_hot[i].expand(5, 3) for i in range(4)])
    assert batched.shape == (5,)


def test_with_statistic_switches_values(tiny_space, fast_timing):
    table = build_table(tiny_space, get_target("eager"), config=fast_timing, progress=False)
    assert table.notes["timing"]["target_rel_ci"] == fast_timing.target_rel_ci
    low = table.with_statistic("p10")
    for key, entry in table.entries.items():
        assert low.entries[key].value == entry.stats["p10_us"] <= entry.stats["median_us"] == entry.value
    with pytest.raises(ValueError, match="no statistic"):
        table.with_statistic("p42")


def _shaped_table(space):
    """A complete synthetic table whose entries cost c_in + c_out (any shape mix-up changes the sum)."""
    from hwnas.latency.table import TableEntry

    table = LatencyTable.for_space(space, {"target": "synthetic"})
    for key in table.required_keys():
        block, channels, stride, hw = key.split("|")
        c_in, c_out = (int(c) for c in channels[1:].split("-"))
        h, w = (int(v) for v in hw.split("x"))
        table.entries[key] = TableEntry(float(c_in + c_out), block, c_in, c_out, int(stride[1:]), (h, w))
    return table


@pytest.mark.parametrize("other, match", [
    (dict(width=0.5), "width 0.5 differs"),
    (dict(num_classes=100), "head entry 'head|c88-100"),
    (dict(in_channels=1), "stem entry 'stem|c1-8"),
])
def test_predict_refuses_architectures_of_another_space_shape(other, match):
    from hwnas.spaces import get_space

    shape = dict(resolution=32, width=0.25, num_classes=10)
    space = get_space("fbnet_small", **shape)
    table = _shaped_table(space)
    arch = space.sample(seed=0)
    foreign = get_space("fbnet_small", **{**shape, **other}).make_arch(arch.choices)
    for call in (table.predict, table.raw_sum, table.num_blocks):
        with pytest.raises(ValueError, match=match):
            call(foreign)
    assert table.predict(arch) == _shaped_table(space).predict(arch)  # its own architectures still work
    # An architecture of a space offering fewer candidates needs only keys the table has, at the same shapes.
    fewer = get_space("fbnet_small", **shape, choices=["k3_e1", "skip"]).sample(seed=1)
    assert table.predict(fewer) == pytest.approx(sum(table.value(table.layers[i][c]) for i, c in enumerate(fewer.choices))
                                                 + table.value(table.stem_key) + table.value(table.head_key))


def test_predict_refuses_another_space_version(tiny_space):
    from hwnas.spaces import Architecture

    table = _synthetic_table(tiny_space)
    arch = tiny_space.sample(seed=0)
    with pytest.raises(ValueError, match="v2 given to a table for v1"):
        table.predict(Architecture(**{**arch.__dict__, "space_version": 2}))




def test_check_space_compares_every_entry_key(tiny_space):
    table = _synthetic_table(tiny_space)
    table.check_space(tiny_space, require_complete=True)
    with pytest.raises(ValueError, match="head entry 'head|c16-7"):
        table.check_space(make_tiny_space(num_classes=7))
    with pytest.raises(ValueError, match="stem entry 'stem|c1-8"):
        table.check_space(make_tiny_space(in_channels=1))
    with pytest.raises(ValueError, match="width 0.5"):
        table.check_space(make_tiny_space(width=0.5))
    with pytest.raises(ValueError, match="at 16x16"):
        table.check_space(make_tiny_space(resolution=16))
    del table.entries[table.head_key]
    table.check_space(tiny_space)
    with pytest.raises(ValueError, match="incomplete: 1 entries missing"):
        table.check_space(tiny_space, require_complete=True)


def test_merge_refuses_a_table_of_another_space_shape(tiny_space, fast_timing, tmp_path):
    table = _synthetic_table(tiny_space)
    other = _synthetic_table(make_tiny_space(num_classes=7))
    with pytest.raises(ValueError, match="different shapes of space 'latency_test_tiny'.*num_classes"):
        table.merge(other)
    assert len(table.entries) == len(table.required_keys())  # nothing was added
    table.merge(_synthetic_table(tiny_space))
    # Resuming a build on a file of another shape names the file.
    path = tmp_path / "t.json"
    other.save(path)
    with pytest.raises(ValueError, match="t.json: tables are for different shapes"):
        build_table(tiny_space, get_target("eager"), path, config=fast_timing, progress=False)


def test_apply_correction_refuses_malformed_corrections(tiny_space):
    from hwnas.latency.table import apply_correction

    with pytest.raises(ValueError, match="correction.a"):
        apply_correction({"kind": "linear"}, 10.0)
    with pytest.raises(ValueError, match="must be a JSON object"):
        apply_correction("linear", 10.0)
    with pytest.raises(ValueError, match="unknown correction kind 'cubic'"):
        apply_correction({"kind": "cubic", "a": 1, "b": 0}, 10.0)
    table = _synthetic_table(tiny_space)
    table.correction = "linear"
    with pytest.raises(ValueError, match="must be a JSON object"):
        table.predict(tiny_space.sample(seed=0))


def test_a_table_knows_the_width_of_the_head_its_key_does_not_name(tmp_path):
    # fbnet's head and FBNet-A's (1504 channels) have one entry key: the table's stored
    # head width tells them apart.
    from hwnas import models
    from hwnas.latency.table import head_key

    space = get_space("fbnet", resolution=32)
    arch_a = models.architecture("fbnet_a")
    space_a = get_space("fbnet", resolution=32, **arch_a.space_options)
    assert space.head_channels == 1984 and space_a.head_channels == 1504 and head_key(space) == head_key(space_a)
    table = LatencyTable.for_space(space, get_target("eager").fingerprint())
    path = tmp_path / "t.json"
    table.save(path)
    table = LatencyTable.load(path)
    assert table.head_channels == 1984
    with pytest.raises(ValueError, match="a head of 1984 channels, the search space's has 1504"):
        table.check_space(space_a)
    arch = space_a.make_arch(arch_a.choices, resolution=32)
    with pytest.raises(ValueError, match="has a head of 1504 channels; this table was built for 1984"):
        table.predict(arch)
    with pytest.raises(ValueError, match="the other has a head of 1504 channels, this one 1984"):
        table.check_compatible(LatencyTable.for_space(space_a, table.fingerprint))
    # A table written before the width was stored still loads and predicts.
    data = json.loads(path.read_text())
    del data["head_channels"]
    path.write_text(json.dumps(data))
    assert LatencyTable.load(path).head_channels is None


@pytest.mark.parametrize("a", [-1.0, 0, 0.0, -1e-9])
def test_a_correction_must_scale_by_a_positive_a(tiny_space, tmp_path, a):
    # a <= 0 would make slower models look faster (or remove the latency signal) in a search.
    from hwnas.latency.table import apply_correction, check_correction

    with pytest.raises(ValueError, match=r"latency table: correction.a must be a finite number > 0 .*got "):
        check_correction({"kind": "linear", "a": a, "b": 10.0})
    with pytest.raises(ValueError, match="correction.a must be a finite number > 0"):
        apply_correction({"kind": "linear", "a": a, "b": 10.0}, 100.0)
    table = _synthetic_table(tiny_space)
    table.correction = {"kind": "linear", "a": a, "b": 10.0}
    with pytest.raises(ValueError, match="correction.a must be a finite number > 0"):
        table.predict(tiny_space.sample(seed=0))
    path = tmp_path / "t.json"
    table.save(path)
    with pytest.raises(ValueError, match="t.json: correction.a must be a finite number > 0"):
        LatencyTable.load(path)


def test_a_correction_refuses_a_negative_block_term_and_a_non_number_a_but_accepts_a_negative_b():
    from hwnas.latency.table import check_correction

    with pytest.raises(ValueError, match="correction.depth must be a finite number >= 0, got -0.5"):
        check_correction({"kind": "linear", "a": 1.0, "b": 0.0, "depth": -0.5})
    with pytest.raises(ValueError, match="correction.per_block must be a finite number >= 0, got -3"):
        check_correction({"kind": "linear", "a": 1.0, "b": 0.0, "per_block": -3.0})
    for a in ("1.2", True, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="correction.a must be a finite number"):
            check_correction({"kind": "linear", "a": a, "b": 0.0})
    with pytest.raises(ValueError, match="correction.b must be a finite number"):
        check_correction({"kind": "linear", "a": 1.0, "b": float("nan")})
    # The fits remove per-call overhead whole models do not pay: b = -a * offset < 0 is normal.
    assert check_correction({"kind": "linear", "a": 0.9, "b": -3.0, "depth": 0.0})["b"] == -3.0


def test_every_correction_the_fits_produce_passes_the_check():
    # Noisy calibration data of every kind: proportional (with and without offset), the
    # affine fit held above its floor, the per-block fit and its fallback (per_block 0).
    import numpy as np

    from hwnas.latency.table import check_correction
    from hwnas.latency.validation import fit_linear_correction

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 12))
        raw = rng.uniform(20.0, 2000.0, n)
        blocks = rng.integers(0, 23, n).astype(float)
        # Measurements loosely, sometimes inversely, related to the sums.
        measured = np.abs(rng.normal(1.0, 0.6, n)) * (raw if trial % 2 else raw[::-1]) + rng.uniform(1.0, 50.0, n)
        floor = float(raw.min()) * rng.uniform(0.1, 1.0)
        offset = float(rng.uniform(0.0, 2.0 * raw.min()))
        fits = [
            fit_linear_correction(raw, measured, intercept=False),
            fit_linear_correction(raw, measured, intercept=False, offset=offset),
            fit_linear_correction(raw, measured, floor=floor),
            fit_linear_correction(raw, measured, intercept=False, offset=offset, blocks=blocks),
        ]
        for fit in fits:
            checked = check_correction(fit)
            assert checked["a"] > 0 and checked.get("per_block", 0.0) >= 0
