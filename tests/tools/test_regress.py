"""tools/regress.py and tb/regress_cases.py without a simulator: the stray-write check, repro bundles, coverage bins,
command-line errors."""

import dataclasses

import numpy as np
import pytest

from golden.engine import run_layer
from golden.stimulus import constrained_random_layer
from regress_cases import compare_memory, layer_coverage, output_words, read_bundle, regress_config, write_bundle
from tools import regress


def _layer(code_bits=8, index=3):
    config = regress_config(code_bits)
    return (config, *constrained_random_layer(11, index, config))


def test_compare_memory_finds_wrong_outputs_and_stray_writes_but_ignores_padding_lanes():
    config, case, images = _layer()
    before = images.activation.copy()
    after = before.copy()
    run_layer(case.descriptor, dataclasses.replace(images, activation=after), config)
    got, stray = compare_memory(before, after, case.descriptor, config)
    np.testing.assert_array_equal(got, case.expected)
    assert stray == []
    d = case.descriptor
    banks, addresses = output_words(d, config)
    if d.out_channels % config.lanes:
        after[banks[0, 0, -1], addresses[0, 0, -1], -1] ^= 1      # a padding lane: free
        assert compare_memory(before, after, d, config)[1] == []
    after[banks[0, 0, 0], addresses[0, 0, 0], 0] ^= 1               # an output
    got, stray = compare_memory(before, after, d, config)
    assert got[0, 0, 0] != case.expected[0, 0, 0] and stray == []
    outside = (d.out_base - 1) % config.act_depth if d.out_base else d.out_base + d.out_height * d.out_row_pitch
    after[5, outside] ^= 7                                           # a word outside the output
    assert compare_memory(before, after, d, config)[1] == [(5, outside)]


@pytest.mark.parametrize("code_bits, index", [(8, 0), (2, 1), (2, 2)])
def test_a_bundle_reads_back_and_golden_reproduces_its_layer(tmp_path, code_bits, index):
    config, case, images = _layer(code_bits, index=index)
    # Layer 1 of the two-bit engine's stream is a two-bit layer, layer 2 an int8 one.
    assert case.descriptor.weight_format == int((code_bits, index) == (2, 1))
    write_bundle(tmp_path, config, case, images, case.expected, "a message")
    read_config, name, descriptor, read_images = read_bundle(tmp_path)
    assert (read_config, name, descriptor) == (config, case.name, case.descriptor)
    for field in ("activation", "weights", "bias", "channel_shift"):
        np.testing.assert_array_equal(getattr(read_images, field), getattr(images, field))
    np.testing.assert_array_equal(run_layer(descriptor, read_images, config)[0], case.expected)
    assert (tmp_path / "mismatch.txt").read_text() == "a message\n"
    assert {"expected.npy", "actual.npy", "activation.hex", "bias.hex"} <= {p.name for p in tmp_path.iterdir()}


def test_coverage_bins_of_a_layer():
    config = regress_config(8)
    for index in range(40):
        case = constrained_random_layer(11, index, config)[0]
        if case.descriptor.multiplier == 1 << 30 and case.descriptor.kind == "conv":
            break
    bins = layer_coverage(case, config)
    assert bins[f"kind: {case.descriptor.kind}"] == case.expected.size
    assert bins["tie share: >= 50 %"] == case.expected.size
    assert bins["tie outputs: acc negative"] + bins["tie outputs: acc positive"] > case.expected.size / 2
    assert bins["two-bit: no"] == bins["engine: int8"] == case.expected.size


def test_an_add_layer_bundles_and_bins(tmp_path):
    config = regress_config(8)
    case, images = next(layer for layer in (constrained_random_layer(11, index, config) for index in range(60))
                               if layer[0].descriptor.kind == "add")
    d, outputs = case.descriptor, case.expected.size
    bins = layer_coverage(case, config)
    assert bins["kind: add"] == bins["kernel: add elementwise"] == outputs
    assert bins["add: input 2 is input 1" if (d.in2_base, d.in2_row_pitch) == (d.in_base, d.in_row_pitch)
                else "add: two tensors"] == outputs
    assert not any(key.startswith("live k_c") for key in bins)
    write_bundle(tmp_path, config, case, images, case.expected, "a message")
    _, _, descriptor, read_images = read_bundle(tmp_path)
    assert descriptor == d
    np.testing.assert_array_equal(run_layer(descriptor, read_images, config)[0], case.expected)


@pytest.mark.parametrize("argv, message", [
    (["--outputs", "0"], "argument --outputs: must be a positive integer, not '0'"),
    (["--seed", "-1"], "argument --seed: must be a non-negative integer, not '-1'"),
    (["--replay", "no/such/bundle"], "'no/such/bundle' is not a repro bundle (no descriptor.json)"),
])
def test_command_errors_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        regress.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"python tools/regress.py: error: {message}\n"
