"""golden/mul.py and golden/concat.py against per-element Python references of TFLite's int8 MUL and CONCATENATION."""

import math
import struct

import numpy as np
import pytest

from golden.concat import concatenate
from golden.mul import mul, mul_params


def f32(value):
    return struct.unpack("f", struct.pack("f", value))[0]


def ref_mul(x1, x2, scales, zero_points, qmin, qmax):
    s1, s2, s_out = (f32(s) for s in scales)
    real = f32(f32(s1 * s2) / s_out)                       # mul.cc Prepare: float arithmetic
    q, e = math.frexp(real)
    m = int(math.floor(q * 2**31 + 0.5))
    if m == 2**31:
        m, e = m // 2, e + 1
    z1, z2, z_out = zero_points
    out = np.zeros(np.broadcast_shapes(x1.shape, x2.shape), np.int64)
    a, b = np.broadcast_to(x1, out.shape), np.broadcast_to(x2, out.shape)
    for index in np.ndindex(out.shape):
        p = (int(a[index]) - z1) * (int(b[index]) - z2) * 2 ** max(e, 0)
        ab = p * m
        high = (abs(ab + (1 << 30) if ab >= 0 else ab + 1 - (1 << 30)) >> 31) * (1 if ab >= 0 else -1)
        right = max(-e, 0)
        mask = (1 << right) - 1
        v = (high >> right) + ((high & mask) > (mask >> 1) + (high < 0))
        out[index] = min(max(v + z_out, qmin), qmax)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_mul_matches_reference(seed):
    rng = np.random.default_rng(seed)
    s1, s2 = 2.0 ** rng.uniform(-8, 0), 2.0 ** rng.uniform(-8, 0)
    scales = (s1, s2, s1 * s2 * 2.0 ** rng.uniform(3, 9))
    zero_points = tuple(int(z) for z in rng.integers(-128, 128, 3)) if seed else (-128, 127, 0)
    qmin, qmax = [(-128, 127), (zero_points[2], 127), (-30, 40)][seed % 3]
    x1 = rng.integers(-128, 128, (2, 3, 4, 5))
    x2 = rng.integers(-128, 128, (2, 1, 1, 5) if seed % 2 else (2, 3, 4, 5))
    params = mul_params(scales[0], zero_points[0], scales[1], zero_points[1], scales[2], zero_points[2])
    np.testing.assert_array_equal(mul(x1, x2, params, qmin, qmax), ref_mul(x1, x2, scales, zero_points, qmin, qmax))


def test_mul_of_exact_scales_is_the_product():
    # s1 = s2 = 1/16, s_out = 1/256: the real product is representable, out = (x1 - z1) * (x2 - z2) + z_out.
    x1, x2 = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    params = mul_params(1 / 16, 0, 1 / 16, 0, 1 / 256, 5)
    np.testing.assert_array_equal(mul(x1, x2, params), np.clip(x1 * x2 + 5, -128, 127))


def test_concatenate_joins_channels_in_order():
    a, b = np.zeros((1, 2, 2, 1), np.int8), np.arange(8).reshape(1, 2, 2, 2)
    out = concatenate([a, b])
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[..., 1:], b)
    np.testing.assert_array_equal(out[..., 0], 0)


@pytest.mark.parametrize("call, error, message", [
    (lambda: mul_params(0.0, 0, 1.0, 0, 1.0, 0), ValueError, "scale1 must be a positive finite float32"),
    (lambda: mul_params(1.0, 0, 1.0, 300, 1.0, 0), ValueError, "zero_point2 must be an integer"),
    (lambda: mul(np.zeros(2, np.int8), np.zeros(2, np.int8), (1, 0)), TypeError, "params must be a MulParams"),
    (lambda: concatenate([np.zeros((1, 2, 2, 1), np.int8)]), ValueError, "two or more tensors"),
    (lambda: concatenate([np.zeros((1, 2, 2, 1), np.int8), np.zeros((1, 3, 2, 1), np.int8)]), ValueError,
     "one N, H, W"),
])
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
