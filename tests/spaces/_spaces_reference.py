"""Independent hand counts for the tests: parameters and MACs derived from the
layer definitions (FBNet Table 1, fbnet.json block structure, MobileNetV2
paper), written without using hwnas code."""

import re

# FBNet Table 1: (out_channels, layers, first_stride); stem conv3x3 16 s2.
FBNET_TABLE1 = [(16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1)]
MBV2_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

# Published block strings (fbnet.json reference_models).
FBNET_A = ("skip | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k5_e1 k3_e3 | k5_e6 k5_e3 k5_e1_g2 k5_e6 | "
           "k3_e6 k5_e1_g2 k5_e3 k3_e1_g2 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6")
FBNET_B = ("k3_e1 | k3_e6 k5_e1 k3_e1 k3_e1 | k5_e6 k5_e3 k3_e6 k5_e6 | k5_e6 k5_e6 skip k5_e3 | "
           "k5_e6 k3_e1 k5_e1 k5_e3 | k5_e6 k5_e1 k5_e6 k5_e6 | k3_e6")
FBNET_C = ("k3_e1 | k3_e6 skip k3_e1 k3_e1 | k5_e6 k5_e3 k5_e6 k3_e6 | k5_e6 k5_e3 k5_e6 k5_e6 | "
           "k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6 k5_e6 k5_e6 k5_e6 | k3_e6")
FBNET_IPHONEX = ("skip | k3_e6 k3_e1 k3_e1 k3_e1 | k3_e6 k3_e6 k3_e6 k3_e6 | k3_e6 k3_e6 k3_e3 k3_e6 | "
                 "k3_e6 k3_e3 k3_e3 k3_e3 | k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6")
FBNET_S8 = ("k3_e1 | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k3_e3 k3_e6 | k5_e6 k5_e3 k5_e3 k5_e3 | "
            "k3_e6 k5_e3 k5_e3 k5_e3 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6")
FBNET_96 = ("k3_e1 | k3_e6 k3_e6 skip skip | k5_e6 k5_e6 skip skip | k5_e6 skip skip skip | "
            "k3_e6 skip skip skip | k5_e6 k5_e6 skip skip | k5_e6")


def out_size(size, stride):
    return (size - 1) // stride + 1


def conv_bn(c_in, c_out, k, size_out, groups=1):
    """(params, macs) of a bias-free conv followed by BN (gamma, beta)."""
    weights = c_out * (c_in // groups) * k * k
    return weights + 2 * c_out, weights * size_out * size_out


def fc(c_in, c_out):
    return c_in * c_out + c_out, c_in * c_out


def fbnet_block(name, c_in, c_out, stride, size_in):
    """fbnet.json structure: pw (groups g) -> [shuffle] -> dw kxk (stride) -> pw (groups g)."""
    size_out = out_size(size_in, stride)
    if name == "skip":
        if stride == 1 and c_in == c_out:
            return 0, 0
        return conv_bn(c_in, c_out, 1, size_out)  # projection
    k, e, g = re.match(r"k(\d)_e(\d)(?:_g(\d))?$", name).groups()
    k, e, g = int(k), int(e), int(g or 1)
    mid = c_in * e
    parts = [conv_bn(c_in, mid, 1, size_in, g), conv_bn(mid, mid, k, size_out, mid), conv_bn(mid, c_out, 1, size_out, g)]
    return sum(p for p, _ in parts), sum(m for _, m in parts)


def make_divisible(v, d=8):
    r = max(d, int(v + d / 2) // d * d)
    return r + d if r < 0.9 * v else r


def fbnet_counts(blocks, head, resolution=224, width=1.0, num_classes=1000):
    """Total (params, macs) of an FBNet model from its block string."""
    ch = (lambda c: c) if width == 1.0 else (lambda c: make_divisible(c * width))
    names = blocks.replace("|", " ").split()
    size = out_size(resolution, 2)
    params, macs = conv_bn(3, ch(16), 3, size)
    c_in = ch(16)
    i = 0
    for c_out, n, first_stride in FBNET_TABLE1:
        for j in range(n):
            stride = first_stride if j == 0 else 1
            p, m = fbnet_block(names[i], c_in, ch(c_out), stride, size)
            params, macs = params + p, macs + m
            size, c_in, i = out_size(size, stride), ch(c_out), i + 1
    p, m = conv_bn(c_in, ch(head), 1, size)
    q, n = fc(ch(head), num_classes)
    return params + p + q, macs + m + n


def mobilenet_v2_counts(resolution=224, num_classes=1000):
    size = out_size(resolution, 2)
    params, macs = conv_bn(3, 32, 3, size)
    c_in = 32
    for t, c, n, s in MBV2_TABLE:
        for j in range(n):
            stride = s if j == 0 else 1
            mid = c_in * t
            size_out = out_size(size, stride)
            parts = [] if t == 1 else [conv_bn(c_in, mid, 1, size)]
            parts += [conv_bn(mid, mid, 3, size_out, mid), conv_bn(mid, c, 1, size_out)]
            params += sum(p for p, _ in parts)
            macs += sum(m for _, m in parts)
            size, c_in = size_out, c
    p, m = conv_bn(c_in, 1280, 1, size)
    q, n = fc(1280, num_classes)
    return params + p + q, macs + m + n
