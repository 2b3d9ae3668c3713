"""golden/stimulus.py: placed random layers whose expected outputs the golden engine reproduces."""

import dataclasses

import numpy as np
import pytest

from golden.config import NPUConfig
from golden.engine import run_layer
from golden.stimulus import fitted_config, random_layers, two_bit_layers

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
