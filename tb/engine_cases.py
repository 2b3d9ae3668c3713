"""The engine benches' layers: specs per bench, and the configuration whose memories hold them all.

``golden.stimulus`` draws each layer's data and parameters from a fixed seed, places every layer's input, output,
weights and biases in its own region of the memories (one Verilog build runs all of a bench's layers one after
another) and computes the expected output with the golden ops on the original arrays. The pytest launcher and the
cocotb module call :func:`make_bench` with the same seed and get the same layers.
"""

from golden.config import NPUConfig
from golden.layouts import CODE_BITS
from golden.stimulus import Flavour, fitted_config, random_layers, two_bit_layers

__all__ = ["BENCHES", "TWO_BIT_CODEBOOKS", "bench_config", "make_bench", "two_bit_bench"]

#: Codebook of each two-bit bench layer: SPTQ/MSPTQ levels {-4, -1, 1, 4} x 24, UQ levels {-3, -1, 1, 3} x 27, and
#: the int8 extremes.
TWO_BIT_CODEBOOKS = ([-96, -24, 24, 96], [-81, -27, 27, 81], [-128, -1, 1, 127])

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
    # Residual adds (kernel 1x1, output channels = input channels): widths and channel counts on and off the lanes,
    # input 1 from any bank; zero points at the extremes; an input rescaling of shift -31, one of multiplier 0.
    "add": [
        ("add", (6, 7, 16), 16, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
        ("add", (5, 8, 12), 12, (1, 1), (1, 1), (0, 0, 0, 0), "saturate"),
        ("add", (4, 9, 20), 20, (1, 1), (1, 1), (0, 0, 0, 0), "relu6"),
        ("add", (3, 5, 3), 3, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
        ("add", (2, 11, 9), 9, (1, 1), (1, 1), (0, 0, 0, 0), Flavour(input_zero_point=-128, scale_ratio=30.5)),
        ("add", (3, 4, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0), Flavour(input_zero_point=127, scale_ratio=-34)),
        ("add", (1, 1, 1), 1, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
    ],
    # Two-bit weight codes (weight_code_bits 2, :func:`two_bit_bench`): input channels not multiples of the lanes, so
    # the padding columns (code 0 -> codebook[0] != 0) must be zeroed; zero point -128 makes a leak large.
    "two_bit": [
        ("conv", (7, 9, 12), 10, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("conv", (6, 7, 20), 16, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
        ("fully_connected", (1, 1, 37), 10, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
    ],
    # Channel counts that are multiples of the lanes: the utilization targets, and the >= 100,000-MAC speed check.
    "utilization": [
        ("conv", (8, 8, 32), 32, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
        ("conv", (8, 8, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("depthwise", (16, 16, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("depthwise", (32, 32, 16), 16, (3, 3), (2, 2), (0, 1, 0, 1), "plain"),
    ],
}


def bench_specs(bench):
    """The bench's layer specs, each named ``bench[index] kind shape->channels kKxK sSS pPPPP flavour``."""
    return [(f"{bench}[{index}] {kind} {'x'.join(map(str, shape))}->{cout} k{kernel[0]}x{kernel[1]} "
             f"s{stride[0]}{stride[1]} p{''.join(map(str, padding))} {_label(flavour)}",
             kind, shape, cout, kernel, stride, padding, flavour)
            for index, (kind, shape, cout, kernel, stride, padding, flavour) in enumerate(BENCHES[bench])]


def _label(flavour):
    # A flavour's name in a layer's name (the add bench's Flavour objects: zero point and scale ratio).
    if isinstance(flavour, str):
        return flavour
    return f"zp {flavour.input_zero_point} scale ratio 2**{flavour.scale_ratio:g}"


def bench_config(bench, lanes=8):
    """The default-shaped configuration with the smallest power-of-two memories that hold a bench's layers."""
    config = NPUConfig(lanes=lanes, weight_code_bits=CODE_BITS if bench == "two_bit" else 8)
    return fitted_config(bench_specs(bench), config)


def make_bench(bench, config, seed):
    """``(cases, images)`` of a bench (``golden.stimulus.random_layers``)."""
    return random_layers(bench_specs(bench), config, seed)


def two_bit_bench(config, seed):
    """``(cases, images, codes)`` of the ``two_bit`` bench: its layers, weights codes of :data:`TWO_BIT_CODEBOOKS`.

    ``golden.stimulus.two_bit_layers``: inputs, biases, shifts and descriptors are :func:`make_bench`'s, the weights
    random codes stored as codes (``codes``), the expected output from the decoded int8 weights.
    """
    return two_bit_layers(bench_specs("two_bit"), TWO_BIT_CODEBOOKS, config, seed)
