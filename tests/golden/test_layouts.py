"""golden/layouts.py: the activation layout (round trip, bijection, conflict-free banks) and the two-bit weight
codes (packing against string arithmetic, codebook positions, code words four to a weight word)."""

import numpy as np
import pytest

from golden.config import NPUConfig
from golden.images import MemoryImages, load_activation, store_activation
from golden.layouts import (CODE_BITS, activation_location, decode_code_words, join_code_words, pack_words, row_pitch,
                            split_code_words, weight_codes)

CONFIG = NPUConfig(act_depth=512, weight_depth=256, bias_depth=32)
UQ, SPTQ = np.array([-3, -1, 1, 3]), np.array([-4, -1, 1, 4])


@pytest.mark.parametrize("shape", [(3, 5, 8), (2, 9, 13), (4, 16, 3), (1, 1, 40)])
def test_activation_layout_round_trip_and_bijection(shape):
    rng = np.random.default_rng(sum(shape))
    image = MemoryImages.empty(CONFIG).activation
    x = rng.integers(-128, 128, size=shape)
    pitch = row_pitch(shape[1], shape[2], CONFIG) + 2
    assert store_activation(image, x, base=7, config=CONFIG, pitch=pitch) == pitch
    np.testing.assert_array_equal(load_activation(image, shape, base=7, config=CONFIG, pitch=pitch), x)
    groups = -(-shape[2] // CONFIG.lanes)
    y, xx, g = np.meshgrid(*(np.arange(n) for n in (shape[0], shape[1], groups)), indexing="ij")
    bank, address = activation_location(y, xx, g, base=7, pitch=pitch, width=shape[1], config=CONFIG)
    assert len(set(zip(bank.ravel(), address.ravel()))) == bank.size
    assert address.min() >= 7 and address.max() < 7 + shape[0] * pitch
    missing = image.copy()
    missing[bank, address] = 0
    assert not missing.any()          # nothing written outside the tensor's words


@pytest.mark.parametrize("width, groups", [(8, 1), (11, 3), (16, 12), (7, 18), (33, 2)])
def test_banks_are_conflict_free_for_the_depthwise_reads(width, groups):
    lanes = CONFIG.lanes
    for g in range(groups):
        for x0 in range(-2, width):
            banks, _ = activation_location(0, x0 + np.arange(lanes), g, base=0, pitch=0, width=width, config=CONFIG)
            assert len(set(banks.tolist())) == lanes      # stride 1: lanes pixels of one group
            if g + 1 < groups:
                i = np.arange(lanes // 2)
                b0, _ = activation_location(0, x0 + 2 * i, g, base=0, pitch=0, width=width, config=CONFIG)
                b1, _ = activation_location(0, x0 + 2 * i, g + 1, base=0, pitch=0, width=width, config=CONFIG)
                assert len(set(b0.tolist()) | set(b1.tolist())) == lanes   # stride 2: two groups


def _pack_by_strings(codes, lanes):
    # Lane i = r*lanes + c occupies bits [2i+1 : 2i]: lane 0 is the LAST two characters of the binary string.
    flat = np.asarray(codes).reshape(-1, lanes * lanes)
    return [int("".join(format(int(code), "02b") for code in reversed(row)), 2) for row in flat]


@pytest.mark.parametrize("lanes", [2, 4, 8])
def test_code_words_pack_and_decode_against_strings(lanes, codes_of_word):
    rng = np.random.default_rng(lanes)
    config = NPUConfig(lanes=lanes)
    codes = rng.integers(0, 4, size=(50, lanes, lanes))
    codes[0] = 3                                   # every bit set: the top lane's bits reach bit 2*lanes**2 - 1
    codes[1] = 0
    words = pack_words(codes.reshape(len(codes), -1), CODE_BITS)
    assert words == _pack_by_strings(codes, lanes)
    assert words[0] == (1 << 2 * lanes * lanes) - 1 and words[1] == 0
    for word, row in zip(words, codes):
        assert codes_of_word(word, lanes) == row.reshape(-1).tolist()
    decoded = decode_code_words(words, SPTQ * 9, config)
    assert decoded.dtype == np.int8 and decoded.shape == codes.shape
    np.testing.assert_array_equal(decoded, [[[(SPTQ * 9)[c] for c in row] for row in word] for word in codes])
    # The codebook's extremes: int8 -128 and 127.
    np.testing.assert_array_equal(decode_code_words(words[:1], [-128, -1, 0, 127], config),
                                  np.full((1, lanes, lanes), 127))


def test_weight_codes_are_codebook_positions():
    weights = np.array([[-4, -1], [1, 4]])
    np.testing.assert_array_equal(weight_codes(weights, SPTQ), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(weight_codes(UQ[[3, 0, 2, 1]], UQ), [3, 0, 2, 1])
    for bad in ([0], [2], [5], [-5]):
        with pytest.raises(ValueError, match=r"a weight is not in the codebook \[-4, -1, 1, 4\]"):
            weight_codes(np.array(bad), SPTQ)


@pytest.mark.parametrize("lanes", [1, 2, 8])
def test_code_words_are_quarters_of_weight_words_against_strings(lanes):
    # Code word n is quarter n mod 4 of weight word n div 4: in the word's binary string (most significant bit first)
    # quarter q is the (4 - q)-th block of 2 * lanes**2 characters; a short last word is padded with 0s.
    rng = np.random.default_rng(lanes)
    config = NPUConfig(lanes=lanes)
    width = 2 * lanes * lanes
    code_words = [(1 << width) - 1, 0] + [int(v) for v in rng.integers(0, 1 << min(width, 62), size=7)]
    words = join_code_words(code_words, config)
    assert len(words) == 3
    for m, word in enumerate(words):
        bits = format(word, f"0{4 * width}b")
        assert len(bits) == 4 * width                       # fits the 8 * lanes**2-bit weight word
        quarters = [int(bits[(3 - q) * width:(4 - q) * width], 2) for q in range(4)]
        assert quarters == (code_words[4 * m:4 * m + 4] + [0, 0, 0])[:4]
    assert split_code_words(words, config) == code_words + [0, 0, 0]
