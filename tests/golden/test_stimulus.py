"""golden/stimulus.py: placed random layers whose expected outputs the golden engine reproduces; the bias word."""

import dataclasses

import numpy as np
import pytest
from amaranth.lib import data

from golden.config import NPUConfig
from golden.engine import run_layer
from golden.layouts import bias_word_width, pack_bias_words, unpack_bias_words
from golden.stimulus import fitted_config, random_layers, two_bit_layers
from hdl.layouts import bias_word

SPECS = [
    ("conv", "conv", (5, 6, 10), 9, (3, 3), (2, 1), (1, 1, 1, 1), "saturate"),
    ("depthwise", "depthwise", (6, 7, 20), 20, (3, 3), (2, 2), (0, 1, 0, 1), "relu6"),
    ("fully connected", "fully_connected", (1, 1, 37), 10, (1, 1), (1, 1), (0, 0, 0, 0), "edge-zp"),
    ("pool", "average_pool", (3, 5, 8), 8, (3, 5), (1, 1), (0, 0, 0, 0), "relu6"),
]


def test_fitted_config_holds_the_layers_and_the_golden_engine_reproduces_them():
    config = fitted_config(SPECS, NPUConfig())
    # 54 activation words, 55 weight words, 7 bias words: the next powers of two, 16 at least.
    assert (config.act_depth, config.weight_depth, config.bias_depth) == (64, 64, 16)
    cases, images = random_layers(SPECS, config, 3)
    assert [case.name for case in cases] == [spec[0] for spec in SPECS]
    for case in cases:
        output, acc = run_layer(case.descriptor, images, config)
        np.testing.assert_array_equal(output, case.expected)
        np.testing.assert_array_equal(acc, case.acc)
    again, _ = random_layers(SPECS, config, 3)
    assert all(np.array_equal(a.expected, b.expected) for a, b in zip(cases, again))


def test_two_bit_layers_decode_to_their_codebooks():
    specs = [spec for spec in SPECS if spec[1] != "average_pool"]
    codebooks = ([-96, -24, 24, 96], [-81, -27, 27, 81], [-128, -1, 1, 127])
    config = dataclasses.replace(fitted_config(specs, NPUConfig()), weight_code_bits=2)
    cases, images, codes = two_bit_layers(specs, codebooks, config, 3)
    assert codes.min() >= 0 and codes.max() <= 3
    for case, codebook in zip(cases, codebooks):
        d = case.descriptor
        decoded = dataclasses.replace(images, weights=np.asarray(codebook, dtype=np.int8)[codes])
        np.testing.assert_array_equal(run_layer(d, decoded, config)[0], case.expected)
        assert case.name.endswith(f"codebook {codebook}")
    with pytest.raises(ValueError, match=r"^layer 'pool' has no weights to give two-bit codes$"):
        two_bit_layers(SPECS, codebooks + ([-3, -1, 1, 3],), config, 3)


def test_bias_word_is_one_definition_for_golden_and_hdl():
    config = NPUConfig(lanes=4)
    rng = np.random.default_rng(0)
    bias = rng.integers(-(1 << 31), 1 << 31, size=(5, 4))
    channel_shift = rng.integers(0, 16, size=(5, 4))
    words = pack_bias_words(bias, channel_shift, config)
    assert max(words).bit_length() <= bias_word_width(config) == data.Layout.cast(bias_word(config)).size
    got_bias, got_shift = unpack_bias_words(words, config)
    np.testing.assert_array_equal(got_bias, bias)
    np.testing.assert_array_equal(got_shift, channel_shift)
    view = data.Const(bias_word(config), words[2])
    assert [view.bias[c] for c in range(4)] == bias[2].tolist()
    assert [view.channel_shift[c] for c in range(4)] == channel_shift[2].tolist()
