"""A 9-candidate FBNet MixedLayer, forward + backward: fused mixing against eager.

Contenders on one layer (the same candidate modules, so the convolutions are identical):

- fused gumbel: ``MixedLayer(mode="gumbel")`` mixing with ``hwnas.ops.weighted_sum``;
- eager gumbel: the same layer with ``fused=False``: ``sum_i m_i * op_i(x)``;
- fused gumbel_hard: a one-hot sample, only the sampled candidate computed.

Targets: fused >= 1.2x faster than eager with no more bytes saved for backward;
gumbel_hard >= 3x faster than soft gumbel.

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

from hwnas.layers import MixedLayer  # noqa: E402
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
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1 is stable on a shared machine)")
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
    for name in contenders:
        print(f"{name:<20} {fmt_ms(med[name]):>10} {fmt_bytes(saved[name]):>20} {speedups[name]:>30}")
    print(f"saved bytes fused / eager (soft gumbel): {saved['fused gumbel'] / saved['eager gumbel']:.4f}")


if __name__ == "__main__":
    main()
