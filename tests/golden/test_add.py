"""golden/add.py against a per-element reimplementation of TFLite's reference int8 ADD, plus properties."""

import math
from fractions import Fraction

import numpy as np
import pytest

from golden.add import AddParams, add, add_descriptor_fields, add_params, descriptor_params, rescaled_sum
from golden.config import NPUConfig
from golden.descriptor import layer_descriptor

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1


# --- independent reference: Python ints, written from TFLite's add.cc / integer_ops/add.h / gemmlowp ------------------

def ref_quantize_multiplier_smaller_than_one(real):
    assert 0 < real < 1
    q, e = math.frexp(real)
    m = int(Fraction(q) * 2**31 + Fraction(1, 2))         # q > 0: half away from zero is half up
    if m == 2**31:
        m, e = 2**30, e + 1
    if e < -31:
        return 0, 0
    assert e <= 0
    return m, e


def ref_params(s1, z1, s2, z2, s_out, z_out):
    s1, s2, s_out = (float(np.float32(s)) for s in (s1, s2, s_out))
    twice_max = 2 * max(s1, s2)
    return dict(left_shift=20, z1=z1, z2=z2, z_out=z_out,
                in1=ref_quantize_multiplier_smaller_than_one(s1 / twice_max),
                in2=ref_quantize_multiplier_smaller_than_one(s2 / twice_max),
                out=ref_quantize_multiplier_smaller_than_one(twice_max / ((1 << 20) * s_out)))


def ref_srdhm(a, b):
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    total = ab + nudge
    quotient = abs(total) // (1 << 31)                    # C++ division truncates toward zero
    return quotient if total >= 0 else -quotient


def ref_rounding_divide_by_pot(x, exponent):
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def ref_mbqm_smaller_than_one(x, multiplier, shift):
    return ref_rounding_divide_by_pot(ref_srdhm(x, multiplier), -shift)


def ref_add(x1, x2, p, qmin, qmax):
    out = np.zeros(np.broadcast_shapes(np.shape(x1), np.shape(x2)), dtype=np.int64)
    x1, x2 = np.broadcast_to(x1, out.shape), np.broadcast_to(x2, out.shape)
    for index in np.ndindex(out.shape):
        shifted1 = (int(x1[index]) - p["z1"]) * (1 << p["left_shift"])
        shifted2 = (int(x2[index]) - p["z2"]) * (1 << p["left_shift"])
        raw_sum = ref_mbqm_smaller_than_one(shifted1, *p["in1"]) + ref_mbqm_smaller_than_one(shifted2, *p["in2"])
        assert INT32_MIN <= raw_sum <= INT32_MAX
        raw = ref_mbqm_smaller_than_one(raw_sum, *p["out"]) + p["z_out"]
        out[index] = min(max(raw, qmin), qmax)
    return out


def _random_quantization(rng):
    scales = [float(np.float32(10 ** rng.uniform(-3, 0))) for _ in range(3)]
    zero_points = [int(z) for z in rng.integers(-128, 128, 3)]
    return scales[0], zero_points[0], scales[1], zero_points[1], scales[2], zero_points[2]


@pytest.mark.parametrize("seed", range(12))
def test_add_matches_reference_on_random_layers(seed):
    rng = np.random.default_rng(seed)
    quantization = _random_quantization(rng)
    if seed % 4 == 0:
        quantization = (quantization[0], -128, quantization[2], 127, quantization[4], 127)
    qmin, qmax = [(-128, 127), (quantization[5], 127), (-20, 90)][seed % 3]
    x1 = rng.integers(-128, 128, (2, 3, 5, 4)).astype(np.int8)
    x2 = rng.integers(-128, 128, (2, 3, 5, 4)).astype(np.int8)
    got = add(x1, x2, add_params(*quantization), qmin, qmax)
    np.testing.assert_array_equal(got, ref_add(x1, x2, ref_params(*quantization), qmin, qmax))


def ref_rescaled_sum(x1, x2, p):
    """The reference's raw sum (``ref_add`` before its output rescaling)."""
    return np.vectorize(lambda a, b: ref_mbqm_smaller_than_one((int(a) - p["z1"]) << 20, *p["in1"])
                        + ref_mbqm_smaller_than_one((int(b) - p["z2"]) << 20, *p["in2"]))(x1, x2)


