"""golden/conv.py against plain-Python loop reimplementations of the TFLite accumulation, plus edge cases."""

import time
import zlib

import numpy as np
import pytest

from golden.conv import (accumulator_bound, conv2d, conv_output_size, depthwise_conv2d, fully_connected,
                         same_padding)

INT32_MAX = 2**31 - 1


# --- independent references: one accumulator at a time, Python ints, bounds checked tap by tap ------------------------

def ref_conv2d(x, w, bias, stride, padding, zp):
    n_, h, wd, _ = x.shape
    cout, kh, kw, cin = w.shape
    top, bottom, left, right = padding
    ho = (h + top + bottom - kh) // stride[0] + 1
    wo = (wd + left + right - kw) // stride[1] + 1
    out = np.zeros((n_, ho, wo, cout), dtype=object)
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                for c in range(cout):
                    acc = int(bias[c])
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * stride[0] + ky - top, ox * stride[1] + kx - left
                            if 0 <= iy < h and 0 <= ix < wd:
                                for ci in range(cin):
                                    acc += int(w[c, ky, kx, ci]) * (int(x[n, iy, ix, ci]) - zp)
                    out[n, oy, ox, c] = acc
    return out


def ref_depthwise(x, w, bias, stride, padding, zp):
    # A depthwise conv is a conv per channel: reuse nothing from golden, only the loop reference above.
    channels = x.shape[3]
    outs = [ref_conv2d(x[..., c:c + 1], w[None, :, :, c:c + 1], bias[c:c + 1], stride, padding, zp)
            for c in range(channels)]
    return np.concatenate(outs, axis=3)


def ref_fully_connected(x, w, bias, zp):
    return np.array([[int(bias[c]) + sum(int(w[c, i]) * (int(x[n, i]) - zp) for i in range(x.shape[1]))
                      for c in range(w.shape[0])] for n in range(x.shape[0])], dtype=object)


def _random_layer(rng, shape_x, shape_w, channels):
    x = rng.integers(-128, 128, shape_x, dtype=np.int64).astype(np.int8)
    w = rng.integers(-127, 128, shape_w, dtype=np.int64).astype(np.int8)
    b = rng.integers(-(1 << 20), 1 << 20, channels).astype(np.int32)
    return x, w, b


CONV_CASES = [
    # (N, H, W, Cin, Cout, KH, KW, stride, padding, zero point)
    (1, 5, 5, 3, 4, 3, 3, (1, 1), (1, 1, 1, 1), 0),
    (2, 7, 6, 2, 3, 3, 3, (2, 2), (0, 1, 0, 1), -128),
    (1, 7, 7, 3, 2, 3, 3, (2, 2), (1, 1, 1, 1), 127),
    (1, 6, 5, 4, 5, 1, 1, (1, 1), (0, 0, 0, 0), 17),
    (1, 9, 7, 3, 2, 1, 1, (2, 2), (0, 0, 0, 0), -5),
    (1, 5, 8, 2, 3, 2, 3, (2, 1), (2, 0, 1, 2), 3),
    (1, 4, 4, 2, 2, 5, 5, (1, 1), (2, 2, 2, 2), -128),
    (1, 3, 3, 1, 1, 3, 3, (3, 3), (0, 0, 0, 0), 127),
    (1, 11, 3, 3, 2, 3, 1, (2, 1), (1, 1, 0, 0), 0),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_loop_reference(case):
    n, h, w, cin, cout, kh, kw, stride, padding, zp = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, wt, b = _random_layer(rng, (n, h, w, cin), (cout, kh, kw, cin), cout)
    got = conv2d(x, wt, b, stride=stride, padding=padding, input_zero_point=zp)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref_conv2d(x, wt, b, stride, padding, zp).astype(np.int64))


