import json

import pytest
import torch

from hwnas.latency.build import build_table
from hwnas.latency.table import LatencyTable, entry_key
from hwnas.latency.targets import get_target


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
