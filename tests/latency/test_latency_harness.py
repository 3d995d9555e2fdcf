import math
import os
import random

import numpy as np
import pytest
import torch
from scipy.stats import binom

from hwnas.latency import harness
from hwnas.latency.harness import TimingConfig, median_ci_indices, sample_statistics, time_callable
from hwnas.latency.targets import get_target


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    samples = list(rng.lognormal(3.0, 0.4, size=101))
    r = sample_statistics(samples)
    assert r.median_us == pytest.approx(np.median(samples), rel=1e-9)
    for q, got in ((10, r.p10_us), (25, r.p25_us), (75, r.p75_us), (90, r.p90_us)):
        assert got == pytest.approx(np.percentile(samples, q), rel=1e-9)
    assert r.iqr_us == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25), rel=1e-9)
    assert r.cv == pytest.approx(np.std(samples, ddof=1) / np.mean(samples), rel=1e-9)
    lo, hi = median_ci_indices(101)
    ordered = sorted(samples)
    assert r.ci_lo_us == pytest.approx(ordered[lo]) and r.ci_hi_us == pytest.approx(ordered[hi])
    assert r.rel_ci == pytest.approx((ordered[hi] - ordered[lo]) / np.median(samples))


@pytest.mark.parametrize("n", [6, 9, 10, 30, 101, 1000])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_median_ci_is_the_narrowest_with_enough_coverage(n, confidence):
    lo, hi = median_ci_indices(n, confidence)
    if lo < 0:
        # Even the full range [min, max] has miss probability 2 * 0.5**n > 1 - confidence.
        assert 2 * 0.5**n > 1 - confidence
        return
    assert hi == n - 1 - lo
    coverage = 1 - 2 * binom.cdf(lo, n, 0.5)  # independent reference: scipy's binomial
    assert coverage >= confidence - 1e-12
    assert 1 - 2 * binom.cdf(lo + 1, n, 0.5) < confidence  # one step narrower is not enough


def test_too_few_samples_give_infinite_ci():
    assert median_ci_indices(5, 0.95) == (-1, -1)
    assert math.isinf(sample_statistics([1.0, 2.0, 3.0]).rel_ci)


def test_call_count_matches_warmup_and_samples():
    calls = []
    r = time_callable(lambda: calls.append(1), warmup_iters=7, min_samples=5, max_samples=5, iters_per_sample=3,
                      target_rel_ci=1e-9, budget_s=10)
    assert r.stop_reason == "max_samples"
    assert len(r.samples_us) == 5 and r.iters_per_sample == 3 and r.warmup_iters == 7
    assert len(calls) == 7 + 5 * 3


def test_budget_stops_the_loop():
    # The body's duration is drawn at random over a 40x range, so the median's confidence
    # interval stays wide and only the budget can stop the loop. (A fixed body can give
    # samples identical to the clock's resolution, hence a zero-width interval that
    # meets any target.)
    rng = random.Random(0)
    r = time_callable(lambda: sum(range(rng.randint(50, 2000))), min_samples=3, target_rel_ci=1e-9,
                      budget_s=0.02, iters_per_sample=1)
    assert r.stop_reason == "budget" and not r.converged
    assert r.elapsed_s < 0.5


def test_converges_on_a_steady_body():
    # A generous budget: the loop stops as soon as it converges (milliseconds on an idle
    # machine), and a loaded machine can need longer to gather steady samples.
    r = time_callable(lambda: None, target_rel_ci=0.5, budget_s=10.0)
    assert r.stop_reason == "converged" and r.converged and r.rel_ci <= 0.5


def test_thread_count_is_set_and_restored():
    before = torch.get_num_threads()
    seen = []
    time_callable(lambda: seen.append(torch.get_num_threads()), num_threads=1, min_samples=3, budget_s=0.01)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def test_more_threads_than_the_machine_has_is_refused_before_the_pool_changes():
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="exceeds the .* hardware threads"):
        time_callable(lambda: None, num_threads=os.cpu_count() + 1, min_samples=3, budget_s=0.01)
    with pytest.raises(ValueError, match="between 1 and the .* CPU cores available here, got 99999"):
        get_target("eager", threads=99999)
    assert torch.get_num_threads() == before


