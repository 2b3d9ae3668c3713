"""golden/stimulus.py: placed random layers whose expected outputs the golden engine reproduces (the benches' and the
constrained-random regression's, with its coverage of the descriptor space)."""

import dataclasses

import numpy as np
import pytest

from golden.config import NPUConfig
from golden.descriptor import KINDS, check_descriptor
from golden.engine import run_layer
from golden.layouts import row_pitch
from golden.stimulus import constrained_random_layer, fitted_config, random_layers, two_bit_layers

SPECS = [
    ("conv", "conv", (5, 6, 10), 9, (3, 3), (2, 1), (1, 1, 1, 1), "saturate"),
    ("depthwise", "depthwise", (6, 7, 20), 20, (3, 3), (2, 2), (0, 1, 0, 1), "relu6"),
    ("fully connected", "fully_connected", (1, 1, 37), 10, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
    ("pool", "average_pool", (3, 5, 8), 8, (3, 5), (1, 1), (0, 0, 0, 0), "relu6"),
    ("add", "add", (3, 7, 13), 13, (1, 1), (1, 1), (0, 0, 0, 0), "saturate"),
]


def test_fitted_config_holds_the_layers_and_the_golden_engine_reproduces_them():
    config = fitted_config(SPECS, NPUConfig())
    # 54 + 3 x 6 (the add's two inputs and output) activation words, 55 weight words, 7 bias words: the next powers
    # of two, 16 at least.
    assert (config.act_depth, config.weight_depth, config.bias_depth) == (128, 64, 16)
    cases, images = random_layers(SPECS, config, 3)
    assert [case.name for case in cases] == [spec[0] for spec in SPECS]
    for case in cases:
        output, acc = run_layer(case.descriptor, images, config)
        np.testing.assert_array_equal(output, case.expected)
        np.testing.assert_array_equal(acc, case.acc)
    again, _ = random_layers(SPECS, config, 3)
    assert all(np.array_equal(a.expected, b.expected) for a, b in zip(cases, again))


def test_mixed_layers_store_codes_at_every_quarter_and_the_golden_engine_decodes_them():
    codebooks = ([-96, -24, 24, 96], None, [-128, -1, 1, 127], None, None)
    for code_bits in (2, 8):
        config = dataclasses.replace(fitted_config(SPECS, NPUConfig()), weight_code_bits=code_bits)
        cases, images = two_bit_layers(SPECS, codebooks, config, 3)
        formats = [case.descriptor.weight_format for case in cases]
        assert formats == ([1, 0, 1, 0, 0] if code_bits == 2 else [0, 0, 0, 0, 0])
        for case, codebook in zip(cases, codebooks):
            d = case.descriptor
            # Expected outputs come from the golden ops on the drawn weights, independently of the layouts.
            np.testing.assert_array_equal(run_layer(d, images, config)[0], case.expected)
            assert case.codebook == (None if codebook is None else tuple(codebook))
            if d.weight_format:
                assert [d.codebook0, d.codebook1, d.codebook2, d.codebook3] == codebook
                # Layer i's code words start at quarter i mod 4 of a weight word.
                assert d.weight_base % 4 == cases.index(case) % 4
                # Read as int8 words (from the word holding the first code word), the codes give another output.
                as_int8 = dataclasses.replace(d, weight_format=0, weight_base=d.weight_base // 4, codebook0=0,
                                              codebook1=0, codebook2=0, codebook3=0)
                assert not np.array_equal(run_layer(as_int8, images, config)[0], case.expected)
    for index in (3, 4):
        with pytest.raises(ValueError, match=rf"^layer '{SPECS[index][0]}' has no weights to give two-bit codes$"):
            two_bit_layers(SPECS, codebooks[:index] + ([-3, -1, 1, 3],) + codebooks[index + 1:], config, 3)
    with pytest.raises(ValueError, match=r"^3 codebooks for 5 layers$"):
        two_bit_layers(SPECS, codebooks[:3], config, 3)


def _stream(config, count, seed=5):
    return [constrained_random_layer(seed, index, config) for index in range(count)]


def test_constrained_random_layers_are_legal_reproducible_and_placed_at_random():
    config = dataclasses.replace(NPUConfig(), act_depth=1024)
    layers = _stream(config, 160)
    descriptors = [case.descriptor for case, _ in layers]
    for case, images in layers:
        check_descriptor(case.descriptor, config)
        assert not case.descriptor.weight_format
        output, acc = run_layer(case.descriptor, images, config)   # golden through the layouts
        np.testing.assert_array_equal(output, case.expected)
        np.testing.assert_array_equal(acc, case.acc)
    again = constrained_random_layer(5, 77, config)[0]
    assert again.descriptor == descriptors[77] and np.array_equal(again.expected, layers[77][0].expected)
    assert {d.kind for d in descriptors} == set(KINDS)
    assert {case.descriptor.table for case, _ in layers} == {0, 1}
    tables = [case.table for case, _ in layers if case.table is not None]
    assert any((t == np.arange(-128, 128)).all() for t in tables) and any((t == t[0]).all() for t in tables)
    assert len({d.table_base for d in descriptors if d.table}) > 4
    adds = [d for d in descriptors if d.kind == "add"]
    assert any((d.in2_base, d.in2_row_pitch) == (d.in_base, d.in_row_pitch) for d in adds)      # x + x
    assert any(d.in2_base != d.in_base for d in adds)
    assert {0, -31} <= {shift for d in adds for shift in (d.shift1, d.shift2)}
    assert any(0 in (d.multiplier1, d.multiplier2) for d in adds)
    assert any(d.in_channels % config.lanes for d in adds) and any(d.in_width % config.lanes for d in adds)
    convs = [d for d in descriptors if d.kind in ("conv", "depthwise")]
    assert {d.kernel_height for d in convs} == set(range(1, 8))
    assert {(d.stride_height, d.stride_width) for d in convs} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert {side for d in convs for side in d.padding} == {0, 1, 2, 3}
    assert any(d.padding[0] != d.padding[1] for d in convs)
    assert {d.input_zero_point for d in descriptors} >= {-128, 127}
    assert any(d.in_row_pitch > row_pitch(d.in_width, d.in_channels, config) for d in descriptors)
    assert len({d.in_base for d in descriptors}) > 100 and len({d.out_base for d in descriptors}) > 100
    assert any(d.out_base < d.in_base for d in descriptors) and any(d.out_base > d.in_base for d in descriptors)
    assert {d.shift > 0 for d in descriptors} == {True, False}


def test_constrained_random_adds_of_two_tensors_place_them_apart():
    # Two live tensors never share words: input 2 is input 1 itself, or lies apart from it (as from the output).
    config = dataclasses.replace(NPUConfig(), act_depth=1024)
    adds = [d for d in (case.descriptor for case, _ in _stream(config, 400, seed=6)) if d.kind == "add"]
    assert len(adds) > 25
    for d in adds:
        assert d.in2_base == d.in_base or d.in2_base >= d.in_base + d.in_height * d.in_row_pitch \
            or d.in_base >= d.in2_base + d.in_height * d.in2_row_pitch, d


def test_every_channel_shift_gives_live_outputs_and_tie_layers_sit_on_ties():
    config = dataclasses.replace(NPUConfig(), act_depth=1024)
    live, ties, ratios = set(), 0, []
    for case, _ in _stream(config, 200):
        d = case.descriptor
        k = case.channel_shift
        if d.kind in ("conv", "depthwise") and d.multiplier != 1 << 30 and d.out_height * d.out_width >= 16 \
                and k.max() - k.min() >= 4:
            # Weights scaled by 2**k_c: after its shift every channel's accumulators spread alike (else 2**span apart).
            spread = np.percentile(np.abs(case.acc).reshape(-1, d.out_channels), 90, axis=0) / np.exp2(k)
            ratios.append(spread.max() / spread.min())
        for channel in range(d.out_channels if d.kind != "average_pool" else 0):
            if d.out_height * d.out_width >= 8 and len(np.unique(case.expected[..., channel])) >= 4:
                live.add(int(case.channel_shift[channel]))
        if d.multiplier == 1 << 30 and d.kind not in ("average_pool", "add"):
            # A tie layer: channel c's final rounding right shift r = k_c - shift; acc = 2**r mod 2**(r + 1).
            r = case.channel_shift - d.shift
            on_tie = np.where(r > 0, case.acc % (np.int64(2) << r) == np.int64(1) << r, case.acc % 2 == 1)
            ties += on_tie.mean() > 0.5
    assert live == set(range(16))
    assert ties >= 20
    assert len(ratios) >= 20 and np.median(ratios) < 10


def test_two_bit_constrained_random_layers_mix_formats_and_decode_their_codes():
    config = dataclasses.replace(NPUConfig(), act_depth=1024, weight_code_bits=2)
    kinds, quarters = {0: set(), 1: set()}, set()
    for case, images in _stream(config, 80):
        d = case.descriptor
        kinds[d.weight_format].add(d.kind)
        assert (case.codebook is not None) == bool(d.weight_format)
        if d.weight_format:
            assert list(case.codebook) == sorted(set(case.codebook)) == [d.codebook0, d.codebook1, d.codebook2,
                                                                          d.codebook3]
            quarters.add(d.weight_base % 4)
        np.testing.assert_array_equal(run_layer(d, images, config)[0], case.expected)
    assert kinds == {0: set(KINDS),
                     1: {"conv", "depthwise", "fully_connected"}}
    assert quarters == {0, 1, 2, 3}
