"""Fused hwnas::weighted_sum against the eager forms peers use, at supernet shapes.

Contenders for out = sum_i w_i * x_i over N = 9 candidate outputs:
  eager  -- sum(w[i] * x[i] for i)          (NNI, mobile-vision, FBNet re-implementations)
  einsum -- torch.einsum over torch.stack(x) (the vectorised eager form)
  fused  -- hwnas.ops.weighted_sum

Printed per shape: median times over alternating rounds, the ratio eager / contender
(higher is better), and two references for the forward, timed in the same rounds as
the contenders so that they share the machine's state:

- copy: ``dst.copy_(src)`` of as many bytes as the fused forward moves ((N + 1)
  tensors, counted as bytes read + bytes written). '% copy' is the fused forward's
  effective bandwidth over the copy's. It is not a ceiling: a copy writes half of the
  bytes it moves, and an ordinary store to memory costs a read first (write-allocate),
  while the fused forward writes one tensor in N + 1, so it can pass 100% with a
  working set far larger than the caches.
- sum: ``torch.sum`` of the N inputs stacked, to one number: one read of the same N
  tensors and no write. 'fused/sum' compares the fused forward with that read. It is
  not a floor either: torch.sum's reduction need not run at the memory bandwidth, and
  the fused forward can be faster (fused/sum below 1).

Run: python benchmarks/bench_weighted_sum.py [--rounds 15] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hwnas  # noqa: E402
from common import machine_line, time_alternating  # noqa: E402

from hwnas._argtypes import positive_int, thread_count  # noqa: E402

SHAPES = [
    (32, 32, 56, 56),
    (32, 64, 28, 28),
    (32, 184, 7, 7),
    (1, 32, 56, 56),
    (1, 64, 28, 28),
    (1, 184, 7, 7),
]
QUICK_SHAPES = [(2, 8, 14, 14)]
QUICK_ROUNDS = 3
DEFAULT_ROUNDS = 15
MIN_ROUND_S = 0.02
N = 9


def eager_sum(xs, w):
    return sum(w[i] * x for i, x in enumerate(xs))


def einsum_sum(xs, w):
    return torch.einsum("n...,n->...", torch.stack(xs), w)


CONTENDERS = {"eager": eager_sum, "einsum": einsum_sum, "fused": hwnas.ops.weighted_sum}


def forward_backward(fn, xs, w, grad):
    def step():
        for t in xs:
            t.grad = None
        w.grad = None
        fn(xs, w).backward(grad)

    return step


def run(shapes, rounds):
    print(machine_line())
    print(f"median of {rounds} alternating rounds of >= {MIN_ROUND_S * 1e3:g} ms per contender; copy and sum "
          "timed in the forward's rounds\n")
    header = (
        f"{'shape':<18} {'pass':<9} {'eager ms':>9} {'einsum x':>9} {'fused ms':>9} "
        f"{'fused x':>8} {'fused GB/s':>10} {'copy GB/s':>9} {'% copy':>7} {'sum ms':>9} {'fused/sum':>9}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for shape in shapes:
        xs = [torch.randn(shape) for _ in range(N)]
        w = torch.softmax(torch.randn(N), 0)
        with torch.no_grad():
            ref = eager_sum(xs, w)
            torch.testing.assert_close(hwnas.ops.weighted_sum(xs, w), ref)
        moved = (N + 1) * xs[0].numel() * xs[0].element_size()
        stacked = torch.stack(xs)
        # A copy_ moves twice its size (read + write): (N + 1) / 2 inputs' worth.
        copy_src = torch.ones((N + 1) * xs[0].numel() // 2)
        copy_dst = torch.empty_like(copy_src)
        fwd = time_alternating(
            {
                **{name: (lambda f=f: f(xs, w)) for name, f in CONTENDERS.items()},
                "copy": lambda: copy_dst.copy_(copy_src),
                "sum": stacked.sum,
            },
            rounds=rounds,
            min_round_s=MIN_ROUND_S,
        )
        del stacked, copy_src, copy_dst
        xs_g = [x.clone().requires_grad_() for x in xs]
        w_g = w.clone().requires_grad_()
        grad = torch.randn(shape)
        fb = time_alternating(
            {name: forward_backward(f, xs_g, w_g, grad) for name, f in CONTENDERS.items()},
            rounds=rounds,
            min_round_s=MIN_ROUND_S,
        )
        gbs = moved / fwd["fused"] / 1e9
        copy_gbs = moved / fwd["copy"] / 1e9
        for label, t in (("forward", fwd), ("fwd+bwd", fb)):
            forward = label == "forward"
            row = {
                "shape": shape,
                "pass": label,
                "eager_ms": t["eager"] * 1e3,
                "einsum_x": t["eager"] / t["einsum"],
                "fused_ms": t["fused"] * 1e3,
                "fused_x": t["eager"] / t["fused"],
                "fused_gbs": gbs if forward else None,
                "copy_gbs": copy_gbs if forward else None,
                "sum_ms": fwd["sum"] * 1e3 if forward else None,
            }
            results.append(row)
            references = (
                f"{gbs:10.1f} {copy_gbs:9.1f} {100 * gbs / copy_gbs:6.0f}% {row['sum_ms']:9.3f} "
                f"{fwd['fused'] / fwd['sum']:8.2f}x"
                if forward
                else ""
            )
            print(
                f"{str(list(shape)):<18} {label:<9} {row['eager_ms']:9.3f} {row['einsum_x']:8.2f}x "
                f"{row['fused_ms']:9.3f} {row['fused_x']:7.2f}x {references}".rstrip()
            )
    print("\n'x' columns: eager time / contender time (higher is faster than eager).")
    print(
        "GB/s: (N+1) tensors moved per call over the median time; % copy: fused over a copy_ of as many bytes "
        "in the same rounds (not a ceiling: a copy writes half its bytes, and writes cost a read too)."
    )
    print("fused/sum: fused forward over torch.sum of the stacked inputs (one read, no write), same rounds; "
          "a reference, not a floor.")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=positive_int, default=None,
                        help=f"alternating timing rounds per contender (default {DEFAULT_ROUNDS}, "
                             f"{QUICK_ROUNDS} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"one small shape {list(QUICK_SHAPES[0])} (smoke test), {QUICK_ROUNDS} rounds "
                             "unless --rounds says otherwise")
    parser.add_argument("--threads", type=thread_count, default=1,
                        help="intra-op threads (default 1, stable on a shared machine)")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    return args


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run(QUICK_SHAPES if args.quick else SHAPES, args.rounds)


if __name__ == "__main__":
    main()
