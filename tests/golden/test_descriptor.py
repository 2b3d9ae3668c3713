"""golden/descriptor.py: the layer descriptor's encoding round trip, its field widths and the refused descriptors."""

import dataclasses

import pytest

from golden.config import NPUConfig
from golden.descriptor import (check_descriptor, decode_descriptor, descriptor_fields, encode_descriptor,
                               layer_descriptor)

CONFIG = NPUConfig(act_depth=512, weight_depth=256, bias_depth=32)


def test_descriptor_round_trip_and_field_widths():
    descriptor = layer_descriptor("depthwise", (9, 13, 24), 24, config=CONFIG, kernel=(3, 3), stride=(2, 2),
                                  padding=(0, 1, 0, 1), in_base=3, out_base=200, weight_base=17, bias_base=4,
                                  input_zero_point=-128, multiplier=(1 << 31) - 1, shift=-32, output_zero_point=127,
                                  qmin=-5, qmax=100)
    value = encode_descriptor(descriptor, CONFIG)
    assert value < 1 << sum(width for _, width, _ in descriptor_fields(CONFIG))
    assert decode_descriptor(value, CONFIG) == descriptor
    # A pad row or column the window never reaches is implied away: same output, minimal padding.
    assert descriptor.padding == (0, 0, 0, 0) and descriptor.out_shape == (4, 6, 24)


@pytest.mark.parametrize("change, message", [
    (dict(out_base=10), "overlap"),
    (dict(in_row_pitch=1), "in_row_pitch 1 is below 2 words, the size of one row of 7 x 16"),
    (dict(out_base=500), "exceeds act_depth 512"),
    (dict(stride_width=3), r"stride_width must be an integer in \[1, 2\], not 3"),
    (dict(out_width=9), "out_width 9 does not follow"),
    (dict(pad_top=4), r"pad_top must be an integer in \[0, 3\], not 4"),
    (dict(kind="pool"), "kind must be one of"),
    (dict(weight_base=250), "exceed weight_depth 256"),
    (dict(multiplier=5), "multiplier must be 0 or in"),
    (dict(qmin=10, qmax=9), "qmin 10 exceeds qmax 9"),
])
def test_bad_descriptors_are_refused(change, message):
    good = layer_descriptor("conv", (6, 7, 16), 24, config=CONFIG, kernel=(3, 3), padding=(1, 1, 1, 1),
                            in_base=0, out_base=100)
    with pytest.raises(ValueError, match=message):
        check_descriptor(dataclasses.replace(good, **change), CONFIG)


TWO_BIT = dataclasses.replace(CONFIG, weight_code_bits=2)


def _add(**change):
    fields = dict(in_base=0, out_base=100, in2_base=200, input_zero_point=-3, input2_zero_point=7,
                  multiplier=1 << 30, shift=-18, multiplier1=(1 << 31) - 1, shift1=0, multiplier2=1 << 30, shift2=-1,
                  output_zero_point=-128, qmin=-128, qmax=127)
    fields.update(change)
    return layer_descriptor("add", (6, 7, 16), 16, config=CONFIG, **fields)


def test_add_and_two_bit_descriptors_round_trip():
    add = _add()
    assert add.in2_row_pitch == add.in_row_pitch and add.macs == 0
    assert decode_descriptor(encode_descriptor(add, CONFIG), CONFIG) == add
    coded = layer_descriptor("conv", (6, 7, 16), 24, config=TWO_BIT, kernel=(3, 3), padding=(1, 1, 1, 1),
                             out_base=100, weight_base=4 * 256 - 54, weight_format=1, codebook0=-127, codebook1=-3,
                             codebook2=3, codebook3=127)
    assert decode_descriptor(encode_descriptor(coded, TWO_BIT), TWO_BIT) == coded


@pytest.mark.parametrize("change, message", [
    (dict(in2_base=90), "second input and output tensors overlap"),
    (dict(in2_base=501), "second input tensor .* exceeds act_depth 512"),
    (dict(in2_row_pitch=1), "in2_row_pitch 1 is below"),
    (dict(shift1=1), "an add's shift1 must be <= 0"),
    (dict(multiplier2=12), "multiplier2 must be 0 or in"),
    (dict(kernel_height=3, pad_top=1), "an add keeps its shape"),
    (dict(bias_base=1), "an add has no weights"),
])
def test_bad_add_descriptors_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        check_descriptor(dataclasses.replace(_add(), **change), CONFIG)


@pytest.mark.parametrize("config, change, message", [
    (CONFIG, dict(in2_base=3), "in2_base is an add's field"),
    (CONFIG, dict(weight_format=1, codebook0=-1, codebook1=0, codebook2=1, codebook3=2), "needs an engine"),
    (CONFIG, dict(codebook3=1), "must be 0 for an int8 layer"),
    (TWO_BIT, dict(weight_format=1, codebook0=1, codebook1=1, codebook2=2, codebook3=3), "must be ascending"),
    (TWO_BIT, dict(weight_format=1, weight_base=4 * 256 - 53, codebook0=0, codebook1=1, codebook2=2, codebook3=3),
     "54 code words from 971"),
])
def test_weight_format_and_add_fields_are_checked(config, change, message):
    good = layer_descriptor("conv", (6, 7, 16), 24, config=config, kernel=(3, 3), padding=(1, 1, 1, 1),
                            out_base=100)
    with pytest.raises(ValueError, match=message):
        check_descriptor(dataclasses.replace(good, **change), config)
