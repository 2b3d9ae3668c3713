"""The engine benches' layers: specs per bench, and the configuration whose memories hold them all; the controller's
program of the ``program`` bench.

``golden.stimulus`` draws each layer's data and parameters from a fixed seed, places every layer's input, output,
weights and biases in its own region of the memories (one Verilog build runs all of a bench's layers one after
another) and computes the expected output with the golden ops on the original arrays. The pytest launcher and the
cocotb module call :func:`make_bench` (:func:`program_bench`) with the same seed and get the same layers.
"""

import dataclasses

import numpy as np

from golden.config import NPUConfig
from golden.controller import hardware_error, run_program
from golden.descriptor import encode_descriptor
from golden.layouts import CODE_BITS
from golden.stimulus import Flavour, chained_program, fitted_config, mutated_descriptor, named_specs, random_layers, \
    two_bit_layers

__all__ = ["BENCHES", "TWO_BIT_CODEBOOKS", "bench_config", "make_bench", "two_bit_bench", "program_bench",
           "corrupt_layer"]

#: Codebook of each ``two_bit`` bench layer (``None``: int8 weights): SPTQ/MSPTQ levels {-4, -1, 1, 4} x 24, the int8
#: extremes, UQ levels {-3, -1, 1, 3} x 27 and an irregular one. The two-bit layers start at code words 0, 2, 3 and 1
#: of a weight word (``golden.stimulus``: quarter index mod 4), so every quarter is read.
TWO_BIT_CODEBOOKS = ([-96, -24, 24, 96], None, [-128, -1, 1, 127], [-81, -27, 27, 81], None, [-113, -40, 7, 90], None)

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
    # Max pooling walked as depthwise (golden.pool.max_pool2d; zero points 0, identity requantization): ResNet's
    # 3x3/2 pad 1, YOLO's 2x2/2 and 5x5/1 pad 2, inputs crowding -128 (padding never wins), a clamp, a table after.
    "max_pool": [
        ("max_pool", (9, 13, 16), 16, (3, 3), (2, 2), (1, 1, 1, 1), "plain"),
        ("max_pool", (8, 10, 24), 24, (2, 2), (2, 2), (0, 0, 0, 0), "plain"),
        ("max_pool", (7, 9, 12), 12, (5, 5), (1, 1), (2, 2, 2, 2), Flavour(input_zero_point=-128, tiny_inputs=True)),
        ("max_pool", (6, 7, 20), 20, (3, 3), (1, 2), (1, 1, 0, 1), Flavour(clamp="relu")),
        ("max_pool", (5, 6, 8), 8, (3, 3), (2, 2), (1, 1, 1, 1), Flavour(table="random")),
    ],
    # Activation tables after the requantizer (descriptor table, table_base): random entries, the identity and a
    # constant, after every kind; a clamped layer reads only part of its table.
    "table": [
        ("conv", (7, 9, 12), 10, (3, 3), (1, 1), (1, 1, 1, 1), Flavour(table="random")),
        ("depthwise", (6, 11, 16), 16, (3, 3), (2, 2), (1, 1, 1, 1), Flavour(table="random", clamp="relu6",
                                                                             gain=200.0)),
        ("fully_connected", (1, 1, 40), 10, (1, 1), (1, 1), (0, 0, 0, 0), Flavour(table="identity")),
        ("average_pool", (4, 4, 16), 16, (4, 4), (1, 1), (0, 0, 0, 0), Flavour(table="constant")),
        ("add", (5, 8, 12), 12, (1, 1), (1, 1), (0, 0, 0, 0), Flavour(table="random")),
        ("conv", (6, 7, 16), 24, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
    ],
    # int8 and two-bit layers in one engine with the decoder (weight_code_bits 2, :func:`two_bit_bench`,
    # :data:`TWO_BIT_CODEBOOKS`): input channels not multiples of the lanes, so the padding columns of two-bit layers
    # (code 0 -> codebook0 != 0) must be zeroed; zero point -128 makes a leak large.
    "two_bit": [
        ("conv", (7, 9, 12), 10, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("conv", (6, 5, 9), 12, (3, 3), (2, 2), (1, 1, 1, 1), "edge-zp"),
        ("conv", (6, 7, 20), 16, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
        ("depthwise", (5, 8, 12), 12, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("average_pool", (3, 5, 8), 8, (3, 5), (1, 1), (0, 0, 0, 0), "plain"),
        ("fully_connected", (1, 1, 37), 10, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
        ("fully_connected", (2, 3, 8), 5, (2, 3), (1, 1), (0, 0, 0, 0), "saturate"),
    ],
    # The controller's program (:func:`program_bench`): a small network whose layers read the previous output, but
    # layer 3, which reads its own input.
    "program": [
        ("conv", (6, 6, 8), 16, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("depthwise", (6, 6, 16), 16, (3, 3), (2, 2), (0, 1, 0, 1), "relu6"),
        ("conv", (3, 3, 16), 24, (1, 1), (1, 1), (0, 0, 0, 0), "saturate"),
        ("conv", (4, 4, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
        ("depthwise", (4, 4, 8), 8, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
        ("average_pool", (4, 4, 8), 8, (4, 4), (1, 1), (0, 0, 0, 0), "plain"),
        ("fully_connected", (1, 1, 8), 10, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
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
    """The bench's layer specs (``golden.stimulus.named_specs``, prefixed with the bench's name)."""
    return named_specs(BENCHES[bench], bench)



def bench_config(bench, lanes=8):
    """The default-shaped configuration with the smallest power-of-two memories that hold a bench's layers."""
    config = NPUConfig(lanes=lanes, weight_code_bits=CODE_BITS if bench == "two_bit" else 8)
    return fitted_config(bench_specs(bench), config)


def make_bench(bench, config, seed):
    """``(cases, images)`` of a bench (``golden.stimulus.random_layers``)."""
    return random_layers(bench_specs(bench), config, seed)


def two_bit_bench(config, seed):
    """``(cases, images)`` of the ``two_bit`` bench: its layers, weights codes of :data:`TWO_BIT_CODEBOOKS` or int8.

    ``golden.stimulus.two_bit_layers``: inputs, biases and shifts drawn as :func:`make_bench` draws them, a two-bit
    layer's weights random codes stored as codes, the expected output from the decoded int8 weights.
    """
    return two_bit_layers(bench_specs("two_bit"), TWO_BIT_CODEBOOKS, config, seed)


def program_bench(config, seed):
    """``(descriptors, images, outputs)`` of the ``program`` bench: its layers as one chained program
    (``golden.stimulus.chained_program``), the images and every layer's output (``golden.controller.run_program``)."""
    cases, images = make_bench("program", config, seed)
    descriptors = chained_program(cases, config)
    model = dataclasses.replace(images, activation=images.activation.copy())
    return descriptors, images, run_program(descriptors, model, config)


def corrupt_layer(descriptors, config, seed):
    """``(layer, word, check)``: the middle layer's descriptor corrupted (``golden.stimulus.mutated_descriptor``) into a
    word the controller refuses, and the check that refuses it (``golden.controller.hardware_error``)."""
    rng = np.random.default_rng(seed)
    layer = len(descriptors) // 2
    while True:
        bad = mutated_descriptor(rng, descriptors[layer], config)
        check = hardware_error(bad, config)
        if check is not None:
            return layer, encode_descriptor(bad, config, check=False), check