@pytest.mark.parametrize("seed", range(4))
def test_rescaled_sum_is_the_sum_the_reference_requantizes(seed):
    rng = np.random.default_rng(seed)
    quantization = _random_quantization(rng)
    x1, x2 = rng.integers(-128, 128, (2, 50))
    np.testing.assert_array_equal(rescaled_sum(x1, x2, add_params(*quantization)),
                                  ref_rescaled_sum(x1, x2, ref_params(*quantization)))


def test_descriptor_holds_the_add_params():
    params = add_params(0.03, -128, 0.5, 127, 0.07, 3)
    config = NPUConfig()
    d = layer_descriptor("add", (2, 3, 9), 9, config=config, in_base=0, out_base=100, in2_base=50, qmin=-5, qmax=90,
                         **add_descriptor_fields(params))
    assert (d.input_zero_point, d.input2_zero_point, d.multiplier, d.shift, d.multiplier1, d.shift1,
            d.output_zero_point) == (-128, 127, params.output_multiplier, params.output_shift, params.multiplier1,
                                     params.shift1, 3)
    assert descriptor_params(d) == params
    with pytest.raises(ValueError, match="shifts its inputs left by 20, not 19"):
        add_descriptor_fields(AddParams(**{**params.__dict__, "left_shift": 19}))


@pytest.mark.parametrize("quantization", [
    (0.1, 0, 0.1, 0, 0.2, 0),
    (0.02, -128, 0.02, 127, 0.04, 5),
    (0.03459479287266731, -21, 0.15050408244132996, -4, 0.004778267350047827, 75),
])
def test_add_matches_reference_on_every_input_pair(quantization):
    x1, x2 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    got = add(x1, x2, add_params(*quantization))
    np.testing.assert_array_equal(got, ref_add(x1, x2, ref_params(*quantization), -128, 127))


def test_add_near_ties_pinned():
    # Inputs whose real sum lies within 1e-5 of a .5 tie: the fixed-point path and the exact real rounding disagree
    # here. The expected values are what ai-edge-litert 2.3.0's BUILTIN_REF ADD returned for these exact tensors.
    cases = [((0.045760635286569595, -51, 0.9693951606750488, -6, 0.23877330124378204, 1), 62, -42, -124),
             ((0.03459479287266731, -21, 0.15050408244132996, -4, 0.004778267350047827, 75), -127, 20, 63),
             ((0.03459479287266731, -21, 0.15050408244132996, -4, 0.004778267350047827, 75), 85, -28, 87)]
    for quantization, x1, x2, expected in cases:
        assert add(np.int8(x1), np.int8(x2), add_params(*quantization)) == expected
        s1, z1, s2, z2, s_out, z_out = quantization
        real = (Fraction(s1) * (x1 - z1) + Fraction(s2) * (x2 - z2)) / Fraction(s_out) + z_out
        assert abs(real - expected) > Fraction(1, 2)          # the exact real value would round the other way


def test_equal_scales_and_zero_points_add_exactly():
    # s1 == s2 == s_out and one zero point z: the real sum is representable, so out = clamp(x1 + x2 - z).
    x1, x2 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    for z in (-128, 0, 13, 127):
        got = add(x1, x2, add_params(0.05, z, 0.05, z, 0.05, z))
        np.testing.assert_array_equal(got, np.clip(x1 + x2 - z, -128, 127))


@pytest.mark.parametrize("seed", range(4))
def test_add_within_one_of_the_real_sum(seed):
    rng = np.random.default_rng(100 + seed)
    s1, z1, s2, z2, s_out, z_out = quantization = _random_quantization(rng)
    x1 = rng.integers(-128, 128, 5000)
    x2 = rng.integers(-128, 128, 5000)
    real = (s1 * (x1 - z1) + s2 * (x2 - z2)) / s_out + z_out
    got = add(x1, x2, add_params(*quantization))
    assert np.all(np.abs(got - np.clip(real, -128, 127)) <= 1)


def test_add_broadcasts_like_numpy():
    rng = np.random.default_rng(5)
    params = add_params(0.02, 3, 0.07, -9, 0.05, 1)
    x1 = rng.integers(-128, 128, (1, 4, 4, 6)).astype(np.int8)
    x2 = rng.integers(-128, 128, (1, 1, 1, 6)).astype(np.int8)
    np.testing.assert_array_equal(add(x1, x2, params), add(x1, np.broadcast_to(x2, x1.shape), params))


