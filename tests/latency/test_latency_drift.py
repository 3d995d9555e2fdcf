"""DriftCorrectedTarget: measurements scaled by a reference model timed around them."""

import pytest
from torch import nn

from hwnas.latency import DriftCorrectedTarget, Target, build_table, get_target, reference_model
from hwnas.latency.harness import TimingConfig, sample_statistics


class Costed(nn.Module):
    def __init__(self, cost_us):
        super().__init__()
        self.cost_us = cost_us

    def forward(self, x):
        return x


class ScriptedSpeedTarget(Target):
    """A target whose machine runs ``speed`` times slower than nominal; tests set the speed."""

    name = "scripted"

    def __init__(self):
        super().__init__()
        self.speed = 1.0
        self.calls = []

    def measure(self, module, input_shape, config):
        self.calls.append(module.cost_us)
        return sample_statistics([module.cost_us * self.speed] * 5)

    def call_overhead(self, input_shape, config):
        return self.measure(Costed(3.0), input_shape, config)


CONFIG = TimingConfig(min_samples=5, budget_s=0.01)


def make(baseline=None):
    inner = ScriptedSpeedTarget()
    return inner, DriftCorrectedTarget(inner, Costed(100.0), (3, 4, 4), baseline_us=baseline, reference_name="ref")


def test_speed_changes_cancel():
    inner, target = make()
    results = []
    for speed in (1.0, 1.0, 1.6, 1.6, 0.8):
        inner.speed = speed
        results.append(target.measure(Costed(40.0), (3, 4, 4), CONFIG).median_us)
    # Each block is bracketed by reference timings at its own speed, and the scale
    # is the reference time at the first measurement (speed 1): every result is 40.
    assert results[:2] == pytest.approx([40.0, 40.0])
    assert results[3] == pytest.approx(40.0)
    # At a speed change the bracket averages the two speeds: 64 / mean(100, 160) * 100.
    assert results[2] == pytest.approx(64.0 / 130.0 * 100.0)
    assert target.baseline_us == pytest.approx(100.0)
    assert len(target.factors) == 5
    assert target.factor_summary().endswith("over 5 measurements")
    # One reference timing between consecutive measurements, not two.
    assert inner.calls.count(100.0) == 6


def test_given_baseline_sets_the_scale():
    inner, target = make(baseline=50.0)
    inner.speed = 2.0
    assert target.measure(Costed(40.0), (3, 4, 4), CONFIG).median_us == pytest.approx(40.0 * 2.0 * 50.0 / 200.0)
    assert target.describe() == {"reference": "ref", "baseline_us": 50.0, "reference_budget_s": 0.05}


def test_call_overhead_is_the_inner_targets_scaled():
    inner, target = make(baseline=100.0)
    inner.speed = 2.0
    assert target.call_overhead((3, 4, 4), CONFIG).median_us == pytest.approx(3.0)
    assert 3.0 in inner.calls


def test_fingerprint_and_name_are_the_inner_targets():
    inner = get_target("eager", threads=1, batch=1)
    target = DriftCorrectedTarget(inner, nn.Identity(), (3, 4, 4))
    assert target.fingerprint() == inner.fingerprint()
    assert target.name == "eager"


