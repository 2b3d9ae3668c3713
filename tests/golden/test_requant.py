"""golden/requant.py against a plain-Python-integer transcription of gemmlowp / TFLite (independent of NumPy)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.requant import (INT32_MAX, INT32_MIN, activation_bounds, multiply_by_quantized_multiplier,
                            quantize_multiplier, requantize, rounding_divide_by_pot, round_half_away_from_zero,
                            saturate_int32, saturating_rounding_doubling_high_mul)


# --- reference: gemmlowp/TFLite transcribed with Python ints and C semantics --------------------------------------

def c_div(a, b):
    """C integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ref_srdhm(a, b):
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def ref_rdbpot(x, exponent):
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def ref_saturate32(x):
    """The left shift's overflow, which C++ leaves undefined, saturates (docs/arithmetic.md, section 5)."""
    return min(max(x, INT32_MIN), INT32_MAX)


def ref_requantize(acc, multiplier, shift, k, zp, qmin, qmax):
    """Per-channel TFLite layer with channel multiplier (multiplier, shift - k), as QuantizeMultiplier gives it."""
    channel_shift = shift - k
    left, right = max(channel_shift, 0), max(-channel_shift, 0)
    if right > 31:                       # TFLite: QuantizeMultiplier of so small a scale gives (0, 0)
        value = 0
    else:
        value = ref_rdbpot(ref_srdhm(ref_saturate32(acc << left), multiplier), right)
    return min(max(value + zp, qmin), qmax)


int32s = st.integers(INT32_MIN, INT32_MAX)
multipliers = st.one_of(st.just(0), st.integers(1 << 30, INT32_MAX))


@given(int32s, int32s)
@settings(max_examples=3000, deadline=None)
def test_srdhm_matches_gemmlowp(a, b):
    assert saturating_rounding_doubling_high_mul(a, b) == ref_srdhm(a, b)


def test_srdhm_edges():
    edges = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, INT32_MAX]
    for a in edges:
        for b in edges:
            assert saturating_rounding_doubling_high_mul(a, b) == ref_srdhm(a, b), (a, b)
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX
    # ties: 2*a*b / 2**32 == +-0.5 rounds toward +infinity (gemmlowp's nudge + truncation)
    assert saturating_rounding_doubling_high_mul(1, 1 << 30) == 1
    assert saturating_rounding_doubling_high_mul(-1, 1 << 30) == 0
    assert saturating_rounding_doubling_high_mul(-3, 1 << 30) == -1


@given(int32s, st.integers(0, 31))
@settings(max_examples=3000, deadline=None)
def test_rdbpot_matches_gemmlowp(x, exponent):
    assert rounding_divide_by_pot(x, exponent) == ref_rdbpot(x, exponent)


def test_rdbpot_ties_round_away_from_zero():
    assert list(rounding_divide_by_pot([5, -5, 6, -6, 7, -7, 3, -3], [1, 1, 2, 2, 1, 1, 0, 0])) == \
        [3, -3, 2, -2, 4, -4, 3, -3]


@given(int32s, st.integers(32, 62))
def test_rdbpot_of_int32_by_32_or_more_is_zero(x, exponent):
    if x != INT32_MIN:
        assert rounding_divide_by_pot(x, exponent) == 0


@given(int32s, multipliers, st.integers(-31, 31), st.integers(0, 15), st.integers(-128, 127),
       st.integers(-128, 127), st.integers(-128, 127))
@settings(max_examples=3000, deadline=None)
def test_requantize_matches_tflite_per_channel(acc, multiplier, shift, k, zp, bound1, bound2):
    qmin, qmax = min(bound1, bound2), max(bound1, bound2)
    assert requantize(acc, multiplier, shift, k, zp, qmin, qmax) == ref_requantize(acc, multiplier, shift, k, zp,
                                                                                    qmin, qmax)


def test_requantize_vectorised_over_channels():
    rng = np.random.default_rng(0)
    acc = rng.integers(INT32_MIN, INT32_MAX, size=(3, 5, 16), endpoint=True)
    k = np.arange(16)
    got = requantize(acc, 1518500250, -3, k, -7, -128, 127)
    want = [[[ref_requantize(int(a), 1518500250, -3, int(kk), -7, -128, 127) for a, kk in zip(row, k)]
             for row in plane] for plane in acc]
    np.testing.assert_array_equal(got, want)


def test_requantize_rejects_out_of_range_accumulators():
    with pytest.raises(ValueError, match="int32 range"):
        requantize([INT32_MAX + 1], 1 << 30, 0, 0, 0, -128, 127)


def oracle_mbqm(acc, multiplier, shift):
    """``acc * multiplier * 2**(shift - 31)`` from its definition with exact rationals: the left-shifted accumulator
    saturated to int32, its product with ``multiplier / 2**31`` rounded half up, then divided by ``2**right`` and
    rounded half away from zero. No bit tricks, no 64-bit arithmetic."""
    left, right = max(shift, 0), max(-shift, 0)
    x = min(max(acc * 2 ** left, INT32_MIN), INT32_MAX)
    high = math.floor(Fraction(x * multiplier, 2 ** 31) + Fraction(1, 2))
    scaled = Fraction(high, 2 ** right)
    rounded = math.floor(abs(scaled) + Fraction(1, 2))
    return rounded if scaled >= 0 else -rounded


