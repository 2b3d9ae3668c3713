"""Random layers for the engine benches, regenerated identically by the pytest launcher and the cocotb module.

Each bench is a list of layer specs; :func:`make_bench` draws their data and parameters from a fixed seed, places
every layer's input, output, weights and biases in its own region of the memories (so one Verilog build runs all of
a bench's layers one after another) and computes the expected output with the golden ops on the original arrays
(``golden.conv`` / ``golden.pool`` + ``golden.requant``), independently of ``golden.memory``'s layouts.
"""

import dataclasses

import numpy as np

from golden.config import NPUConfig
from golden.conv import conv2d, depthwise_conv2d, fully_connected
from golden.engine import average_pool_params
from golden.memory import (MemoryImages, activation_words, groups, layer_descriptor, store_activation, store_bias,
                           store_weights)
from golden.pool import global_average_pool
from golden.requant import quantize_multiplier, requantize

__all__ = ["BENCHES", "Case", "bench_config", "make_bench"]

# (kind, input (H, W, C), output channels, kernel, stride, padding (top, bottom, left, right), flavour)
# Flavours: "plain" (outputs spread over int8), "saturate" (most outputs clamp), "relu6" (narrow clamp bounds),
# "edge-zp" (input zero point -128 / 127).
BENCHES = {
    "conv": [
        ("conv", (6, 7, 16), 24, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
        ("conv", (7, 9, 12), 10, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("conv", (9, 10, 8), 16, (3, 3), (2, 2), (0, 1, 0, 1), "saturate"),
        ("conv", (8, 8, 16), 8, (3, 3), (2, 2), (1, 1, 1, 1), "relu6"),
        ("conv", (10, 10, 3), 16, (3, 3), (2, 2), (0, 1, 0, 1), "edge-zp"),
        ("conv", (6, 5, 9), 12, (5, 5), (1, 1), (2, 2, 2, 2), "plain"),
        ("conv", (5, 6, 8), 8, (3, 3), (1, 2), (1, 1, 1, 1), "edge-zp"),
    ],
    "depthwise": [
        ("depthwise", (6, 11, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("depthwise", (9, 13, 24), 24, (3, 3), (2, 2), (0, 1, 0, 1), "plain"),
        ("depthwise", (8, 16, 20), 20, (3, 3), (2, 2), (1, 1, 1, 1), "saturate"),
        ("depthwise", (5, 8, 12), 12, (3, 3), (1, 1), (1, 1, 1, 1), "relu6"),
        ("depthwise", (7, 7, 8), 8, (3, 3), (1, 1), (0, 0, 0, 0), "edge-zp"),
        ("depthwise", (4, 9, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
    ],
    "fully_connected": [
        ("fully_connected", (1, 1, 40), 10, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
        ("fully_connected", (2, 3, 8), 5, (2, 3), (1, 1), (0, 0, 0, 0), "saturate"),
        ("fully_connected", (1, 1, 64), 24, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
    ],
    "average_pool": [
        ("average_pool", (7, 7, 20), 20, (7, 7), (1, 1), (0, 0, 0, 0), "plain"),
        ("average_pool", (4, 4, 16), 16, (4, 4), (1, 1), (0, 0, 0, 0), "plain"),
        ("average_pool", (3, 5, 8), 8, (3, 5), (1, 1), (0, 0, 0, 0), "relu6"),
        ("average_pool", (1, 1, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
    ],
    # Channel counts that are multiples of the lanes: the utilization targets, and the >= 100,000-MAC speed check.
    "utilization": [
        ("conv", (8, 8, 32), 32, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
        ("conv", (8, 8, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("depthwise", (16, 16, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("depthwise", (32, 32, 16), 16, (3, 3), (2, 2), (0, 1, 0, 1), "plain"),
    ],
}


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """One layer of a bench: its descriptor, the expected int8 output and the int32 accumulators behind it."""
    name: str
    descriptor: object
    expected: np.ndarray
    acc: np.ndarray


def bench_config(bench, lanes=8):
    """The smallest default-shaped configuration whose memories hold all of a bench's layers."""
    probe = NPUConfig(lanes=lanes, act_depth=1 << 20, weight_depth=1 << 20, bias_depth=1 << 20)
    _, words = _place(BENCHES[bench], probe)
    depth = {name: 1 << max(4, (count - 1).bit_length()) for name, count in words.items()}
    return NPUConfig(lanes=lanes, act_depth=depth["act"], weight_depth=depth["weights"], bias_depth=depth["bias"])


def make_bench(bench, config, seed):
    """``(cases, images)`` of a bench: the layers' :class:`Case` s and the memory images holding all their data."""
    specs = BENCHES[bench]
    placements, _ = _place(specs, config)
    images = MemoryImages.empty(config)
    rng = np.random.default_rng(seed)
    cases = []
    for index, (spec, place) in enumerate(zip(specs, placements)):
        kind, shape, cout, kernel, stride, padding, flavour = spec
        x = rng.integers(-128, 128, size=shape)
        store_activation(images.activation, x, base=place["in"], config=config)
        zero_point = {"edge-zp": (-128, 127)[index % 2]}.get(flavour, int(rng.integers(-128, 128)))
        if kind == "average_pool":
            multiplier, shift = average_pool_params(shape[0] * shape[1])
            zero_point, out_zero_point = 0, 0
            qmin, qmax = (-128, 127) if flavour != "relu6" else (-20, 30)
            acc = 64 * x.sum(axis=(0, 1), keepdims=True)
            expected = global_average_pool(x[None], qmin=qmin, qmax=qmax)[0]
        else:
            if kind == "depthwise":
                weights = rng.integers(-127, 128, size=(*kernel, cout))
                acc_raw = depthwise_conv2d(x[None], weights, None, stride=stride, padding=padding,
                                           input_zero_point=zero_point)[0]
            else:
                weights = rng.integers(-127, 128, size=(cout, *kernel, shape[2]))
                acc_raw = conv2d(x[None], weights, None, stride=stride, padding=padding,
                                 input_zero_point=zero_point)[0]
            spread = int(np.percentile(np.abs(acc_raw), 90)) + 1
            bias = rng.integers(-spread, spread + 1, size=cout)
            channel_shift = rng.integers(0, 4, size=cout)
            channel_shift[0], channel_shift[min(1, cout - 1)] = 0, 15
            if cout > 2:
                channel_shift[2] = 15
            store_weights(images.weights, kind, weights, base=place["weights"], config=config)
            store_bias(images.bias, images.channel_shift, bias, channel_shift, base=place["bias"], config=config)
            gain = {"saturate": 3000.0, "relu6": 200.0}.get(flavour, 120.0)
            multiplier, shift = quantize_multiplier(gain / spread)
            out_zero_point = int(rng.integers(-100, 100))
            qmin, qmax = (out_zero_point, min(127, out_zero_point + 60)) if flavour == "relu6" else (-128, 127)
            if kind == "depthwise":
                acc = depthwise_conv2d(x[None], weights, bias, stride=stride, padding=padding,
                                       input_zero_point=zero_point)[0]
            elif kind == "fully_connected" and shape[:2] == (1, 1):
                acc = fully_connected(x.reshape(1, -1), weights.reshape(cout, -1), bias,
                                      input_zero_point=zero_point).reshape(1, 1, cout)
            else:
                acc = conv2d(x[None], weights, bias, stride=stride, padding=padding, input_zero_point=zero_point)[0]
            expected = requantize(acc, multiplier, shift, channel_shift, out_zero_point, qmin, qmax)
        descriptor = layer_descriptor(kind, shape, cout, config=config, kernel=kernel, stride=stride,
                                      padding=padding, in_base=place["in"], out_base=place["out"],
                                      weight_base=place["weights"], bias_base=place["bias"],
                                      input_zero_point=zero_point, multiplier=multiplier, shift=shift,
                                      output_zero_point=out_zero_point, qmin=qmin, qmax=qmax)
        name = (f"{bench}[{index}] {kind} {'x'.join(map(str, shape))}->{cout} k{kernel[0]}x{kernel[1]} "
                f"s{stride[0]}{stride[1]} p{''.join(map(str, padding))} {flavour}")
        cases.append(Case(name=name, descriptor=descriptor, expected=expected, acc=acc))
    return cases, images


def _place(specs, config):
    # Regions for every layer: inputs and outputs one after another, then weights and biases.
    act = weights = bias = 0
    placements = []
    for kind, shape, cout, kernel, stride, padding, _ in specs:
        out_height = (shape[0] + padding[0] + padding[1] - kernel[0]) // stride[0] + 1
        out_width = (shape[1] + padding[2] + padding[3] - kernel[1]) // stride[1] + 1
        place = {"in": act, "out": act + activation_words(shape, config), "weights": weights, "bias": bias}
        act = place["out"] + activation_words((out_height, out_width, cout), config)
        window = kernel[0] * kernel[1]
        if kind == "depthwise":
            weights += -(-cout // config.macs) * window
        elif kind != "average_pool":
            weights += groups(cout, config) * window * groups(shape[2], config)
        if kind != "average_pool":
            bias += groups(cout, config)
        placements.append(place)
    return placements, {"act": act, "weights": weights, "bias": bias}
