"""golden/controller.py: every descriptor the controller's checks refuse, check_descriptor refuses too (thousands of
corrupted descriptors, every check reached); each check named on a hand-made descriptor, limits just inside passing;
programs, their errors and their cycles."""

import dataclasses

import numpy as np
import pytest

from golden.config import NPUConfig
from golden.controller import CHECKS, LAYER_OVERHEAD, hardware_error, program_cycles, program_error, run_program
from golden.descriptor import check_descriptor, layer_descriptor
from golden.engine import run_layer
from golden.sequencer import layer_cycles
from golden.stimulus import chained_program, constrained_random_layer, mutated_descriptor, named_specs, random_layers

CONFIG = NPUConfig(lanes=4, act_depth=256, weight_depth=128, bias_depth=16, dim_bits=6, channel_bits=7,
                   program_depth=8)
SPECS = named_specs([
    ("conv", (5, 6, 3), 8, (3, 3), (2, 2), (1, 1, 1, 1), "saturate"),
    ("depthwise", (3, 3, 8), 8, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
    ("conv", (2, 2, 5), 3, (1, 1), (1, 1), (0, 0, 0, 0), "relu6"),
    ("average_pool", (2, 2, 3), 3, (2, 2), (1, 1), (0, 0, 0, 0), "plain"),
    ("fully_connected", (1, 1, 3), 4, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
], "program")


def valid_descriptors():
    """Descriptors check_descriptor accepts: the program's layers and 60 constrained-random ones."""
    cases, _ = random_layers(SPECS, CONFIG, 7)
    return [case.descriptor for case in cases] + [constrained_random_layer(11, index, CONFIG)[0].descriptor
                                                  for index in range(60)]


def test_valid_descriptors_pass():
    for descriptor in valid_descriptors():
        assert hardware_error(descriptor, CONFIG) is None, descriptor


def test_what_the_controller_refuses_check_descriptor_refuses():
    rng = np.random.default_rng(2026)
    valid = valid_descriptors()
    hits = dict.fromkeys(CHECKS[1:], 0)
    for _ in range(4000):
        descriptor = mutated_descriptor(rng, valid[int(rng.integers(len(valid)))], CONFIG)
        check = hardware_error(descriptor, CONFIG)
        if check is not None:
            hits[check] += 1
            with pytest.raises((ValueError, KeyError)):
                check_descriptor(descriptor, CONFIG)
    assert all(hits.values()), hits    # every descriptor check is reached by the mutations


def conv():
    return layer_descriptor("conv", (4, 5, 6), 7, config=CONFIG, kernel=(3, 3), padding=(1, 1, 1, 1),
                            in_base=0, out_base=100, bias_base=3)


def fc():
    return layer_descriptor("fully_connected", (2, 3, 8), 5, config=CONFIG, kernel=(2, 3), in_base=0, out_base=50)


def add():
    return layer_descriptor("add", (3, 4, 8), 8, config=CONFIG, in_base=0, in2_base=30, out_base=60,
                            multiplier=1 << 30, multiplier1=1 << 30, multiplier2=1 << 30)


# One hand-made failure per check: the descriptor and the fields changed.
FAILURES = [
    ("kind", conv, dict(kind=6)),
    ("kind", conv, dict(kind=7)),
    ("size", conv, dict(in_channels=0)),
    ("size", conv, dict(kernel_width=0)),
    ("stride", conv, dict(stride_height=3)),
    ("stride", conv, dict(stride_width=0)),
    ("padding", conv, dict(pad_top=3, kernel_height=3)),
    ("padding", fc, dict(pad_left=3)),
    ("output_size", conv, dict(out_height=6)),   # padding after the input 3: not below the kernel
    ("output_size", conv, dict(out_width=2)),    # padding after the input -2
    ("output_size", conv, dict(out_width=7)),
    ("channels", lambda: layer_descriptor("depthwise", (4, 5, 6), 6, config=CONFIG, kernel=(3, 3),
                                          padding=(1, 1, 1, 1), out_base=100), dict(out_channels=5)),
    ("channels", add, dict(out_channels=7)),
    ("window", fc, dict(kernel_width=2, out_width=2)),
    ("window", add, dict(kernel_width=2, out_width=3)),
    ("window", add, dict(kernel_height=2, in_height=4)),
    ("row_pitch", conv, dict(in_row_pitch=3)),
    ("row_pitch", conv, dict(out_row_pitch=3)),
    ("row_pitch", add, dict(in2_row_pitch=1)),
    ("activation_bounds", conv, dict(out_base=256 - 4 * 4 + 1)),
    ("activation_bounds", add, dict(in2_base=256 - 3 * 2 + 1)),
    ("activation_bounds", conv, dict(in_row_pitch=65)),   # 4 rows of 65 words
    ("bias_bounds", conv, dict(bias_base=15)),
]


@pytest.mark.parametrize("check, make, fields", FAILURES, ids=[f"{c}-{'-'.join(f)}" for c, _, f in FAILURES])
def test_each_check_names_its_failure(check, make, fields):
    descriptor = make()
    assert hardware_error(descriptor, CONFIG) is None
    broken = dataclasses.replace(descriptor, **fields)
    assert hardware_error(broken, CONFIG) == check
    with pytest.raises(ValueError):
        check_descriptor(broken, CONFIG)


def test_limits_just_inside_pass():
    # The boundaries of the region checks: a region ending at act_depth, biases ending at bias_depth.
    assert hardware_error(dataclasses.replace(conv(), out_base=256 - 4 * 4), CONFIG) is None
    assert hardware_error(dataclasses.replace(conv(), bias_base=14), CONFIG) is None


def test_program_error_and_layer_count():
    program = [conv(), fc(), conv()]
    assert program_error(program, CONFIG) is None
    assert program_error(program, CONFIG, layer_count=0) == (0, "layer_count")
    assert program_error(program * 3, CONFIG) == (0, "layer_count")      # 9 layers > program_depth 8
    assert program_error(program * 3, CONFIG, layer_count=8) is None
    broken = [conv(), dataclasses.replace(fc(), stride_width=3), conv()]
    assert program_error(broken, CONFIG) == (1, "stride")
    assert program_error(broken, CONFIG, layer_count=1) is None
    with pytest.raises(ValueError, match=r"^layer 1: the controller's stride check fails$"):
        run_program(broken, None, CONFIG)


def test_run_program_chains_layers_and_counts_cycles():
    cases, images = random_layers(SPECS, CONFIG, 7)
    program = chained_program(cases, CONFIG)
    assert [d.in_base == p.out_base for p, d in zip(program, program[1:])] == [True, False, True, True]
    reference = dataclasses.replace(images, activation=images.activation.copy())
    outputs = run_program(program, images, CONFIG)
    for case, descriptor, output in zip(cases, program, outputs):
        np.testing.assert_array_equal(output, run_layer(descriptor, reference, CONFIG)[0])
        if descriptor is case.descriptor:      # an unchained layer gives its own expected output
            np.testing.assert_array_equal(output, case.expected)
    assert program_cycles(program, CONFIG) == sum(layer_cycles(d, CONFIG) for d in program) + 5 * LAYER_OVERHEAD