def test_exceptions_propagate_and_threads_restored():
    before = torch.get_num_threads()
    with pytest.raises(ZeroDivisionError):
        time_callable(lambda: 1 / 0, num_threads=1)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("field,value", [("min_samples", 0), ("target_rel_ci", 0.0), ("confidence", 1.0), ("budget_s", -1)])
def test_bad_config_is_a_value_error(field, value):
    with pytest.raises(ValueError, match=field):
        TimingConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown timing option"):
        time_callable(lambda: None, not_an_option=1)


def test_flush_runs_one_call_per_sample():
    r = time_callable(lambda: None, flush_bytes=1 << 20, min_samples=4, max_samples=4, budget_s=5)
    assert r.iters_per_sample == 1 and len(r.samples_us) == 4


def test_harness_overhead_below_one_microsecond():
    overhead = harness.harness_overhead()
    assert overhead.median_us < 1.0
    assert harness.clock_pair_cost_ns() > 0


def test_time_module_and_operator_run_native():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    r = harness.time_module(conv, [x], min_samples=5, budget_s=0.05)
    assert r.method == "script" and r.median_us > 0 and len(r.samples_us) >= 3
    a, b = torch.randn(64), torch.randn(64)
    r = harness.time_operator("aten::add.Tensor", [a, b], min_samples=5, budget_s=0.05)
    assert r.method == "operator" and r.median_us > 0
    with pytest.raises(RuntimeError):
        harness.time_operator("aten::no_such_op", [a], budget_s=0.01)
    with pytest.raises(ValueError, match="namespace::op"):
        harness.time_operator("add", [a])


def test_time_operator_runs_hwnas_weighted_sum():
    branches = [torch.randn(2, 8) for _ in range(3)]
    weights = torch.softmax(torch.randn(3), 0)
    r = harness.time_operator("hwnas::weighted_sum", [branches, weights], min_samples=5, budget_s=0.05)
    assert r.median_us > 0


def test_thread_cpu_clock_ignores_time_spent_waiting():
    import time

    wall = time_callable(lambda: time.sleep(0.002), min_samples=3, max_samples=3, iters_per_sample=1, budget_s=5)
    cpu = time_callable(lambda: time.sleep(0.002), min_samples=3, max_samples=3, iters_per_sample=1, budget_s=5,
                        clock="thread_cpu")
    assert wall.median_us >= 2000
    assert cpu.median_us < 500  # sleeping uses no CPU
    with pytest.raises(ValueError, match="clock"):
        TimingConfig(clock="rdtsc")


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("entry", ["builtin_callable", "operator"])
def test_ctrl_c_stops_loops_that_run_no_python_code(entry):
    # A builtin callable never enters the bytecode loop, and time_operator runs with the
    # GIL released: neither lets Python run a signal handler, so Ctrl-C used to wait for
    # the whole warm-up and budget. The body counts its own calls in `x`, so the test
    # can tell "interrupted mid-run" (count below the warm-up) from "interrupted after".
    import functools
    import signal

    warmup = 2_000_000
    x = torch.zeros(1, dtype=torch.float64)
    seen = []

    def handler(signum, frame):
        seen.append(int(x.item()))
        raise _Interrupted()

    before_threads = torch.get_num_threads()
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # the warm-up lasts well over a second
        opts = dict(warmup_iters=warmup, iters_per_sample=1, min_samples=3, max_samples=3, budget_s=0.01, num_threads=1)
        with pytest.raises(_Interrupted):
            if entry == "operator":
                harness.time_operator("aten::add_.Tensor", [x, torch.ones(1, dtype=torch.float64)], **opts)
            else:
                time_callable(functools.partial(x.add_, 1.0), **opts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(seen) == 1 and 0 < seen[0] < warmup  # handled inside the warm-up, not after it
    assert int(x.item()) == seen[0]  # no call after the handler raised
    assert torch.get_num_threads() == before_threads


def test_time_module_leaves_the_callers_train_eval_flags_alone():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(4))
    model.train()
    model[2].eval()  # mixed on purpose: restoring with model.train() would get this wrong
    flags = [m.training for m in model.modules()]
    r = harness.time_module(model, [torch.randn(2, 4)], warmup_iters=1, min_samples=3, max_samples=3, budget_s=0.01)
    assert r.method == "script"
    assert [m.training for m in model.modules()] == flags


