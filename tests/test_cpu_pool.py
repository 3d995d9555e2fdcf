"""The CPU buffer pool behind the fused ops' outputs (csrc/ops/cpu/buffer_pool.cpp)."""

import os
import subprocess
import sys

import pytest
import torch

from hwnas.ops import channel_mask, cpu_pool_stats, release_cpu_pool, set_cpu_pool_limit, weighted_sum

# 64 x 32 x 32 float32 = 256 KiB: above the 128 KiB below which the pool is not used.
SHAPE = (2, 32, 32, 32)


@pytest.fixture(autouse=True)
def default_pool():
    set_cpu_pool_limit(1024)
    yield
    set_cpu_pool_limit(1024)


def _branches(n=3):
    return [torch.randn(SHAPE) for _ in range(n)]


def test_freed_output_memory_is_reused():
    xs, w = _branches(), torch.tensor([0.2, 0.3, 0.5])
    out = weighted_sum(xs, w)
    ptr = out.data_ptr()
    del out
    before = cpu_pool_stats()
    assert before["cached_bytes"] >= 256 * 1024
    again = weighted_sum(xs, w)
    after = cpu_pool_stats()
    assert again.data_ptr() == ptr
    assert after["hits"] == before["hits"] + 1
    torch.testing.assert_close(again, sum(wi * x for wi, x in zip(w, xs)))


def test_reused_memory_gives_correct_gradients():
    xs = [x.requires_grad_() for x in _branches()]
    w = torch.tensor([0.2, 0.3, 0.5], requires_grad=True)
    grad = torch.randn(SHAPE)
    for _ in range(3):  # later rounds run on recycled blocks holding old values
        for t in [*xs, w]:
            t.grad = None
        weighted_sum(xs, w).backward(grad)
        for wi, x in zip(w.detach(), xs):
            torch.testing.assert_close(x.grad, wi * grad)
        torch.testing.assert_close(w.grad, torch.stack([(grad * x.detach()).sum() for x in xs]))


def test_release_empties_the_cache_and_live_tensors_survive():
    xs, w = _branches(), torch.tensor([1.0, 0.0, 2.0])
    keep = weighted_sum(xs, w)
    drop = weighted_sum(xs, w)
    del drop
    assert cpu_pool_stats()["cached_bytes"] > 0
    release_cpu_pool()
    assert cpu_pool_stats()["cached_bytes"] == 0
    torch.testing.assert_close(keep, xs[0] + 2 * xs[2])
    del keep  # goes back to the (now empty) cache without trouble
    assert cpu_pool_stats()["cached_bytes"] >= 256 * 1024


def test_limit_zero_turns_pooling_off():
    set_cpu_pool_limit(0)
    stats = cpu_pool_stats()
    assert stats["limit_bytes"] == 0 and stats["cached_bytes"] == 0
    xs, w = _branches(), torch.tensor([0.2, 0.3, 0.5])
    for _ in range(2):
        out = weighted_sum(xs, w)
        del out
    after = cpu_pool_stats()
    assert after["hits"] == stats["hits"] and after["misses"] == stats["misses"]
    assert after["cached_bytes"] == 0


def test_cache_never_exceeds_its_limit():
    set_cpu_pool_limit(0.5)  # 512 KiB: room for one 256 KiB output (plus header), not three
    xs, w = _branches(), torch.tensor([0.2, 0.3, 0.5])
    outs = [weighted_sum(xs, w) for _ in range(3)]
    del outs
    assert 0 < cpu_pool_stats()["cached_bytes"] <= 512 * 1024


def test_pooled_tensors_are_ordinary_tensors():
    x = torch.randn(SHAPE).to(memory_format=torch.channels_last)
    gates = torch.tensor([0.25, 0.75])
    out = channel_mask(x, gates, [8, 32])
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = x * torch.cat([torch.ones(8), torch.full((24,), 0.75)]).view(1, 32, 1, 1)
    expected[:, :8] = x[:, :8]
    torch.testing.assert_close(out, expected)
    out.resize_(4 * out.numel())  # storage from the pool can grow like any other
    out.add_(1)
    assert out.shape == (4 * x.numel(),)


@pytest.mark.parametrize("megabytes", [-1, float("nan"), float("inf")])
def test_a_limit_that_is_not_a_finite_non_negative_number_is_rejected(megabytes):
    with pytest.raises(ValueError, match="megabytes must be a finite number >= 0"):
        set_cpu_pool_limit(megabytes)


def test_environment_variable_sets_the_limit():
    code = "import hwnas; print(hwnas.ops.cpu_pool_stats()['limit_bytes'])"
    for value, expected in (("0", 0), ("3", 3 << 20)):
        env = dict(os.environ, HWNAS_CPU_POOL_MB=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert int(out.stdout.strip()) == expected and "HWNAS_CPU_POOL_MB" not in out.stderr
    # A value the pool cannot read is named, with the cap it runs with instead.
    for value, expected in (("abc", 1024), ("-5", 0)):
        env = dict(os.environ, HWNAS_CPU_POOL_MB=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert int(out.stdout.strip()) == expected << 20
        assert f"HWNAS_CPU_POOL_MB='{value}' is not a whole number of MiB >= 0; the CPU buffer pool keeps at most " \
               f"{expected} MiB" in out.stderr


def test_small_outputs_bypass_the_pool():
    before = cpu_pool_stats()
    out = weighted_sum([torch.randn(4, 4), torch.randn(4, 4)], torch.tensor([0.5, 0.5]))
    del out
    after = cpu_pool_stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