def test_left_shift_saturates():
    """acc * 2**left beyond int32 saturates: at the exact boundary of every left shift 1..31, both signs."""
    assert list(saturate_int32([INT32_MAX + 1, INT32_MIN - 1, 5, -(1 << 40)])) == [INT32_MAX, INT32_MIN, 5, INT32_MIN]
    cases = []
    for left in range(1, 32):
        edge = 1 << (31 - left)                   # acc * 2**left reaches 2**31: the first positive value to saturate
        cases += [(edge - 1, left), (edge, left), (-edge, left), (-edge - 1, left), (INT32_MAX, left),
                  (INT32_MIN, left), (3 * edge // 2, left), (-(3 * edge // 2) - 1, left)]
    acc = np.array([a for a, _ in cases])
    shift = np.array([s for _, s in cases])
    saturated = [not INT32_MIN <= a << s <= INT32_MAX for a, s in cases]
    assert 100 <= sum(saturated) < len(cases)
    for multiplier in (INT32_MAX, 1 << 30, 1518500250):
        want = [oracle_mbqm(int(a), multiplier, int(s)) for a, s in cases]
        np.testing.assert_array_equal(multiply_by_quantized_multiplier(acc, multiplier, shift), want)
    assert multiply_by_quantized_multiplier(1 << 30, INT32_MAX, 1) == INT32_MAX - 1          # not a wrap to -2**31
    assert multiply_by_quantized_multiplier(-(1 << 30) - 1, INT32_MAX, 1) == -INT32_MAX


@given(int32s, multipliers, st.integers(-31, 31))
@settings(max_examples=3000, deadline=None)
def test_multiply_by_quantized_multiplier_matches_the_rational_oracle(acc, multiplier, shift):
    assert multiply_by_quantized_multiplier(acc, multiplier, shift) == oracle_mbqm(acc, multiplier, shift)


@given(int32s, multipliers, st.integers(-31, 31))
@settings(max_examples=2000, deadline=None)
def test_multiply_by_quantized_multiplier_is_the_literal_composition(x, multiplier, shift):
    left, right = max(shift, 0), max(-shift, 0)
    want = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(saturate_int32(x << left), multiplier),
                                  right)
    assert multiply_by_quantized_multiplier(x, multiplier, shift) == want


# --- float -> fixed point ---------------------------------------------------------------------------------------

@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
@settings(max_examples=2000)
def test_quantize_multiplier_matches_tflite(real):
    q, e = math.frexp(real)
    m = int(math.floor(abs(q) * (1 << 31) + 0.5))       # std::round, half away from zero
    if m == 1 << 31:
        m, e = m // 2, e + 1
    if e < -31:
        m, e = 0, 0
    assert quantize_multiplier(real) == (m, e)
    if m:
        assert abs(m * 2.0 ** (e - 31) - real) <= real * 2.0 ** -31


def test_quantize_multiplier_edges():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(2.0 ** -32) == (1 << 30, -31)           # the smallest exponent kept
    assert quantize_multiplier(2.0 ** -33) == (0, 0)                    # e = -32: too small, TFLite gives (0, 0)
    assert quantize_multiplier(1 - 2.0 ** -40) == (1 << 30, 1)         # mantissa rounds up to 2**31
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and non-negative"):
            quantize_multiplier(bad)
    with pytest.raises(ValueError, match="too large"):
        quantize_multiplier(2.0 ** 40)


def test_wess_shift_is_a_power_of_two_channel_scale():
    """Scaling a channel's real multiplier by 2**-k keeps the mantissa and lowers the exponent by k (exactly)."""
    for real in (0.37, 0.0013, 1.7, 3e-7):
        m, e = quantize_multiplier(real)
        for k in range(16):
            mk, ek = quantize_multiplier(real * 2.0 ** -k)
            assert (mk, ek) == ((m, e - k) if e - k >= -31 else (0, 0))


def test_round_half_away_from_zero():
    assert list(round_half_away_from_zero([0.5, -0.5, 1.5, -1.5, 2.5, 0.49999999, -2.6])) == \
        [1, -1, 2, -2, 3, 0, -3]


def test_activation_bounds():
    assert activation_bounds(None, 0.1, 3) == (-128, 127)
    assert activation_bounds("relu", 0.1, -20) == (-20, 127)
    assert activation_bounds("relu6", 6 / 50.5, -128) == (-128, -128 + 51)      # 50.5 rounds away from zero
    assert activation_bounds("relu6", 0.01, 0) == (0, 127)
    with pytest.raises(ValueError, match="activation"):
        activation_bounds("gelu", 0.1, 0)


def test_requantize_exact_ties_match_gemmlowp():
    """Accumulators whose SRDHM or RDBPOT step lands exactly on .5, both signs, every right shift 1..31."""
    cases = []
    for right in range(1, 32):
        for q in (-3, -2, -1, 0, 1, 2):
            tie = q * (1 << right) + (1 << (right - 1))            # RDBPOT tie after SRDHM by one half
            for acc in (2 * tie, 2 * tie + 1, 2 * tie - 1, -2 * tie):
                if INT32_MIN <= acc <= INT32_MAX:
                    cases.append((acc, right))
    acc = np.array([a for a, _ in cases])
    shift = -np.array([r for _, r in cases])
    got = requantize(acc, 1 << 30, shift, 0, 0, INT32_MIN, INT32_MAX)
    want = [ref_requantize(int(a), 1 << 30, int(s), 0, 0, INT32_MIN, INT32_MAX) for a, s in zip(acc, shift)]
    np.testing.assert_array_equal(got, want)