@pytest.mark.parametrize("case", CONV_CASES)
def test_depthwise_matches_loop_reference(case):
    n, h, w, cin, _, kh, kw, stride, padding, zp = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()) + 1)
    x, wt, b = _random_layer(rng, (n, h, w, cin), (kh, kw, cin), cin)
    got = depthwise_conv2d(x, wt, b, stride=stride, padding=padding, input_zero_point=zp)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref_depthwise(x, wt, b, stride, padding, zp).astype(np.int64))


@pytest.mark.parametrize("zp", [-128, 0, 127, 42])
def test_fully_connected_matches_loop_reference(zp):
    rng = np.random.default_rng(zp + 400)
    x, w, b = _random_layer(rng, (3, 37), (5, 37), 5)
    got = fully_connected(x, w, b, input_zero_point=zp)
    np.testing.assert_array_equal(got, ref_fully_connected(x, w, b, zp).astype(np.int64))


@pytest.mark.parametrize("kh, cin, cout, wmax, extreme", [
    (3, 32, 48, 127, False), (1, 600, 40, 20, False), (1, 600, 40, 127, True), (3, 96, 8, 127, True)])
def test_large_layers_match_an_int64_contraction(kh, cin, cout, wmax, extreme):
    # Layers big enough for BLAS blocking against tap-by-tap int64 products; weights of +-127 only ("extreme") push
    # sum |w| * 255 past 2**24, onto the float64 path.
    rng = np.random.default_rng(kh * 1000 + cin + wmax)
    x = rng.integers(-128, 128, (2, 20, 20, cin)).astype(np.int8)
    if extreme:
        w = rng.choice(np.array([-wmax, wmax], dtype=np.int8), (cout, kh, kh, cin))
    else:
        w = rng.integers(-wmax, wmax + 1, (cout, kh, kh, cin)).astype(np.int8)
    zp, pad = -128, kh // 2
    centred = np.pad(x.astype(np.int64) - zp, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    taps = [(ky, kx, centred[:, ky:ky + 20, kx:kx + 20, :]) for ky in range(kh) for kx in range(kh)]
    expected = sum(tap @ w[:, ky, kx, :].astype(np.int64).T for ky, kx, tap in taps)
    np.testing.assert_array_equal(conv2d(x, w, None, padding=(pad,) * 4, input_zero_point=zp), expected)
    expected = sum(tap * w[0, ky, kx].astype(np.int64) for ky, kx, tap in taps)
    np.testing.assert_array_equal(depthwise_conv2d(x, w[0], None, padding=(pad,) * 4, input_zero_point=zp), expected)


def test_padded_taps_read_the_zero_point():
    # An input equal to its zero point everywhere gives exactly the bias, padded border included.
    x = np.full((1, 4, 4, 3), -7, dtype=np.int8)
    w = np.full((2, 3, 3, 3), 127, dtype=np.int8)
    got = conv2d(x, w, [5, -9], padding=(1, 1, 1, 1), input_zero_point=-7)
    np.testing.assert_array_equal(got, np.broadcast_to([5, -9], (1, 4, 4, 2)))
    got = depthwise_conv2d(x, w[0], [1, 2, 3], padding=(2, 2, 2, 2), input_zero_point=-7)
    np.testing.assert_array_equal(got, np.broadcast_to([1, 2, 3], (1, 6, 6, 3)))


def test_bias_none_is_zero_bias():
    rng = np.random.default_rng(3)
    x, w, _ = _random_layer(rng, (1, 4, 4, 2), (3, 3, 3, 2), 3)
    np.testing.assert_array_equal(conv2d(x, w, None, input_zero_point=4), conv2d(x, w, [0, 0, 0], input_zero_point=4))


def test_extreme_values_use_float64_and_stay_exact():
    # 1001 taps of 127 * 255: the sum 32_417_385 is odd and above 2**24, so float32 cannot even represent it.
    x = np.full((1, 1, 1, 1001), 127, dtype=np.int8)
    w = np.full((2, 1, 1, 1001), 127, dtype=np.int8)
    w[1, 0, 0, ::2] = -127
    exact = [1001 * 127 * 255 + 3, -127 * 255 - 3]
    assert int(np.float32(1001 * 127 * 255)) != 1001 * 127 * 255
    np.testing.assert_array_equal(conv2d(x, w, [3, -3], input_zero_point=-128).reshape(-1), exact)
    np.testing.assert_array_equal(fully_connected(x.reshape(1, -1), w.reshape(2, -1), [3, -3], input_zero_point=-128),
                                  [exact])


def test_float32_path_at_its_limit_is_exact():
    # sum |w| * max|x - zp| = 514 * 127 * 255 = 16_645_890 < 2**24: the float32 path, every partial sum representable.
    x = np.full((1, 2, 1, 514), -128, dtype=np.int8)
    x[0, 1] = 127
    w = np.full((1, 1, 1, 514), 127, dtype=np.int8)
    got = conv2d(x, w, None, input_zero_point=127).reshape(-1)
    np.testing.assert_array_equal(got, [514 * 127 * -255, 0])
    got = fully_connected(x.reshape(2, 514), w.reshape(1, 514), None, input_zero_point=127).reshape(-1)
    np.testing.assert_array_equal(got, [514 * 127 * -255, 0])


def test_overflow_is_detected_and_names_the_accumulator():
    x = np.full((1, 1, 1, 4), 127, dtype=np.int8)
    w = np.full((1, 1, 1, 4), 127, dtype=np.int8)
    bias = [INT32_MAX - 4 * 127 * 255 + 1]            # one past INT32_MAX
    with pytest.raises(OverflowError, match=r"^conv2d accumulators overflow int32: max \|acc\| = 2147483648$"):
        conv2d(x, w, bias, input_zero_point=-128)
    assert conv2d(x, w, [bias[0] - 1], input_zero_point=-128).item() == INT32_MAX
    with pytest.raises(OverflowError, match=r"^depthwise_conv2d accumulators overflow int32"):
        depthwise_conv2d(x, -w[0], [-2**31] * 4, input_zero_point=-128)
    with pytest.raises(OverflowError, match=r"^fully_connected accumulators overflow int32: max \|acc\| = 2147483649$"):
        fully_connected(x[0, 0], -w[0, 0], [-2**31 + 4 * 127 * 255 - 1], input_zero_point=-128)


def test_int32_min_accumulator_is_allowed():
    x = np.full((1, 1, 1, 4), 127, dtype=np.int8)
    w = np.full((1, 4), -127, dtype=np.int8)
    assert fully_connected(x[0, 0], w, [-2**31 + 4 * 127 * 255], input_zero_point=-128).item() == -2**31


@pytest.mark.parametrize("zp", [-128, 0, 127, -20])
def test_accumulator_bound_is_never_exceeded(zp):
    rng = np.random.default_rng(zp + 200)
    w = rng.integers(-127, 128, (6, 3, 3, 5)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 6)
    bound = accumulator_bound(w, zp, bias)
    for _ in range(20):
        x = rng.integers(-128, 128, (1, 3, 3, 5)).astype(np.int8)
        assert np.abs(conv2d(x, w, bias, input_zero_point=zp)).max() <= bound
    for x_value in (-128, 127):
        x = np.full((1, 3, 3, 5), x_value, dtype=np.int8)
        assert np.abs(conv2d(x, w, bias, input_zero_point=zp)).max() <= bound


@pytest.mark.parametrize("zp", [-128, 0, 127, -20])
def test_accumulator_bound_is_reached(zp):
    # Same-sign weights and the int8 extreme farthest from zp in every tap: |acc| is exactly the bound.
    rng = np.random.default_rng(zp + 300)
    far = -128 if abs(-128 - zp) >= abs(127 - zp) else 127
    w = rng.integers(0, 128, (4, 3, 3, 5)).astype(np.int8)
    bias = rng.integers(0, 1000, 4) * (1 if far > zp else -1)
    x = np.full((1, 3, 3, 5), far, dtype=np.int8)
    assert np.abs(conv2d(x, w, bias, input_zero_point=zp)).max() == accumulator_bound(w, zp, bias)
    assert np.abs(depthwise_conv2d(x, w[0], bias[:1].repeat(5), input_zero_point=zp)).max() \
        == accumulator_bound(w[0], zp, bias[:1].repeat(5), channel_axis=-1)


def test_accumulator_bound_examples():
    assert accumulator_bound(np.full((1, 3), 127), -128, [5]) == 3 * 127 * 255 + 5
    assert accumulator_bound(np.array([[1, -2], [3, 0]]), 0) == 3 * 128
    # depthwise: the channel axis is the last one
    w = np.zeros((3, 3, 2), dtype=np.int8)
    w[..., 1] = -128
    assert accumulator_bound(w, 0, None, channel_axis=-1) == 9 * 128 * 128
    assert accumulator_bound(w, 0, None) == 3 * 128 * 128          # read as 3 "channels" of 3 x 2


@pytest.mark.parametrize("in_size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)), (112, 3, 1, (1, 1)), (112, 3, 2, (0, 1)), (7, 7, 1, (3, 3)), (5, 3, 2, (1, 1)),
    (6, 3, 2, (0, 1)), (5, 2, 1, (0, 1)), (4, 1, 2, (0, 0)), (1, 3, 2, (1, 1)), (3, 5, 1, (2, 2)), (8, 4, 4, (0, 0)),
    (10, 4, 3, (1, 2)),
])
def test_same_padding_known_values(in_size, kernel, stride, expected):
    assert same_padding(in_size, kernel, stride) == expected