def test_add_params_known_values():
    # equal scales: each input multiplier is 1/2 = 2**30 * 2**-31, the output 2 / 2**20 = 2**30 * 2**-31 * 2**-18
    assert add_params(1.0, 0, 1.0, 0, 1.0, 0) == AddParams(
        zero_point1=0, multiplier1=2**30, shift1=0, zero_point2=0, multiplier2=2**30, shift2=0,
        output_zero_point=0, output_multiplier=2**30, output_shift=-18)
    # s1 = s2 / 2: input 1 multiplier 1/4; the larger input always gets exactly 1/2
    p = add_params(0.5, -3, 1.0, 4, 1.0, 7)
    assert (p.multiplier1, p.shift1, p.multiplier2, p.shift2) == (2**30, -1, 2**30, 0)
    assert (p.zero_point1, p.zero_point2, p.output_zero_point, p.left_shift) == (-3, 4, 7, 20)
    # s1 = 1.5, s2 = 1: input 2's real is 1/3 = (2/3) * 2**-1; the output's 3 / (2**20 * 3) = 2**-20 = 0.5 * 2**-19
    p = add_params(1.5, 0, 1.0, 0, 3.0, 0)
    assert (p.multiplier2, p.shift2) == (round(2**31 * 2 / 3), -1)
    assert (p.output_multiplier, p.output_shift) == (2**30, -19)


@pytest.mark.parametrize("seed", range(6))
def test_add_params_match_reference(seed):
    quantization = _random_quantization(np.random.default_rng(200 + seed))
    p, r = add_params(*quantization), ref_params(*quantization)
    assert (p.multiplier1, p.shift1) == r["in1"]
    assert (p.multiplier2, p.shift2) == r["in2"]
    assert (p.output_multiplier, p.output_shift) == r["out"]


def test_add_params_round_scales_to_float32():
    # 0.1 and 0.3 are not float32 values; the multipliers must be those of the float32 scales, as in a .tflite file.
    assert add_params(0.1, 0, 0.3, 0, 0.2, 0) == add_params(float(np.float32(0.1)), 0, float(np.float32(0.3)), 0,
                                                           float(np.float32(0.2)), 0)
    double_real = 0.1 / (2 * 0.3)
    single_real = float(np.float32(0.1)) / (2 * float(np.float32(0.3)))
    assert round(math.frexp(double_real)[0] * 2**31) != round(math.frexp(single_real)[0] * 2**31)
    assert add_params(0.1, 0, 0.3, 0, 0.2, 0).multiplier1 == round(math.frexp(single_real)[0] * 2**31)


@pytest.mark.parametrize("call, error, message", [
    (lambda: add_params(0.0, 0, 1.0, 0, 1.0, 0), ValueError, r"^scale1 must be a positive finite float32, not 0.0$"),
    (lambda: add_params(1.0, 0, float("nan"), 0, 1.0, 0), ValueError, r"^scale2 must be a positive finite float32"),
    (lambda: add_params(1.0, 0, 1.0, 0, 1e39, 0), ValueError, r"^scale_out must be a positive finite float32"),
    (lambda: add_params(1.0, 128, 1.0, 0, 1.0, 0), ValueError,
     r"^zero_point1 must be an integer in \[-128, 127\], not 128$"),
    (lambda: add_params(1.0, 0, 1.0, 0, 2.0**-19, 0), ValueError,
     r"^the output multiplier 1.0 of this Add is not below 1: the output scale is too small$"),
    (lambda: add(np.zeros(3, np.int8), np.zeros(3, np.int8), (1, 2)), TypeError, r"^params must be an AddParams"),
    (lambda: add(np.full(3, 128), np.zeros(3, np.int8), add_params(1, 0, 1, 0, 1, 0)), ValueError,
     r"^x1 values must lie in \[-128, 127\]"),
    (lambda: add(np.zeros(3, np.int8), np.zeros(3, np.int8), add_params(1, 0, 1, 0, 1, 0), 10, 0), ValueError,
     r"^clamp bounds must satisfy"),
])
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
