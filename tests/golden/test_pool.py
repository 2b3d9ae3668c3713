"""golden/pool.py against loop reimplementations of TFLite's reference int8 AveragePool and MaxPool, plus rounding
ties and the pooling reciprocal."""

from fractions import Fraction

import numpy as np
import pytest

from golden.conv import same_padding
from golden.pool import (GAP_WEIGHT, MAX_POOL_COUNT, average_pool2d, average_pool_params, global_average_pool,
                         max_pool2d, rounding_divide)
from golden.requant import requantize


def c_div(a, b):
    """C integer division: truncation toward zero."""
    quotient = abs(a) // abs(b)
    return quotient if (a >= 0) == (b > 0) else -quotient


def ref_average_pool(x, kernel, stride, padding, qmin, qmax):
    """TFLite reference_integer_ops::AveragePool, one output at a time: the window is clipped to the input."""
    n_, h, w, c_ = x.shape
    top, bottom, left, right = padding
    ho = (h + top + bottom - kernel[0]) // stride[0] + 1
    wo = (w + left + right - kernel[1]) // stride[1] + 1
    out = np.zeros((n_, ho, wo, c_), dtype=np.int64)
    for n in range(n_):
        for oy in range(ho):
            for ox in range(wo):
                for c in range(c_):
                    acc = count = 0
                    for ky in range(kernel[0]):
                        for kx in range(kernel[1]):
                            iy, ix = oy * stride[0] + ky - top, ox * stride[1] + kx - left
                            if 0 <= iy < h and 0 <= ix < w:
                                acc += int(x[n, iy, ix, c])
                                count += 1
                    acc = c_div(acc + count // 2, count) if acc > 0 else c_div(acc - count // 2, count)
                    out[n, oy, ox, c] = min(max(acc, qmin), qmax)
    return out


POOL_CASES = [
    # (N, H, W, C, kernel, stride, padding, qmin, qmax)
    (1, 7, 7, 5, (7, 7), (1, 1), (0, 0, 0, 0), -128, 127),
    (2, 6, 6, 3, (2, 2), (2, 2), (0, 0, 0, 0), -128, 127),
    (1, 7, 5, 4, (3, 3), (2, 2), (0, 0, 0, 0), -10, 127),
    (1, 5, 8, 3, (3, 2), (1, 3), (0, 0, 0, 0), -128, 60),
    (1, 5, 5, 2, (3, 3), (1, 1), (1, 1, 1, 1), -128, 127),
    (1, 6, 7, 3, (3, 3), (2, 2), same_padding(6, 3, 2) + same_padding(7, 3, 2), -128, 127),
    (1, 4, 4, 2, (4, 4), (1, 1), (2, 1, 3, 0), 0, 127),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_average_pool_matches_loop_reference(case):
    n, h, w, c, kernel, stride, padding, qmin, qmax = case
    rng = np.random.default_rng(h * 100 + w * 10 + c)
    for x in (rng.integers(-128, 128, (n, h, w, c)), rng.choice([-128, 127, -1, 0, 1], (n, h, w, c))):
        x = x.astype(np.int8)
        got = average_pool2d(x, kernel, stride=stride, padding=padding, qmin=qmin, qmax=qmax)
        np.testing.assert_array_equal(got, ref_average_pool(x, kernel, stride, padding, qmin, qmax))


def _round_half_away(value):
    value = Fraction(value)
    magnitude = int(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


@pytest.mark.parametrize("count", [1, 2, 3, 4, 9, 49, 50])
def test_rounding_divide_is_round_half_away_from_zero(count):
    totals = np.arange(-128 * count, 127 * count + 1)
    expected = [_round_half_away(Fraction(int(t), count)) for t in totals]
    np.testing.assert_array_equal(rounding_divide(totals, count), expected)


def test_ties_round_away_from_zero_both_signs():
    # windows of 2 and 4 elements whose sums are exact halves
    x = np.array([1, 0, -1, 0, 3, 0, -3, 0, 127, 126, -128, -127], dtype=np.int8).reshape(1, 1, 12, 1)
    got = average_pool2d(x, (1, 2), stride=(1, 2)).reshape(-1)
    np.testing.assert_array_equal(got, [1, -1, 2, -2, 127, -128])
    x = np.array([[1, 1], [0, 0]], dtype=np.int8).reshape(1, 2, 2, 1)             # 2 / 4 = 0.5
    assert average_pool2d(x, (2, 2)).item() == 1
    assert average_pool2d(-x, (2, 2)).item() == -1
    x = np.array([[3, 3], [0, 0]], dtype=np.int8).reshape(1, 2, 2, 1)             # 6 / 4 = 1.5
    assert average_pool2d(x, (2, 2)).item() == 2
    assert average_pool2d(-x, (2, 2)).item() == -2


def test_global_average_pool_7x7_divides_by_49():
    # sums 49 * 3 + 24 (rounds down), 49 * 3 + 25 (rounds up) and their negatives
    x = np.zeros((1, 7, 7, 4), dtype=np.int8)
    x[..., :] = [3, 3, -3, -3]
    x[0, 0, :, 0] += [4, 4, 4, 4, 4, 4, 0]          # + 24
    x[0, 0, :, 1] += [4, 4, 4, 4, 4, 4, 1]          # + 25
    x[0, 0, :, 2] -= [4, 4, 4, 4, 4, 4, 0]
    x[0, 0, :, 3] -= [4, 4, 4, 4, 4, 4, 1]
    got = global_average_pool(x)
    assert got.shape == (1, 1, 1, 4)
    np.testing.assert_array_equal(got.reshape(-1), [3, 4, -3, -4])


def test_global_average_pool_batch_and_clamp():
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (3, 7, 7, 6)).astype(np.int8)
    got = global_average_pool(x, qmin=-5, qmax=5)
    np.testing.assert_array_equal(got, ref_average_pool(x, (7, 7), (1, 1), (0, 0, 0, 0), -5, 5))
    x = np.full((1, 7, 7, 2), -128, dtype=np.int8)
    np.testing.assert_array_equal(global_average_pool(x).reshape(-1), [-128, -128])


def test_padding_is_not_counted():
    # 3x3 SAME on a 2x2 map of 10s: every window covers only real elements, so every mean is 10, not 10 * 4 / 9.
    x = np.full((1, 2, 2, 1), 10, dtype=np.int8)
    np.testing.assert_array_equal(average_pool2d(x, (3, 3), padding=(1, 1, 1, 1)), np.full((1, 2, 2, 1), 10))


def test_average_pool_params_are_exact_over_every_window_sum():
    for count in [*range(1, 300), 3136, 12544, MAX_POOL_COUNT]:
        multiplier, shift = average_pool_params(count)
        assert 1 << 30 <= multiplier < 1 << 31 and -32 <= shift <= 0
        total = np.arange(-128 * count, 127 * count + 1, dtype=np.int64)
        got = requantize(GAP_WEIGHT * total, multiplier, shift, 0, 0, -128, 127)
        np.testing.assert_array_equal(got, np.clip(rounding_divide(total, count), -128, 127), err_msg=str(count))
    for bad in (0, MAX_POOL_COUNT + 1, 2.0):
        with pytest.raises(ValueError, match="count must be an integer"):
            average_pool_params(bad)


@pytest.mark.parametrize("call, message", [
    (lambda: average_pool2d(np.zeros((1, 2, 2, 1), np.int8), (2, 2), padding=(2, 0, 0, 0)),
     r"^a pooling window lies entirely in the padding$"),
    (lambda: average_pool2d(np.zeros((1, 2, 2, 1), np.int8), (3, 3)), r"^kernel 3 is larger than the padded input 2$"),
    (lambda: average_pool2d(np.zeros((1, 2, 2, 1), np.int8), 2),
     r"^kernel must be a pair of positive integers, not 2$"),
    (lambda: average_pool2d(np.zeros((1, 2, 2, 1), np.int8), (1, 1), qmin=5, qmax=4),
     r"^clamp bounds must satisfy -128 <= qmin <= qmax <= 127, not \(5, 4\)$"),
    (lambda: average_pool2d(np.full((1, 2, 2, 1), 200), (1, 1)), r"^x values must lie in \[-128, 127\]"),
    (lambda: global_average_pool(np.zeros((2, 2, 1), np.int8)), r"^x must be \(N, H, W, C\)"),
    (lambda: rounding_divide(5, 0), r"^count must be positive$"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- max pooling ------------------------------------------------------------------------------------------------------

def ref_max_pool(x, kernel, stride, padding, qmin=-128, qmax=127):
    """Per-element loops over the taps that fall inside the input (TFLite's MaxPool): padding never takes part."""
    n, h, w, c = x.shape
    top, bottom, left, right = padding
    ho = (h + top + bottom - kernel[0]) // stride[0] + 1
    wo = (w + left + right - kernel[1]) // stride[1] + 1
    out = np.zeros((n, ho, wo, c), dtype=np.int64)
    for b, oy, ox, ch in np.ndindex(out.shape):
        taps = [int(x[b, iy, ix, ch])
                for iy in range(oy * stride[0] - top, oy * stride[0] - top + kernel[0])
                for ix in range(ox * stride[1] - left, ox * stride[1] - left + kernel[1])
                if 0 <= iy < h and 0 <= ix < w]
        out[b, oy, ox, ch] = min(max(max(taps), qmin), qmax)
    return out


@pytest.mark.parametrize("kernel, stride, padding", [((3, 3), (2, 2), (1, 1, 1, 1)), ((2, 2), (2, 2), (0, 0, 0, 0)),
                                                     ((3, 3), (1, 1), (1, 1, 1, 1)), ((3, 2), (2, 1), (0, 2, 1, 0)),
                                                     ((5, 5), (1, 1), (2, 2, 2, 2))])
def test_max_pool_matches_loop_reference(kernel, stride, padding):
    rng = np.random.default_rng(sum(kernel) + 7 * sum(padding))
    x = rng.integers(-128, 128, (2, 7, 6, 3))
    x[0, :3, :3, :] = -128                               # windows whose every element is -128, next to the padding
    for qmin, qmax in ((-128, 127), (-20, 90)):
        got = max_pool2d(x, kernel, stride=stride, padding=padding, qmin=qmin, qmax=qmax)
        np.testing.assert_array_equal(got, ref_max_pool(x, kernel, stride, padding, qmin, qmax))


def test_max_pool_padding_never_wins():
    # Every element -100: a zero-point or zero padding would win at the borders; -128 padding never does.
    x = np.full((1, 4, 4, 1), -100)
    np.testing.assert_array_equal(max_pool2d(x, (3, 3), stride=(2, 2), padding=(1, 1, 1, 1)), np.full((1, 2, 2, 1), -100))


def test_max_pool_refuses_a_window_in_the_padding():
    with pytest.raises(ValueError, match="lies entirely in the padding"):
        max_pool2d(np.zeros((1, 2, 2, 1), np.int8), (2, 2), stride=(2, 2), padding=(2, 0, 0, 0))
