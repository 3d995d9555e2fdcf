"""hwnas.ops.channel_mask against its eager forms, forward + backward.

Contenders, each computing out = x * sum_{i: c < widths[i]} g_i and its gradients
with respect to x and the gates:

- fused: ``hwnas.ops.channel_mask(x, g, widths)``;
- eager best: ``x * (g @ M)`` with the ``[K, C]`` prefix-mask matrix M;
- eager naive: ``sum_i g_i * (x * mask_i)`` (K masked copies).

Targets: fused >= 2x faster than eager best; bytes saved for backward <= 1/K of naive.

Two regimes. The first four cases are large (each tensor is MBs). Counted in
tensor-sized streams, fused reads 3 and writes 2 (forward x -> out; backward grad,
x -> grad_x, with the dot products of every gate gradient in the same pass) and eager
best reads 5 and writes 3 (a full-size ``grad * x`` temporary and a reduction over it
for the gate gradient): with write-allocate (a write costs a read too) fused moves
11/7 = 1.57x fewer bytes. That bounds the ratio only where both sides run at the
memory bandwidth, and bytes are not all the cost here: eager makes four full-size
passes (the forward product, ``grad * m``, ``grad * x`` and its reduction) where fused
makes two, and each of its three fresh full-size results per step may cost page
faults, since with results this large the allocator gives the freed memory back to
the OS and the next step faults it in again, zeroed (at 1 thread on a 2-core AMD EPYC
VM: about 600 minor page faults per eager step at [32,64,28,28] and 1,900 at
[32,32,56,56], none per fused step). So the printed ratios can be well above 1.57x
(1.4x to 4.0x for these four cases in one run at the default 1 thread). The last
cases are the channel-search shapes of a search on small images (``hwnas search`` on
digits: batch 64, 8x8 down to 2x2 maps), where the tensors sit in cache and eager's
extra operator calls and temporaries dominate.

Speed-ups are ratios of the median times printed beside them (eager / fused).

Run: ``python benchmarks/bench_channel_mask.py [--rounds 15] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    fmt_bytes, fmt_ms, machine_line, ratio_of_medians, saved_bytes, time_rounds)

from hwnas._argtypes import non_negative_float, positive_int, thread_count  # noqa: E402
from hwnas.layers.reference import prefix_mask_matrix  # noqa: E402
from hwnas.ops import channel_mask  # noqa: E402

CASES = [
    # (name, shape, widths, memory format)
    ("[32,64,28,28] K=4", (32, 64, 28, 28), [16, 32, 48, 64], torch.contiguous_format),
    ("[32,64,28,28] K=4 NHWC", (32, 64, 28, 28), [16, 32, 48, 64], torch.channels_last),
    ("[16,256,14,14] K=8", (16, 256, 14, 14), [32, 64, 96, 128, 160, 192, 224, 256], torch.contiguous_format),
    ("[32,32,56,56] K=3", (32, 32, 56, 56), [8, 16, 32], torch.contiguous_format),
    # Cache-resident: the shapes of a channel search on digits (batch 64).
    ("[64,48,8,8] K=4", (64, 48, 8, 8), [12, 24, 36, 48], torch.contiguous_format),
    ("[64,96,4,4] K=4", (64, 96, 4, 4), [24, 48, 72, 96], torch.contiguous_format),
    ("[64,192,2,2] K=8", (64, 192, 2, 2), [24, 48, 72, 96, 120, 144, 168, 192], torch.contiguous_format),
]


def make_forms(widths, channels):
    mask = prefix_mask_matrix(widths, channels)
    masks = [mask[i].reshape(1, channels, 1, 1) for i in range(len(widths))]

    def fused(x, g):
        return channel_mask(x, g, widths)

    def eager_best(x, g):
        return x * (g @ mask).reshape(1, channels, 1, 1)

    def eager_naive(x, g):
        out = g[0] * (x * masks[0])
        for i in range(1, len(widths)):
            out = out + g[i] * (x * masks[i])
        return out

    return {"fused": fused, "eager best": eager_best, "eager naive": eager_naive}


def step(form, x, g, grad_out):
    def run():
        out = form(x, g)
        out.backward(grad_out)
        x.grad = None
        g.grad = None

    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=15, help="alternating timing rounds (default 15)")
    parser.add_argument(
        "--min-round-ms", type=non_negative_float, default=20.0,
        help="each round repeats a contender's step for at least this long (default 20 ms), "
        "so that the sub-millisecond cases are timed in a steady state, not one cold call",
    )
    parser.add_argument(
        "--threads", type=thread_count, default=1,
        help="intra-op threads (default 1: on a shared machine a preempted worker thread "
        "stalls every parallel op for a scheduler tick, which swamps the comparison)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_line())
    print(
        f"forward + backward (grad of x and gates), median of {args.rounds} alternating rounds "
        f"of >= {args.min_round_ms:g} ms each"
    )
    header = (
        f"{'case':<24} {'fused ms':>9} {'best ms':>9} {'naive ms':>9} {'vs best':>8} {'vs naive':>9} "
        f"{'saved fused':>12} {'saved best':>12} {'saved naive':>12} {'fused/naive':>11} {'1/K':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, shape, widths, fmt in CASES:
        x = torch.randn(shape).to(memory_format=fmt).requires_grad_()
        g = torch.softmax(torch.randn(len(widths)), 0).requires_grad_()
        grad_out = torch.randn(shape).to(memory_format=fmt)
        forms = make_forms(widths, shape[1])
        # Same values from every form before timing anything.
        ref = forms["eager naive"](x, g).detach()
        for form in forms.values():
            torch.testing.assert_close(form(x, g).detach(), ref, atol=1e-5, rtol=1e-5)
        times = time_rounds(
            {n: step(f, x, g, grad_out) for n, f in forms.items()}, args.rounds, args.min_round_ms / 1e3
        )
        saved = {n: saved_bytes(lambda f=f: f(x, g)) for n, f in forms.items()}
        med = {n: statistics.median(t) for n, t in times.items()}
        print(
            f"{name:<24} {fmt_ms(med['fused'])} {fmt_ms(med['eager best'])} {fmt_ms(med['eager naive'])} "
            f"{ratio_of_medians(times['eager best'], times['fused']):7.2f}x "
            f"{ratio_of_medians(times['eager naive'], times['fused']):8.2f}x "
            f"{fmt_bytes(saved['fused']):>12} {fmt_bytes(saved['eager best']):>12} "
            f"{fmt_bytes(saved['eager naive']):>12} {saved['fused'] / saved['eager naive']:11.3f} "
            f"{1 / len(widths):6.3f}"
        )


if __name__ == "__main__":
    main()
