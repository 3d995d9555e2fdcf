import pytest

from hwnas.latency.energy import (
    RaplUnavailableError,
    energy_table_from_measurements,
    measure_energy_rapl,
    rapl_status,
)
from hwnas.latency.table import LatencyTable


def test_missing_rapl_is_explained(tmp_path):
    ok, reason = rapl_status(str(tmp_path))
    assert not ok and "virtual machine" in reason
    with pytest.raises(RaplUnavailableError, match="no RAPL energy counters"):
        measure_energy_rapl(lambda: None, root=str(tmp_path))


def test_this_machine_says_clearly_whether_it_has_rapl():
    ok, reason = rapl_status()
    assert isinstance(ok, bool) and reason
    if not ok:
        with pytest.raises(RaplUnavailableError):
            measure_energy_rapl(lambda: None, min_duration_s=0.01)


def test_rapl_reading_with_wraparound(tmp_path):
    domain = tmp_path / "intel-rapl:0"
    domain.mkdir()
    (domain / "name").write_text("package-0\n")
    (domain / "max_energy_range_uj").write_text("1000000\n")
    counter = domain / "energy_uj"
    counter.write_text("999000\n")
    calls = []

    def work():
        calls.append(1)
        # The counter wraps: 999000 -> 1000000 (=0) -> 4000 uJ; 5000 uJ in total.
        counter.write_text("4000\n")

    out = measure_energy_rapl(work, min_duration_s=0.01, root=str(tmp_path))
    assert out["energy_mj"] == pytest.approx(5.0 / len(calls))
    assert out["calls"] == len(calls)


def test_energy_table_from_user_values(tiny_space, tmp_path):
    keys = LatencyTable.for_space(tiny_space, {}).required_keys()
    values = {k: float(i + 1) for i, k in enumerate(keys)}
    table = energy_table_from_measurements(tiny_space, values, {"target": "phone", "meter": "monsoon"})
    assert table.metric == "energy" and table.unit == "mJ" and table.complete
    arch = tiny_space.make_arch(["k3_e1", "skip", "k5_e3", "skip"])
    expected = values[table.stem_key] + values[table.head_key] + sum(
        values[table.layers[i][c]] for i, c in enumerate(arch.choices))
    assert table.predict(arch, correction="none") == pytest.approx(expected)
    table.save(tmp_path / "e.json")
    assert LatencyTable.load(tmp_path / "e.json").metric == "energy"
    with pytest.raises(ValueError, match="no energy value"):
        energy_table_from_measurements(tiny_space, {keys[0]: 1.0}, {"target": "phone"})
    with pytest.raises(ValueError, match="keys the space does not have"):
        energy_table_from_measurements(tiny_space, {"bogus|c1-1|s1|1x1": 1.0}, {"target": "phone"})
    latency = LatencyTable.for_space(tiny_space, {"target": "phone", "meter": "monsoon"})
    with pytest.raises(ValueError, match="measure different things"):
        latency.check_compatible(table)