def test_same_padding_gives_ceil_output():
    for in_size in range(1, 20):
        for kernel in range(1, 6):
            for stride in range(1, 4):
                before, after = same_padding(in_size, kernel, stride)
                assert 0 <= after - before <= 1
                assert conv_output_size(in_size, kernel, stride, before, after) == -(-in_size // stride)


def test_conv_output_size():
    assert conv_output_size(224, 3, 2, 0, 1) == 112
    assert conv_output_size(7, 7) == 1
    assert conv_output_size(5, 3, 2) == 2
    with pytest.raises(ValueError, match=r"^kernel 6 is larger than the padded input 5$"):
        conv_output_size(3, 6, 1, 1, 1)


@pytest.mark.parametrize("call, error, message", [
    (lambda: conv2d(np.zeros((1, 4, 4, 2)), np.zeros((1, 1, 1, 2), np.int8), None), TypeError,
     r"^x must be an integer array, not of dtype float64$"),
    (lambda: conv2d(np.full((1, 4, 4, 2), 128), np.zeros((1, 1, 1, 2), np.int8), None), ValueError,
     r"^x values must lie in \[-128, 127\], found \[128, 128\]$"),
    (lambda: conv2d(np.zeros((4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), None), ValueError,
     r"^x must be \(N, H, W, C\)"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 2), np.int8), None), ValueError,
     r"^conv2d weights must be \(Cout, KH, KW, Cin\), not of shape \(1, 1, 2\)$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 3), np.int8), None), ValueError,
     r"^input has 2 channels but the weights expect 3$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((3, 1, 1, 2), np.int8), [1, 2]), ValueError,
     r"^bias must have shape \(3,\), not \(2,\)$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), [2**31]), ValueError,
     r"^bias values must lie in \[-2147483648, 2147483647\]"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.full((1, 1, 1, 2), -129), None), ValueError,
     r"^weights values must lie in \[-128, 127\]"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), None, stride=(0, 1)),
     ValueError, r"^stride must be a positive integer, not 0$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), None, stride=2),
     ValueError, r"^stride must be a pair of positive integers, not 2$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), None, padding=(1, 1)),
     ValueError, r"^padding must be \(top, bottom, left, right\), not \(1, 1\)$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), None, padding=(0, -1, 0, 0)),
     ValueError, r"^padding must be a non-negative integer, not -1$"),
    (lambda: conv2d(np.zeros((1, 2, 2, 2), np.int8), np.zeros((1, 3, 3, 2), np.int8), None), ValueError,
     r"^kernel 3 is larger than the padded input 2$"),
    (lambda: conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 1, 1, 2), np.int8), None, input_zero_point=128),
     ValueError, r"^input_zero_point must be an integer in \[-128, 127\], not 128$"),
    (lambda: depthwise_conv2d(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 3, 3, 2), np.int8), None), ValueError,
     r"^depthwise_conv2d weights must be \(KH, KW, C\), not of shape \(1, 3, 3, 2\)$"),
    (lambda: fully_connected(np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 2), np.int8), None), ValueError,
     r"^x must be \(N, Cin\)"),
    (lambda: fully_connected(np.zeros((2, 3), np.int8), np.zeros((1, 2), np.int8), None), ValueError,
     r"^input has 3 features but the weights expect 2$"),
])
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