@pytest.mark.parametrize("kwargs, message", [
    ({"reference_budget_s": 0}, "reference_budget_s"),
    ({"baseline_us": -1.0}, "baseline_us"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DriftCorrectedTarget(ScriptedSpeedTarget(), Costed(1.0), (3, 4, 4), **kwargs)


def test_builds_a_table_on_a_real_target(tiny_space, fast_timing, tmp_path):
    module, shape, key = reference_model(tiny_space)
    target = DriftCorrectedTarget(get_target("eager", threads=1, batch=1), module, shape,
                                  reference_budget_s=0.01, reference_name=key)
    table = build_table(tiny_space, target, tmp_path / "t.json", config=fast_timing, progress=False)
    assert table.complete
    assert all(e.value >= 0 for e in table.entries.values())
    assert all("drift x" in e.stats["stop_reason"] for e in table.entries.values() if e.stats)
    assert len(target.factors) == len(table.entries) + 1  # the entries and the call overhead


class ScheduledSpeedTarget(ScriptedSpeedTarget):
    """Speed set per call: ``schedule[i]`` for the i-th timing (reference or not)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = list(schedule)

    def measure(self, module, input_shape, config):
        self.speed = self.schedule[len(self.calls)]
        return super().measure(module, input_shape, config)


def test_a_long_measurement_is_cut_into_separately_corrected_pieces():
    # Calls: R P R P R P R P R (R: reference, P: a piece of the model's measurement).
    # The machine halves its speed from the third piece on.
    inner = ScheduledSpeedTarget([1.0] * 5 + [2.0] * 4)
    target = DriftCorrectedTarget(inner, Costed(100.0), (3, 4, 4), reference_name="ref", piece_s=0.3)
    result = target.measure(Costed(40.0), (3, 4, 4), TimingConfig(min_samples=5, budget_s=1.2))
    assert inner.calls == [100.0, 40.0] * 4 + [100.0]
    assert len(result.samples_us) == 20
    # Pieces 1, 2 and 4 sit inside one speed (scaled to exactly 40); piece 3 straddles
    # the change (80 * 100 / mean(100, 200)); the pooled median is the model's cost.
    assert result.median_us == pytest.approx(40.0)
    assert sorted(set(round(s, 3) for s in result.samples_us)) == pytest.approx([40.0, 53.333])
    assert "4 pieces" in result.stop_reason
    assert len(target.factors) == 1  # one factor (the pieces' median) per measurement
    # A short budget is one bracketed measurement, as before.
    inner2 = ScriptedSpeedTarget()
    short = DriftCorrectedTarget(inner2, Costed(100.0), (3, 4, 4), piece_s=0.3)
    short.measure(Costed(40.0), (3, 4, 4), TimingConfig(min_samples=5, budget_s=0.4))
    assert inner2.calls == [100.0, 40.0, 100.0]


class WarmupRecordingTarget(ScriptedSpeedTarget):
    """Records each timing's (cost, warm-up calls, budget)."""

    def __init__(self):
        super().__init__()
        self.configs = []

    def measure(self, module, input_shape, config):
        self.configs.append((module.cost_us, config.warmup_iters, config.budget_s))
        return super().measure(module, input_shape, config)


def test_only_the_first_timings_warm_up_fully():
    # R P R P R P R: the first reference and the first piece warm up as configured,
    # later ones with one call (the caches the other workload evicted come back).
    inner = WarmupRecordingTarget()
    target = DriftCorrectedTarget(inner, Costed(100.0), (3, 4, 4), piece_s=0.1, reference_budget_s=0.05)
    target.measure(Costed(40.0), (3, 4, 4), TimingConfig(min_samples=5, warmup_iters=10, budget_s=0.3))
    assert inner.configs == [(100.0, 3, 0.05), (40.0, 10, pytest.approx(0.1)), (100.0, 1, 0.05),
                             (40.0, 1, pytest.approx(0.1)), (100.0, 1, 0.05), (40.0, 1, pytest.approx(0.1)),
                             (100.0, 1, 0.05)]


def test_default_pieces_are_short():
    # A 3 s measurement is cut into 30 pieces of 0.1 s (the speed changes within a second).
    inner = ScriptedSpeedTarget()
    target = DriftCorrectedTarget(inner, Costed(100.0), (3, 4, 4))
    result = target.measure(Costed(40.0), (3, 4, 4), TimingConfig(min_samples=5, budget_s=3.0))
    assert inner.calls.count(40.0) == 30 and inner.calls.count(100.0) == 31
    assert result.stop_reason.startswith("30 pieces of 0.10 s")


def test_first_reference_warms_up_fully_with_a_stored_baseline():
    # A validation in another process reuses the table's baseline; its first reference
    # timing still starts cold, so it warms up as the first one of a build does.
    inner = WarmupRecordingTarget()
    target = DriftCorrectedTarget(inner, Costed(100.0), (3, 4, 4), baseline_us=50.0, reference_budget_s=0.05)
    target.measure(Costed(40.0), (3, 4, 4), TimingConfig(min_samples=5, warmup_iters=10, budget_s=0.01))
    assert inner.configs[0] == (100.0, 3, 0.05) and inner.configs[-1] == (100.0, 1, 0.05)


def test_torchscript_traces_a_module_timed_again_and_again_once(monkeypatch, fast_timing, tiny_space):
    # Each trace keeps compiled code alive: re-tracing the drift reference around every
    # measurement grew a torchscript search by ~8 MB per trace.
    import torch

    traces = []
    real_trace = torch.jit.trace
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: traces.append(1) or real_trace(*a, **k))
    target = get_target("torchscript")
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    timer = target.prepared(model, (1, 8, 8))
    results = [timer(fast_timing) for _ in range(3)]
    assert len(traces) == 1 and all(r.median_us > 0 for r in results)
    reference, shape, _ = reference_model(tiny_space)
    drift = DriftCorrectedTarget(target, reference, shape, reference_budget_s=0.01, piece_s=0.01)
    drift.measure(model, (1, 8, 8), fast_timing)  # a 0.03 s budget: 3 pieces, each bracketed
    # The reference and the measured model, each traced once, however many pieces.
    assert len(traces) == 3
