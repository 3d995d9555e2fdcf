"""Native depthwise convolution against PyTorch's (oneDNN on the CPU), at a supernet's shapes.

Contenders, forward + backward (gradients of the input and of the weight) in the
channels_last layout a search trains in:

- ``native``: :func:`hwnas.ops.depthwise_conv2d` (what :class:`hwnas.layers.DepthwiseConv2d`
  runs during searches and retraining);
- ``torch``: ``nn.Conv2d(C, C, k, stride, k // 2, groups=C)``.

Part 1 times every distinct depthwise convolution of the FBNet supernet of
``fbnet_small`` (the digits search's space, default width 0.5 at 8x8) and prints the
per-shape ratio and the ratio of the totals weighted by how often each shape occurs in
the supernet. Part 2 times one whole soft-Gumbel supernet weight step (forward,
backward, SGD) with the candidates' depthwise convolutions native and with them as
``nn.Conv2d``: the speed-up a search gets. Speed-ups are ratios of the median times
printed beside them.

Run: ``python benchmarks/bench_depthwise_conv.py [--rounds 7] [--batch 64] [--width 0.5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_ms, machine_line, ratio_of_medians, time_rounds  # noqa: E402

from hwnas._argtypes import positive_float, positive_int, thread_count  # noqa: E402
from hwnas.layers.depthwise import is_depthwise  # noqa: E402
from hwnas.ops import depthwise_conv2d  # noqa: E402
from hwnas.search.supernet import Supernet  # noqa: E402
from hwnas.spaces import get_space  # noqa: E402


def depthwise_shapes(space) -> Counter:
    """(channels, input size, kernel, stride) of every depthwise conv in the space's supernet, counted."""
    net = Supernet(space, native_depthwise=False)
    sizes = {}

    def record(module, inputs, _output):
        sizes[module] = inputs[0].shape[-1]

    hooks = [m.register_forward_hook(record) for m in net.modules() if is_depthwise(m)]
    with torch.no_grad():
        net.set_mode("gumbel")
        net(torch.randn(2, space.in_channels, space.resolution, space.resolution))
    for h in hooks:
        h.remove()
    return Counter((m.in_channels, size, m.kernel_size[0], m.stride[0]) for m, size in sizes.items())


def op_contenders(batch: int, channels: int, size: int, kernel: int, stride: int):
    x = torch.randn(batch, channels, size, size).to(memory_format=torch.channels_last).requires_grad_()
    conv = torch.nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)
    out_shape = conv(x).shape
    grad = torch.randn(out_shape).to(memory_format=torch.channels_last)

    def native():
        depthwise_conv2d(x, conv.weight, stride, kernel // 2).backward(grad)
        x.grad = conv.weight.grad = None

    def stock():
        conv(x).backward(grad)
        x.grad = conv.weight.grad = None

    with torch.no_grad():
        torch.testing.assert_close(depthwise_conv2d(x, conv.weight, stride, kernel // 2), conv(x),
                                   atol=1e-4, rtol=1e-4)
    return {"native": native, "torch": stock}


def supernet_step(space, batch: int, native: bool):
    torch.manual_seed(0)
    net = Supernet(space, native_depthwise=native).to(memory_format=torch.channels_last)
    net.train()
    net.set_mode("gumbel")
    for a in net.arch_parameters():
        a.requires_grad_(False)
    optimizer = torch.optim.SGD(list(net.weight_parameters()), lr=0.01, momentum=0.9)
    x = torch.randn(batch, space.in_channels, space.resolution, space.resolution).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,))

    def step():
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, object]:
    """The options and the ``fbnet_small`` space they describe (argparse errors for bad ones)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=7, help="alternating timing rounds (default 7)")
    parser.add_argument("--batch", type=positive_int, default=64, help="batch size (default 64)")
    parser.add_argument("--width", type=positive_float, default=0.5, help="width multiplier of fbnet_small (default 0.5)")
    parser.add_argument("--resolution", type=positive_int, default=8, help="input side length (default 8)")
    parser.add_argument("--threads", type=thread_count, default=1, help="intra-op threads (1 is stable on a shared machine)")
    args = parser.parse_args(argv)
    try:
        space = get_space("fbnet_small", resolution=args.resolution, width=args.width, in_channels=1, num_classes=10)
    except ValueError as exc:
        parser.error(f"--resolution {args.resolution} --width {args.width:g}: {exc}")
    return args, space


def main(argv: list[str] | None = None) -> None:
    args, space = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shapes = depthwise_shapes(space)

    print(machine_line())
    print(f"depthwise convolutions of the fbnet_small supernet (width {args.width:g}, {args.resolution}x"
          f"{args.resolution}), batch {args.batch}, channels_last, forward + backward, median of "
          f"{args.rounds} alternating rounds")
    header = f"{'C':>5} {'HxW':>5} {'k':>3} {'s':>3} {'count':>6} {'torch ms':>10} {'native ms':>10} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    total = {"native": 0.0, "torch": 0.0}
    for (channels, size, kernel, stride), count in sorted(shapes.items()):
        times = time_rounds(op_contenders(args.batch, channels, size, kernel, stride), args.rounds,
                            min_round_s=0.02)
        med = {name: statistics.median(t) for name, t in times.items()}
        for name in total:
            total[name] += count * med[name]
        print(f"{channels:>5} {size:>2}x{size:<2} {kernel:>3} {stride:>3} {count:>6} {fmt_ms(med['torch']):>10} "
              f"{fmt_ms(med['native']):>10} {ratio_of_medians(times['torch'], times['native']):>8.2f}x")
    print(f"all {sum(shapes.values())} depthwise convs of one step: torch {total['torch'] * 1e3:.1f} ms, native "
          f"{total['native'] * 1e3:.1f} ms: {total['torch'] / total['native']:.2f}x")

    steps = {"native depthwise": supernet_step(space, args.batch, True),
             "nn.Conv2d depthwise": supernet_step(space, args.batch, False)}
    times = time_rounds(steps, args.rounds)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"supernet weight step (soft Gumbel, batch {args.batch}, forward + backward + SGD): "
          f"nn.Conv2d {fmt_ms(med['nn.Conv2d depthwise']).strip()} ms, native "
          f"{fmt_ms(med['native depthwise']).strip()} ms: "
          f"{ratio_of_medians(times['nn.Conv2d depthwise'], times['native depthwise']):.2f}x faster")


if __name__ == "__main__":
    main()
