"""A 9-candidate FBNet MixedLayer, forward + backward: fused mixing against eager.

Contenders on one layer (the same candidate modules, so the convolutions are identical):

- fused gumbel: ``MixedLayer(mode="gumbel")`` mixing with ``hwnas.ops.weighted_sum``;
- eager gumbel: the same layer with ``fused=False``: ``sum_i m_i * op_i(x)``;
- fused gumbel_hard: a one-hot sample, only the sampled candidate computed.

Targets: fused >= 1.2x faster than eager with no more bytes saved for backward;
gumbel_hard >= 3x faster than soft gumbel.

The fused and eager layers differ only in the mixing, so the script also times the
mixing alone (the nine candidate outputs as leaf tensors, forward + backward of the
mixture and of the softmax that makes its weights) and prints the layer speed-up that
would follow if the fused mixing cost nothing: ``eager step / (eager step - eager
mixing)``. No mixing kernel can beat that ceiling; the candidates' convolutions, batch
norms and activations, identical on both sides, take the rest of the step.

Candidates come from ``hwnas.spaces.blocks.build_block`` (FBNet's k3_e1, k3_e1_g2,
k3_e3, k3_e6, k5_e1, k5_e1_g2, k5_e3, k5_e6, skip).

Run: ``python benchmarks/bench_mixed_layer.py [--rounds 5] [--batch 32] [--size 56]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_bytes, fmt_ms, machine_line, median_ratio, saved_bytes, time_rounds  # noqa: E402

from hwnas._argtypes import thread_count  # noqa: E402
from hwnas.layers import MixedLayer  # noqa: E402
from hwnas.layers.reference import weighted_sum_reference  # noqa: E402
from hwnas.ops import weighted_sum  # noqa: E402
from hwnas.spaces.blocks import FBNET_BLOCKS, build_block  # noqa: E402


def make_layer(channels: int) -> MixedLayer:
    candidates = [build_block(name, channels, channels, 1) for name in FBNET_BLOCKS]
    return MixedLayer(candidates, mode="gumbel", temperature=5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--threads", type=thread_count, default=1, help="intra-op threads (1 is stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = make_layer(args.channels)
    shape = (args.batch, args.channels, args.size, args.size)
    x = torch.randn(shape, requires_grad=True)
    grad_out = torch.randn(shape)

    def configure(fused: bool, mode: str) -> None:
        layer.fused = fused
        layer.mode = mode

    def forward(fused: bool, mode: str, seed: int = 0):
        configure(fused, mode)
        torch.manual_seed(seed)
        return layer(x)

    def step(fused: bool, mode: str):
        seeds = iter(range(10**9))

        def run() -> None:
            out = forward(fused, mode, next(seeds))
            out.backward(grad_out)
            layer.zero_grad(set_to_none=True)
            x.grad = None

        return run

    # The two soft forms compute the same thing under one seed.
    with torch.no_grad():
        torch.testing.assert_close(forward(True, "gumbel"), forward(False, "gumbel"), atol=1e-4, rtol=1e-4)

    contenders = {
        "fused gumbel": step(True, "gumbel"),
        "eager gumbel": step(False, "gumbel"),
        "fused gumbel_hard": step(True, "gumbel_hard"),
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
    times = time_rounds(contenders, args.rounds)
    saved = {
        "fused gumbel": saved_bytes(lambda: forward(True, "gumbel")),
        "eager gumbel": saved_bytes(lambda: forward(False, "gumbel")),
        "fused gumbel_hard": saved_bytes(lambda: forward(True, "gumbel_hard")),
    }
    print(machine_line())
    print(
        f"9-candidate FBNet MixedLayer at {list(shape)}, forward + backward (grads of x, weights, "
        f"arch logits), median of {args.rounds} alternating rounds"
    )
    header = f"{'contender':<20} {'step ms':>10} {'saved for backward':>20} {'speed-up':>30}"
    print(header)
    print("-" * len(header))
    med = {n: statistics.median(t) for n, t in times.items()}
    speedups = {
        "fused gumbel": f"{median_ratio(times['eager gumbel'], times['fused gumbel']):.2f}x vs eager gumbel",
        "eager gumbel": "1.00x (baseline)",
        "fused gumbel_hard": f"{median_ratio(times['fused gumbel'], times['fused gumbel_hard']):.2f}x vs fused gumbel",
    }
    speedups["fused mixing only"] = (
        f"{median_ratio(times['eager mixing only'], times['fused mixing only']):.2f}x vs eager mixing")
    speedups["eager mixing only"] = ""
    for name in contenders:
        saved_text = fmt_bytes(saved[name]) if name in saved else ""
        print(f"{name:<20} {fmt_ms(med[name]):>10} {saved_text:>20} {speedups[name]:>30}")
    print(f"saved bytes fused / eager (soft gumbel): {saved['fused gumbel'] / saved['eager gumbel']:.4f}")
    share = med["eager mixing only"] / med["eager gumbel"]
    print(f"eager mixing is {100 * share:.1f}% of the eager step; with a mixing that cost nothing the fused layer "
          f"would be at most {1 / (1 - share):.3f}x faster than eager")


if __name__ == "__main__":
    main()