@pytest.mark.parametrize("field", ["warmup_s", "min_sample_s"])
def test_infinite_durations_are_refused(field):
    with pytest.raises(ValueError, match=field):
        TimingConfig(**{field: math.inf})
    # The native side refuses it too, before the first call (an infinite warm-up never
    # ends); the body stops the run with another error if the config got through.
    calls = []

    def body():
        calls.append(1)
        if len(calls) > 1000:
            raise RuntimeError("the config was accepted")

    with pytest.raises(ValueError, match=field):
        harness._native.time_python(body, {field: math.inf, "budget_s": 0.01, "iters_per_sample": 0})
    assert calls == []


@pytest.mark.parametrize("field,value", [("num_threads", 1.0), ("warmup_iters", 2.5), ("budget_s", "1")])
def test_wrongly_typed_options_name_the_field(field, value):
    with pytest.raises(TypeError, match=field):
        TimingConfig(**{field: value})


def test_sample_statistics_refuses_non_finite_samples_and_bad_confidence():
    good = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            sample_statistics(good + [bad])
        with pytest.raises(ValueError, match="finite"):
            harness._native.statistics([g * 1e3 for g in good] + [bad], 0.95)
    for confidence in (1.5, 0.0, math.nan):
        with pytest.raises(ValueError, match="confidence"):
            sample_statistics(good, confidence)
        with pytest.raises(ValueError, match="confidence"):
            harness._native.statistics(good, confidence)


def test_stop_reason_says_converged_when_the_last_allowed_sample_converges():
    target = 10.0
    r = time_callable(lambda: None, min_samples=20, max_samples=20, target_rel_ci=target, budget_s=30)
    assert len(r.samples_us) == 20
    ordered = sorted(r.samples_us)
    lo = max(k for k in range(10) if 2 * binom.cdf(k, 20, 0.5) <= 0.05)  # independent reference
    rel_ci = (ordered[19 - lo] - ordered[lo]) / np.median(r.samples_us)
    assert r.rel_ci == pytest.approx(rel_ci)
    assert r.converged == (rel_ci <= target)
    assert r.stop_reason == ("converged" if rel_ci <= target else "max_samples")


def test_an_infinite_interval_never_counts_as_converged():
    # 3 samples cannot give a 95% interval of the median (rel_ci = inf); a target of inf
    # used to call that converged.
    r = time_callable(lambda: None, min_samples=3, max_samples=3, target_rel_ci=math.inf, budget_s=30)
    assert math.isinf(r.rel_ci)
    assert not r.converged and r.stop_reason == "max_samples"


def test_a_run_that_converges_on_the_sample_that_spends_its_budget_says_so():
    # min_samples is never reached: the budget ends the run after thousands of samples,
    # whose interval is far inside the target; it used to say "budget" and converged=True.
    target = 10.0
    r = time_callable(lambda: None, iters_per_sample=1, min_samples=10**6, max_samples=10**6,
                      target_rel_ci=target, budget_s=0.05)
    n = len(r.samples_us)
    assert 6 <= n < 10**6
    ordered = sorted(r.samples_us)
    lo = max(k for k in range(n // 2) if 2 * binom.cdf(k, n, 0.5) <= 0.05)  # independent reference
    rel_ci = (ordered[n - 1 - lo] - ordered[lo]) / np.median(r.samples_us)
    assert r.rel_ci == pytest.approx(rel_ci)
    assert r.converged == (rel_ci <= target)
    assert r.stop_reason == ("converged" if rel_ci <= target else "budget")
