"""A 9-candidate FBNet MixedLayer, forward + backward: fused mixing against eager.

Contenders on one layer (the same candidate modules, so the convolutions are identical):

- fused gumbel: ``MixedLayer(mode="gumbel")`` mixing with ``hwnas.ops.weighted_sum``;
- eager gumbel: the same layer with ``fused=False``: ``sum_i m_i * op_i(x)``;
- fused gumbel_hard: a one-hot sample, only the sampled candidate computed.

Targets: fused >= 1.2x faster than eager with no more bytes saved for backward;
gumbel_hard >= 3x faster than soft gumbel.

A gumbel_hard step costs what its sampled candidate costs, from a skip to a k5_e6
block, so one sampled step per round says little. Its time and bytes saved for
backward are the expectation over the sample: every round times one hard step of each
candidate (a seed that samples it) and weighs them by the probability that the Gumbel
argmax picks it, ``softmax(arch_logits)`` (uniform for this fresh layer).

The fused and eager layers differ only in the mixing, so the script also times the
mixing alone (the nine candidate outputs as leaf tensors, forward + backward of the
mixture and of the softmax that makes its weights) and prints the layer speed-up that
would follow if the fused mixing cost nothing: ``eager step / (eager step - eager
mixing)``. No mixing kernel can beat that ceiling; the candidates' convolutions, batch
norms and activations, identical on both sides, take the rest of the step. At the
default shape the mixing is a small share of the step, so that ceiling, not the kernel,
keeps the fused layer below the 1.2x target.

Speed-ups are ratios of the median times printed beside them, followed by an interval
of the per-round ratios (the rounds time the contenders side by side) that covers
their median with about 95% probability: a speed-up whose interval reaches 1.00x, or
one above the ceiling, is marked "not resolved" (noise on this machine, not a result).

Candidates come from ``hwnas.spaces.blocks.build_block`` (FBNet's k3_e1, k3_e1_g2,
k3_e3, k3_e6, k5_e1, k5_e1_g2, k5_e3, k5_e6, skip).

Run: ``python benchmarks/bench_mixed_layer.py [--rounds 9] [--batch 32] [--channels 32] [--size 56]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    fmt_bytes, fmt_ms, machine_line, ratio_interval, ratio_of_medians, saved_bytes, time_rounds)

from hwnas._argtypes import positive_int, thread_count  # noqa: E402
from hwnas.layers import MixedLayer  # noqa: E402
from hwnas.layers.reference import weighted_sum_reference  # noqa: E402
from hwnas.ops import weighted_sum  # noqa: E402
from hwnas.spaces.blocks import FBNET_BLOCKS, build_block  # noqa: E402

# Per-round ratios must cover their median with this probability (see the docstring).
LEVEL = 0.95


def make_layer(channels: int) -> MixedLayer:
    candidates = [build_block(name, channels, channels, 1) for name in FBNET_BLOCKS]
    return MixedLayer(candidates, mode="gumbel", temperature=5.0)


def seeds_sampling_each(layer: MixedLayer, limit: int = 100_000) -> list[int]:
    """For each candidate, a seed under which a ``gumbel_hard`` forward samples it.

    The forward draws its Gumbel noise first thing after the seed is set, so drawing
    the sample alone (no candidate runs) tells which candidate that seed picks.
    """
    previous = layer.mode
    layer.mode = "gumbel_hard"
    found: dict[int, int] = {}
    try:
        with torch.no_grad():
            for seed in range(limit):
                torch.manual_seed(seed)
                _, index = layer.sample_weights()
                found.setdefault(index, seed)
                if len(found) == layer.num_candidates:
                    break
    finally:
        layer.mode = previous
    missing = [i for i in range(layer.num_candidates) if i not in found]
    if missing:
        raise RuntimeError(f"no seed below {limit} samples candidates {missing}: their logits are too low to time")
    return [found[i] for i in range(layer.num_candidates)]


def speedup_text(ratio: float, low: float, high: float, baseline: str, ceiling: float | None = None) -> str:
    """``ratio`` against ``baseline`` with the interval of its per-round ratios, and
    "not resolved" where that interval reaches 1 or the ratio passes ``ceiling``."""
    text = f"{ratio:.2f}x vs {baseline} [{low:.2f}-{high:.2f}]"
    if low <= 1.0 <= high:
        return text + " not resolved (within noise)"
    if ceiling is not None and ratio > ceiling:
        return text + f" not resolved (above the {ceiling:.3f}x ceiling)"
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=9,
                        help="alternating rounds, one call of each contender per round (default 9: the fewest "
                             "whose per-round ratios give a 95%% interval narrower than their full range)")
    parser.add_argument("--batch", type=positive_int, default=32, help="batch size (default 32)")
    parser.add_argument("--channels", type=positive_int, default=32, help="input = output channels (even: two "
                        "candidates are grouped convolutions with 2 groups; default 32)")
    parser.add_argument("--size", type=positive_int, default=56, help="height = width of the input (default 56)")
    parser.add_argument("--threads", type=thread_count, default=1, help="intra-op threads (1 is stable on a shared machine)")
    args = parser.parse_args(argv)
    if args.channels % 2:
        parser.error(f"argument --channels: must be even (k3_e1_g2 and k5_e1_g2 use 2 groups), got {args.channels}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = make_layer(args.channels)
    shape = (args.batch, args.channels, args.size, args.size)
    x = torch.randn(shape, requires_grad=True)
    grad_out = torch.randn(shape)
    names = list(FBNET_BLOCKS)

    def configure(fused: bool, mode: str) -> None:
        layer.fused = fused
        layer.mode = mode

    def forward(fused: bool, mode: str, seed: int = 0):
        configure(fused, mode)
        torch.manual_seed(seed)
        return layer(x)

    def step(fused: bool, mode: str, seed: int | None = None):
        # Soft steps draw new noise each call (their cost does not depend on it); a hard
        # step keeps the seed that samples its candidate.
        seeds = iter(range(10**9))

        def run() -> None:
            out = forward(fused, mode, next(seeds) if seed is None else seed)
            out.backward(grad_out)
            layer.zero_grad(set_to_none=True)
            x.grad = None

        return run

    # The two soft forms compute the same thing under one seed.
    with torch.no_grad():
        torch.testing.assert_close(forward(True, "gumbel"), forward(False, "gumbel"), atol=1e-4, rtol=1e-4)
    hard_seeds = seeds_sampling_each(layer)
    with torch.no_grad():
        for index, seed in enumerate(hard_seeds):
            forward(True, "gumbel_hard", seed)
            assert int(layer.last_weights.detach().argmax()) == index, "the seed search drew other noise than the forward"
    probability = torch.softmax(layer.arch_logits.detach().double(), 0).tolist()

    contenders = {
        "fused gumbel": step(True, "gumbel"),
        "eager gumbel": step(False, "gumbel"),
        **{f"hard {name}": step(True, "gumbel_hard", seed) for name, seed in zip(names, hard_seeds)},
    }
    # The mixing alone, on the candidates' real outputs (detached leaves): the part of
    # the step in which the two layers differ.
    with torch.no_grad():
        configure(True, "gumbel")
        outputs = [op(x) for op in layer.candidates]
    outputs = [o.detach().requires_grad_() for o in outputs]
    logits = torch.zeros(len(outputs), requires_grad=True)

    def mixing(fn):
        def run() -> None:
            fn(outputs, torch.softmax(logits, 0)).backward(grad_out)
            for o in outputs:
                o.grad = None
            logits.grad = None

        return run

    contenders["fused mixing only"] = mixing(weighted_sum)
    contenders["eager mixing only"] = mixing(weighted_sum_reference)
    times = time_rounds(contenders, args.rounds, warmup=1)
    # Expected hard step of each round: its candidates' steps of that round, weighed.
    times["fused gumbel_hard"] = [
        sum(p * times[f"hard {name}"][r] for p, name in zip(probability, names)) for r in range(args.rounds)
    ]
    saved = {
        "fused gumbel": saved_bytes(lambda: forward(True, "gumbel")),
        "eager gumbel": saved_bytes(lambda: forward(False, "gumbel")),
        "fused gumbel_hard": sum(p * saved_bytes(lambda s=seed: forward(True, "gumbel_hard", s))
                                 for p, seed in zip(probability, hard_seeds)),
    }
    med = {n: statistics.median(t) for n, t in times.items()}
    share = med["eager mixing only"] / med["eager gumbel"]
    # A mixing as slow as the whole step (tiny shapes) leaves no bound.
    ceiling = 1 / (1 - share) if share < 1 else float("inf")

    def speedup(slow: str, fast: str, baseline: str, bound: float | None = None) -> str:
        return speedup_text(ratio_of_medians(times[slow], times[fast]), *ratio_interval(times[slow], times[fast], LEVEL)[:2],
                            baseline, bound)

    print(machine_line())
    print(
        f"9-candidate FBNet MixedLayer at {list(shape)}, forward + backward (grads of x, weights, "
        f"arch logits), median of {args.rounds} alternating rounds"
    )
    coverage = ratio_interval(times["eager gumbel"], times["fused gumbel"], LEVEL)[2]
    header = (f"{'contender':<20} {'step ms':>10} {'saved for backward':>20}   "
              f"speed-up: ratio of medians [per-round ratios, {100 * coverage:.0f}% interval]")
    print(header)
    print("-" * len(header))
    speedups = {
        "fused gumbel": speedup("eager gumbel", "fused gumbel", "eager gumbel", ceiling),
        "eager gumbel": "1.00x (baseline)",
        "fused gumbel_hard": speedup("fused gumbel", "fused gumbel_hard", "fused gumbel"),
        "fused mixing only": speedup("eager mixing only", "fused mixing only", "eager mixing"),
        "eager mixing only": "",
    }
    for name in speedups:
        saved_text = fmt_bytes(saved[name]) if name in saved else ""
        print(f"{name:<20} {fmt_ms(med[name]):>10} {saved_text:>20}   {speedups[name]}".rstrip())
    print("fused gumbel_hard: expected step over the sample; each candidate's hard step (median ms, sampled with "
          "probability " + ("1/9" if max(probability) - min(probability) < 1e-12 else "softmax(logits)") + "):")
    print("  " + ", ".join(f"{name} {med[f'hard {name}'] * 1e3:.2f}" for name in names))
    print(f"saved bytes fused / eager (soft gumbel): {saved['fused gumbel'] / saved['eager gumbel']:.4f}")
    bound = f"at most {ceiling:.3f}x faster than eager" if share < 1 else "bounded by nothing measured here"
    print(f"eager mixing is {100 * share:.1f}% of the eager step; with a mixing that cost nothing the fused layer "
          f"would be {bound}")


if __name__ == "__main__":
    main()