# MobileNetV2 (224 x 224, width 1.0): every conv / depthwise / FC accumulation of one image.
def _mobilenet_v2_layers():
    layers = [("conv", 224, 3, 32, 3, 2)]
    cin, size = 32, 112
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            if t != 1:
                layers.append(("conv", size, cin, hidden, 1, 1))
            layers.append(("dw", size, hidden, hidden, 3, stride))
            size = -(-size // stride)
            layers.append(("conv", size, hidden, c, 1, 1))
            cin = c
    layers.append(("conv", size, cin, 1280, 1, 1))
    layers.append(("fc", 1, 1280, 1000, 1, 1))
    return layers


def _mobilenet_v2_call(rng, kind, size, cin, cout, k, stride):
    # one layer's accumulation on random int8 data, as a call without arguments
    if kind == "fc":
        x, w = rng.integers(-128, 128, (1, cin)).astype(np.int8), rng.integers(-127, 128, (cout, cin)).astype(np.int8)
        return lambda: fully_connected(x, w, None, input_zero_point=-3)
    x = rng.integers(-128, 128, (1, size, size, cin)).astype(np.int8)
    pads = same_padding(size, k, stride)
    options = dict(stride=(stride, stride), padding=pads + pads, input_zero_point=-3)
    if kind == "dw":
        w = rng.integers(-127, 128, (k, k, cin)).astype(np.int8)
        return lambda: depthwise_conv2d(x, w, None, **options)
    w = rng.integers(-127, 128, (cout, k, k, cin)).astype(np.int8)
    return lambda: conv2d(x, w, None, **options)


@pytest.mark.slow
def test_mobilenet_v2_speed():
    """Per-layer time of the accumulations of a 224 x 224 MobileNetV2 (run with ``-m slow -s`` to see the table)."""
    rng = np.random.default_rng(0)
    total_ms = total_macs = 0
    print()
    for kind, size, cin, cout, k, stride in _mobilenet_v2_layers():
        run = _mobilenet_v2_call(rng, kind, size, cin, cout, k, stride)
        run()
        ms = min(_timed(run) for _ in range(3))
        out = -(-size // stride)
        macs = out * out * cout * k * k * (cin if kind != "dw" else 1)
        total_ms, total_macs = total_ms + ms, total_macs + macs
        print(f"{kind:4s} {size:3d}x{size:<3d}x{cin:<4d} -> {cout:<4d} k{k} s{stride}: {ms:7.2f} ms, "
              f"{macs / 1e6:6.1f} M MACs")
    print(f"total: {total_ms:.0f} ms for {total_macs / 1e6:.0f} M MACs")
    assert 290e6 < total_macs < 310e6
    assert total_ms < 5000


def _timed(run):
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3
