"""Fused hwnas::weighted_sum against the eager forms peers use, at supernet shapes.

Contenders for out = sum_i w_i * x_i over N = 9 candidate outputs:
  eager  -- sum(w[i] * x[i] for i)          (NNI, mobile-vision, FBNet re-implementations)
  einsum -- torch.einsum over torch.stack(x) (the vectorised eager form)
  fused  -- hwnas.ops.weighted_sum

Printed per shape: median time, the ratio eager / contender (higher is better) and the
effective bandwidth of the forward, (N + 1) tensors moved per call, next to the
machine's measured copy bandwidth. 'read floor' is the time torch.sum takes to read
the same N tensors once (stacked), timed in the same rounds: no implementation of the
forward can be faster than reading its inputs, so fused / floor near 1 means the
kernel runs at the memory (or cache) bandwidth the machine gives it. Run: python benchmarks/bench_weighted_sum.py
"""

from __future__ import annotations

import argparse

import torch

import hwnas
from common import copy_bandwidth_gbs, machine_line, time_alternating

SHAPES = [
    (32, 32, 56, 56),
    (32, 64, 28, 28),
    (32, 184, 7, 7),
    (1, 32, 56, 56),
    (1, 64, 28, 28),
    (1, 184, 7, 7),
]
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
    copy_gbs = copy_bandwidth_gbs()
    print(f"copy bandwidth (read + write, 256 MiB copy_): {copy_gbs:.1f} GB/s\n")
    header = (
        f"{'shape':<18} {'pass':<9} {'eager ms':>9} {'einsum x':>9} {'fused ms':>9} "
        f"{'fused x':>8} {'fused GB/s':>10} {'% copy':>7} {'floor ms':>9} {'fused/floor':>11}"
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
        stacked = torch.stack(xs)
        fwd = time_alternating(
            {**{name: (lambda f=f: f(xs, w)) for name, f in CONTENDERS.items()}, "floor": stacked.sum},
            rounds=rounds,
        )
        del stacked
        xs_g = [x.clone().requires_grad_() for x in xs]
        w_g = w.clone().requires_grad_()
        grad = torch.randn(shape)
        fb = time_alternating(
            {name: forward_backward(f, xs_g, w_g, grad) for name, f in CONTENDERS.items()},
            rounds=rounds,
        )
        moved = (N + 1) * xs[0].numel() * xs[0].element_size()
        gbs = moved / fwd["fused"] / 1e9
        for label, t in (("forward", fwd), ("fwd+bwd", fb)):
            row = {
                "shape": shape,
                "pass": label,
                "eager_ms": t["eager"] * 1e3,
                "einsum_x": t["eager"] / t["einsum"],
                "fused_ms": t["fused"] * 1e3,
                "fused_x": t["eager"] / t["fused"],
                "fused_gbs": gbs if label == "forward" else None,
                "floor_ms": fwd["floor"] * 1e3 if label == "forward" else None,
            }
            results.append(row)
            bw = (
                f"{gbs:10.1f} {100 * gbs / copy_gbs:6.0f}% {row['floor_ms']:9.3f} "
                f"{fwd['fused'] / fwd['floor']:10.2f}x"
                if label == "forward"
                else f"{'':>10} {'':>7}"
            )
            print(
                f"{str(list(shape)):<18} {label:<9} {row['eager_ms']:9.3f} {row['einsum_x']:8.2f}x "
                f"{row['fused_ms']:9.3f} {row['fused_x']:7.2f}x {bw}"
            )
    print("\n'x' columns: eager time / contender time (higher is faster than eager).")
    print(
        "% copy: fused forward effective bandwidth ((N+1) tensors moved) over the copy_ "
        "bandwidth measured above; above 100% means the working set was cache-resident."
    )
    return results, copy_gbs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="alternating timing rounds per contender")
    parser.add_argument("--quick", action="store_true", help="one small shape, few rounds (smoke test)")
    args = parser.parse_args()
    shapes = [(2, 8, 14, 14)] if args.quick else SHAPES
    run(shapes, 3 if args.quick else args.rounds)


if __name__ == "__main__":
    main()
