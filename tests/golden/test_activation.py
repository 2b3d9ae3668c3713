"""golden/activation.py against scalar Python reimplementations of LiteRT's int8 HARD_SWISH, LEAKY_RELU and RELU reference
kernels and of LUTPopulate (written from hard_swish.h, leaky_relu.h, activations.cc and lut.h, ints as C++ ints)."""

import math
import struct

import numpy as np
import pytest

from golden.activation import FIXED_OUTPUT, activation_table, lookup


def f32(value):
    """Round a Python float to float32 and back (what a C++ float holds)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def c_div(a, b):
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b > 0) else -quotient


def frexp_multiplier(real):
    # TFLite QuantizeMultiplier (double)
    if real == 0:
        return 0, 0
    q, e = math.frexp(real)
    m = int(math.floor(q * 2**31 + 0.5))
    if m == 2**31:
        m, e = m // 2, e + 1
    if e < -31:
        return 0, 0
    return m, e


def srdhm(a, b, bits):
    low = -(1 << (bits - 1))
    if a == b == low:
        return -low - 1
    ab = a * b
    nudge = (1 << (bits - 2)) if ab >= 0 else 1 - (1 << (bits - 2))
    return c_div(ab + nudge, 1 << (bits - 1))


def rdbpot(x, exponent):
    mask = (1 << exponent) - 1
    return (x >> exponent) + ((x & mask) > (mask >> 1) + (x < 0))


def to_int16_multiplier(m32):
    return 32767 if m32 >= 2**31 - 1 - 2**15 else (m32 + 2**15) >> 16


def ref_hard_swish(q, s_in, zp_in, s_out, zp_out):
    hires_scale = f32(s_in / 128)
    m_out, e_out = frexp_multiplier(f32(hires_scale / s_out))
    m_relu, e_relu = frexp_multiplier(f32(hires_scale / f32(3.0 / 32768.0)))
    m_out, m_relu = to_int16_multiplier(m_out), to_int16_multiplier(m_relu)
    v = (q - zp_in) * 128
    pre = srdhm(v, m_out, 16)
    r = v
    if e_relu > 0:
        r = max(-32768, min(32767, r * 2 ** (e_relu - 1)))
    r = srdhm(r, m_relu, 16)
    if e_relu > 0:
        r = max(-32768, min(32767, r * 2))
    if e_relu < 0:
        r = rdbpot(r, -e_relu)
    r = (r + 32768) >> 1
    out = rdbpot(c_div(r * pre, 1 << 15), -e_out) + zp_out
    return max(-128, min(127, out))


def ref_mbqm(x, m, e):
    return rdbpot(srdhm(x * 2 ** max(e, 0), m, 32), max(-e, 0))


def ref_leaky_relu(q, s_in, zp_in, s_out, zp_out, alpha):
    identity = frexp_multiplier(f32(s_in / s_out))
    negative = frexp_multiplier(f32(f32(s_in * f32(alpha)) / s_out))
    v = q - zp_in
    return max(-128, min(127, zp_out + ref_mbqm(v, *(identity if v >= 0 else negative))))


def ref_relu(q, s_in, zp_in, s_out, zp_out, six):
    # QuantizedReluX: act_min 0, act_max 6 or +inf quantized with roundf(act / scale) in float32.
    low = max(-128, zp_out)
    high = min(127, zp_out + int(math.copysign(math.floor(abs(f32(6.0 / s_out)) + 0.5), 1.0))) if six else 127
    return max(low, min(high, zp_out + ref_mbqm(q - zp_in, *frexp_multiplier(f32(s_in / s_out)))))


def ref_lut(function, q, s_in, zp_in, s_out, zp_out):
    real = f32(s_in * (q - zp_in))
    if function == "logistic":
        value = f32(1.0 / f32(1.0 + f32(math.exp(-real)))) if -real < 88 else 0.0
    else:
        value = f32(math.tanh(real))
    rescaled = f32(value * f32(1.0 / s_out))
    return max(-128, min(127, int(math.copysign(math.floor(abs(rescaled) + 0.5), rescaled)) + zp_out))


def _quantizations(seed, fixed=None):
    rng = np.random.default_rng(seed)
    for index in range(12):
        s_in = f32(2.0 ** rng.uniform(-9, 1))
        zp_in = (-128, 127, 0)[index] if index < 3 else int(rng.integers(-128, 128))
        if fixed:
            yield s_in, zp_in, f32(fixed[0]), fixed[1]
        else:
            yield s_in, zp_in, f32(s_in * 2.0 ** rng.uniform(-1.5, 3)), int(rng.integers(-128, 128))


def test_hard_swish_table_matches_scalar_reference():
    for s_in, zp_in, s_out, zp_out in _quantizations(1):
        table = activation_table("hard_swish", s_in, zp_in, s_out, zp_out)
        assert table.tolist() == [ref_hard_swish(q, s_in, zp_in, s_out, zp_out) for q in range(-128, 128)]


def test_leaky_relu_table_matches_scalar_reference():
    for (s_in, zp_in, s_out, zp_out), alpha in zip(_quantizations(2), (0.01, 0.1, 0.2, 1 / 3, 0.0, 0.5) * 2):
        table = activation_table("leaky_relu", s_in, zp_in, s_out, zp_out, alpha=alpha)
        assert table.tolist() == [ref_leaky_relu(q, s_in, zp_in, s_out, zp_out, alpha) for q in range(-128, 128)]


@pytest.mark.parametrize("six", [False, True])
def test_relu_tables_match_scalar_reference(six):
    for s_in, zp_in, s_out, zp_out in _quantizations(4 + six):
        table = activation_table("relu6" if six else "relu", s_in, zp_in, s_out, zp_out)
        assert table.tolist() == [ref_relu(q, s_in, zp_in, s_out, zp_out, six) for q in range(-128, 128)]


@pytest.mark.parametrize("function", ["logistic", "tanh"])
def test_lut_tables_match_scalar_reference(function):
    for s_in, zp_in, s_out, zp_out in _quantizations(3, FIXED_OUTPUT[function]):
        table = activation_table(function, s_in, zp_in, s_out, zp_out)
        assert table.tolist() == [ref_lut(function, q, s_in, zp_in, s_out, zp_out) for q in range(-128, 128)]


def test_tables_are_monotonic_and_reach_the_function_values():
    # hard_swish(x) = x for x >= 3, 0 for x <= -3; logistic and tanh are non-decreasing.
    table = activation_table("hard_swish", 0.05, 0, 0.05, 0)
    assert table[128 + 100] == 100 and table[128 - 100] == 0 and table[128] == 0
    for function in ("logistic", "tanh"):
        assert np.all(np.diff(activation_table(function, 0.07, 3, *FIXED_OUTPUT[function])) >= 0)
    # relu clamps at the output zero point, relu6 at 6 / s_out above it; the positive side is rescaled.
    relu, relu6 = (activation_table(function, 0.1, 3, 0.05, -128) for function in ("relu", "relu6"))
    assert relu[:128 + 3].tolist() == [-128] * (128 + 3) and relu[128 + 13] == -128 + 20 and relu[255] == -128 + 248
    assert relu6[128 + 13] == -128 + 20 and relu6[255] == -128 + 120


def test_lookup_indexes_by_value():
    table = np.arange(-128, 128)[::-1]
    x = np.array([[-128, 0], [127, 5]], np.int8)
    np.testing.assert_array_equal(lookup(x, table), -1 - x.astype(np.int64))


@pytest.mark.parametrize("call, message", [
    (lambda: activation_table("gelu", 0.1, 0, 0.1, 0), "function must be one of"),
    (lambda: activation_table("leaky_relu", 0.1, 0, 0.1, 0), "alpha is given for leaky_relu and only for it"),
    (lambda: activation_table("tanh", 0.1, 0, 1 / 128, 0, alpha=0.1), "alpha is given for leaky_relu"),
    (lambda: activation_table("leaky_relu", 0.1, 0, 0.1, 0, alpha=-1.0), "alpha must be a finite non-negative"),
    (lambda: activation_table("tanh", 0.1, 0, 0.1, 0), r"tanh needs the output scale 0.0078125 and zero point 0"),
    (lambda: activation_table("hard_swish", 0.0, 0, 0.1, 0), "input_scale must be a positive finite float32"),
    (lambda: activation_table("hard_swish", 0.1, 200, 0.1, 0), r"input_zero_point must be an integer"),
    (lambda: lookup(np.zeros(2, np.int8), np.zeros(255, np.int64)), "256 entries"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
