"""hwnas.layers.MixedLayer: every mode, fused against the eager reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwnas.layers import MixedLayer


class CountingConv(nn.Module):
    """A small conv candidate that counts its forward calls."""

    def __init__(self, channels, kernel):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.relu(self.conv(x))


class MustNotRun(nn.Module):
    def forward(self, x):
        raise AssertionError("an unsampled candidate was computed")


def make_layer(mode="gumbel", n=4, channels=3, **kwargs):
    candidates = [CountingConv(channels, 1 + 2 * (i % 3)) for i in range(n)]
    layer = MixedLayer(candidates, mode=mode, **kwargs)
    with torch.no_grad():
        layer.arch_logits.copy_(torch.randn(n))
    return layer


def run_step(layer, x, seed, grad_out):
    """Forward and backward under a fixed seed; returns output and every gradient."""
    layer.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = layer(x)
    loss = (out * grad_out).sum()
    if layer.expected_latency is not None:
        loss = loss + 0.1 * layer.expected_latency
    loss.backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
    return out.detach(), layer.last_weights.detach().clone(), grads


@pytest.mark.parametrize("mode", ["softmax", "gumbel", "gumbel_hard", "single_path", "fixed"])
def test_fused_matches_eager_reference(mode):
    layer = make_layer(mode, latencies=[1.0, 2.0, 3.0, 4.0], fixed_index=2, temperature=0.7)
    x = torch.randn(2, 3, 6, 6)
    grad_out = torch.randn(2, 3, 6, 6)
    fused = run_step(layer, x, 123, grad_out)
    layer.fused = False
    eager = run_step(layer, x, 123, grad_out)
    torch.testing.assert_close(fused[0], eager[0])
    torch.testing.assert_close(fused[1], eager[1])
    assert fused[2].keys() == eager[2].keys()
    for name in fused[2]:
        torch.testing.assert_close(fused[2][name], eager[2][name], atol=1e-5, rtol=1e-5, msg=name)
    if mode in ("softmax", "gumbel", "gumbel_hard"):
        assert fused[2]["arch_logits"].abs().sum() > 0  # the architecture is being learnt


def test_soft_modes_compute_the_mixture():
    layer = make_layer("softmax")
    x = torch.randn(2, 3, 5, 5)
    out = layer(x)
    probs = torch.softmax(layer.arch_logits, 0)
    expected = sum(p * op(x) for p, op in zip(probs, layer.candidates))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.last_weights, probs)


def test_gumbel_weights_follow_seed_and_temperature():
    layer = make_layer("gumbel", temperature=1.0)
    x = torch.randn(1, 3, 4, 4)
    torch.manual_seed(7)
    layer(x)
    w1 = layer.last_weights.detach()
    torch.manual_seed(7)
    gumbels = -torch.empty(4).exponential_().log()
    torch.testing.assert_close(w1, torch.softmax(layer.arch_logits.detach() + gumbels, 0))
    layer.temperature = 0.05  # sharper: close to one-hot
    torch.manual_seed(7)
    layer(x)
    assert layer.last_weights.max() > w1.max()


def test_gumbel_hard_is_one_hot_and_runs_one_branch():
    layer = make_layer("gumbel_hard", n=5, temperature=2.0)
    x = torch.randn(2, 3, 5, 5)
    seen = set()
    for seed in range(30):
        for op in layer.candidates:
            op.calls = 0
        torch.manual_seed(seed)
        out = layer(x)
        weights = layer.last_weights.detach()
        k = int(weights.argmax())
        assert torch.equal(weights, nn.functional.one_hot(torch.tensor(k), 5).float())
        assert [op.calls for op in layer.candidates] == [int(i == k) for i in range(5)]
        assert torch.equal(out, layer.candidates[k](x))  # exactly the sampled branch
        seen.add(k)
    assert len(seen) > 1  # it samples, it does not always pick the argmax


def test_gumbel_hard_gradient_needs_only_the_sampled_branch():
    layer = make_layer("gumbel_hard", n=3, temperature=1.0)
    torch.manual_seed(5)
    soft_probe = torch.softmax(layer.arch_logits.detach() - torch.empty(3).exponential_().log(), 0)
    k = int(soft_probe.argmax())
    for i in range(3):
        if i != k:
            layer.candidates[i] = MustNotRun()
    x = torch.randn(2, 3, 4, 4)
    grad_out = torch.randn(2, 3, 4, 4)
    torch.manual_seed(5)
    out = layer(x)
    (out * grad_out).sum().backward()
    # Straight-through through branch k only: dL/dlogits = <g, op_k(x)> * dsoft_k/dlogits.
    logits = layer.arch_logits.detach().clone().requires_grad_()
    torch.manual_seed(5)
    soft = torch.softmax(logits - torch.empty(3).exponential_().log(), 0)
    with torch.no_grad():
        inner = (grad_out * layer.candidates[k](x)).sum()
    (expected,) = torch.autograd.grad(soft[k] * inner, logits)
    torch.testing.assert_close(layer.arch_logits.grad, expected)


def test_single_path_runs_exactly_one_uniform_branch():
    layer = make_layer("single_path", n=4)
    x = torch.randn(1, 3, 4, 4)
    counts = [0] * 4
    for seed in range(200):
        for op in layer.candidates:
            op.calls = 0
        torch.manual_seed(seed)
        out = layer(x)
        calls = [op.calls for op in layer.candidates]
        assert sum(calls) == 1
        k = calls.index(1)
        assert torch.equal(out, layer.candidates[k](x))
        counts[k] += 1
    assert min(counts) > 25  # uniform: each of 4 expects 50 of 200
    out.sum().backward()
    assert layer.arch_logits.grad is None  # SPOS does not learn logits


def test_fixed_mode_and_switching_modes():
    layer = make_layer("fixed", fixed_index=1)
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(layer(x), layer.candidates[1](x))
    layer.fixed_index = 3
    assert torch.equal(layer(x), layer.candidates[3](x))
    layer.mode = "softmax"
    assert layer(x).shape == x.shape and layer.last_weights.min() > 0
    layer.fixed_index = None
    layer.mode = "fixed"
    with pytest.raises(ValueError, match="fixed_index"):
        layer(x)


def test_expected_latency_is_differentiable():
    lat = torch.tensor([3.0, 1.0, 4.0, 1.5])
    layer = make_layer("softmax", latencies=lat.tolist())
    layer(torch.randn(1, 3, 4, 4))
    probs = torch.softmax(layer.arch_logits, 0)
    torch.testing.assert_close(layer.expected_latency, (probs * lat).sum())
    (got,) = torch.autograd.grad(layer.expected_latency, layer.arch_logits)
    logits = layer.arch_logits.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad((torch.softmax(logits, 0) * lat).sum(), logits)
    torch.testing.assert_close(got, want)


def test_expected_latency_in_hard_mode_is_sampled_latency_with_gradient():
    layer = make_layer("gumbel_hard", latencies=[3.0, 1.0, 4.0, 1.5])
    layer(torch.randn(1, 3, 4, 4))
    k = int(layer.last_weights.argmax())
    assert layer.expected_latency.item() == [3.0, 1.0, 4.0, 1.5][k]
    (grad,) = torch.autograd.grad(layer.expected_latency, layer.arch_logits)
    assert grad.abs().sum() > 0


def test_no_latencies_means_none():
    layer = make_layer("softmax")
    layer(torch.randn(1, 3, 4, 4))
    assert layer.expected_latency is None
    with pytest.raises(ValueError, match="no latencies"):
        layer.latency_of(layer.last_weights)


def test_fused_saves_no_more_for_backward_than_eager():
    layer = make_layer("gumbel", n=4)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)

    def saved_bytes():
        total = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t: total.append(t.numel() * t.element_size()) or t, lambda t: t
        ):
            torch.manual_seed(0)
            layer(x)
        return sum(total)

    layer.fused = True
    fused = saved_bytes()
    layer.fused = False
    eager = saved_bytes()
    assert fused <= eager


def test_bfloat16_candidates():
    layer = make_layer("gumbel").to(torch.bfloat16)
    x = torch.randn(2, 3, 4, 4, dtype=torch.bfloat16)
    torch.manual_seed(1)
    out = layer(x)
    layer.fused = False
    torch.manual_seed(1)
    torch.testing.assert_close(out, layer(x), atol=2e-2, rtol=2e-2)


def test_extra_repr_names_settings():
    text = repr(make_layer("gumbel_hard", temperature=0.5, latencies=[1, 2, 3, 4]))
    assert "num_candidates=4" in text and "mode='gumbel_hard'" in text
    assert "temperature=0.5" in text and "fused=True" in text and "latencies=set" in text


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: MixedLayer([]), "at least one candidate"),
        (lambda: MixedLayer([nn.Identity(), lambda x: x]), "candidate 1 must be an nn.Module"),
        (lambda: MixedLayer([nn.Identity()], mode="darts"), "unknown search mode 'darts'"),
        (lambda: MixedLayer([nn.Identity()], temperature=0.0), "temperature must be positive"),
        (lambda: MixedLayer([nn.Identity()], temperature=float("nan")), "temperature must be positive"),
        (lambda: MixedLayer([nn.Identity()] * 2, fixed_index=2), r"fixed_index must be in \[0, 2\)"),
        (lambda: MixedLayer([nn.Identity()] * 2, fixed_index=1.7), "fixed_index must be an integer, got 1.7"),
        (lambda: MixedLayer([nn.Identity()] * 2, fixed_index=True), "fixed_index must be an integer, got True"),
        (lambda: MixedLayer([nn.Identity()] * 2, latencies=[1.0]), "latencies has 1 entries for 2"),
        (lambda: MixedLayer([nn.Identity()] * 2, latencies=[1.0, float("inf")]), "finite"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_setting_a_bad_mode_later_raises():
    layer = make_layer()
    with pytest.raises(ValueError, match="'hard'"):
        layer.mode = "hard"
    assert layer.mode == "gumbel"


def test_a_layer_after_a_forward_copies_and_pickles_with_its_values_detached():
    import copy
    import io

    layer = MixedLayer([nn.Conv2d(4, 4, 3, padding=1), nn.Identity()], mode="softmax", latencies=[1.0, 3.0])
    layer(torch.randn(2, 4, 5, 5)).sum().backward()
    assert layer.expected_latency.grad_fn is not None  # the original keeps its graph
    copied = copy.deepcopy(nn.Sequential(layer))[0]
    torch.testing.assert_close(copied.last_weights, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(copied.expected_latency, torch.tensor(2.0))  # (1 + 3) / 2
    assert copied.expected_latency.grad_fn is None and copied.candidates[0].weight is not layer.candidates[0].weight
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded.expected_latency, torch.tensor(2.0))


def test_sampling_refuses_a_temperature_that_would_give_nan_weights():
    from hwnas.layers import sample_mixture

    with pytest.raises(ValueError, match="temperature must be positive"):
        sample_mixture(torch.zeros(3), "gumbel", 0.0)


@pytest.mark.parametrize("latencies", [[-1.0, 3.0], [2.0, -1e-6]])
def test_negative_latencies_are_refused(latencies):
    # Latencies (and energies) are costs: a negative one would reward a search for choosing that block.
    with pytest.raises(ValueError, match=r"latencies must be >= 0 .*got \[.*-"):
        MixedLayer([nn.Identity()] * 2, latencies=latencies)
    layer = MixedLayer([nn.Identity()] * 2, latencies=[1.0, 2.0])
    with pytest.raises(ValueError, match="latencies must be >= 0"):
        layer.set_latencies(latencies)
    torch.testing.assert_close(layer.latencies, torch.tensor([1.0, 2.0]))  # unchanged
    # A zero cost (a skip) is fine.
    MixedLayer([nn.Identity()] * 2, latencies=[0.0, 3.0])
    with pytest.raises(ValueError, match="latencies must be 2 numbers"):
        MixedLayer([nn.Identity()] * 2, latencies=["fast", "slow"])


def test_under_autocast_branches_of_different_dtypes_mix_in_the_widest_as_eager_does():
    torch.manual_seed(0)
    candidates = [nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Identity()]
    fused = MixedLayer(candidates, mode="softmax")
    eager = MixedLayer(candidates, mode="softmax", fused=False)
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = fused(x), eager(x)
        # The independent formula: each branch as autocast returns it, summed in float32.
        weights = torch.softmax(fused.arch_logits, -1)
        manual = sum(w * op(x).float() for w, op in zip(weights, candidates))
    assert out.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out, manual)


def test_expected_latency_of_a_half_layer_does_not_overflow():
    # Tens of thousands of microseconds pass float16's largest value (65504) in a sum.
    layer = MixedLayer([nn.Identity(), nn.Identity()], mode="softmax", latencies=[50000.0, 70000.0]).half()
    layer(torch.randn(1, 2, 2, 2, dtype=torch.float16))
    assert layer.expected_latency.dtype == torch.float32 and layer.latencies.dtype == torch.float32
    assert float(layer.expected_latency.detach()) == pytest.approx(60000.0, rel=1e-3)
    (1e-3 * layer.expected_latency).backward()
    # d/dlogit_0 of (m_0 * 50 + m_1 * 70) at m = (1/2, 1/2): m_0 * (50 - 60) = -5, and +5.
    torch.testing.assert_close(layer.arch_logits.grad.float(), torch.tensor([-5.0, 5.0]), rtol=1e-2, atol=1e-2)
