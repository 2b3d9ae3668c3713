"""Golden model of average pooling on int8 tensors (TFLite AVERAGE_POOL_2D, reference int8 kernel).

Input and output share one scale and zero point, so pooling needs no multiplier: each output is the window sum divided
by the number of input elements the window covers, rounded half away from zero, then clamped (docs/arithmetic.md,
"Average pooling"). A converter expresses ONNX GlobalAveragePool as an AVERAGE_POOL_2D whose window is the whole
feature map (7 x 7 = 49 elements in MobileNetV2) to stay bit-exact with this model; TFLite's MEAN requantizes with a
multiplier and rounds differently.

The engine runs a global average pool on its requantizer: the MAC array sums ``GAP_WEIGHT * x`` over the window (input
zero point 0, bias 0, k_c 0) and :func:`average_pool_params` gives a ``(multiplier, shift)`` with which
:func:`golden.requant.requantize` of that sum equals :func:`global_average_pool`'s rounded division for every window
sum an int8 input can produce (the proof is in the function's docstring; tests check it exhaustively).
"""

import numpy as np

from .conv import _activation, _centred_padded, _clamp_bounds, _padding, _stride, _taps

__all__ = ["average_pool2d", "global_average_pool", "max_pool2d", "rounding_divide", "GAP_WEIGHT", "MAX_POOL_COUNT",
           "average_pool_params", "MAX_POOL_PARAMS"]

#: Weight the engine gives every input of a global average pool (2**6: the sum gains 6 fraction bits).
GAP_WEIGHT = 64

#: Requantization of a max pool on the engine: the window maximum passes the requantizer unchanged (``golden.requant``
#: ``requantize(x, 2**30, 1, 0, 0, qmin, qmax)`` is ``clip(x, qmin, qmax)`` for every int8 ``x``: ``x * 2`` times
#: ``2**30 / 2**31``), zero points 0 as input and output share their quantization.
MAX_POOL_PARAMS = dict(input_zero_point=0, output_zero_point=0, multiplier=1 << 30, shift=1)

#: Largest window a global average pool may sum: the engine weighs each input by :data:`GAP_WEIGHT`, and
#: ``GAP_WEIGHT * 128 * count`` must stay below 2**31.
MAX_POOL_COUNT = (1 << 18) - 1


def rounding_divide(total, count):
    """``total / count`` rounded half away from zero, in integers.

    TFLite's pooling rounding: ``(total + count // 2) / count`` for a positive total and
    ``(total - count // 2) / count`` otherwise, with C's truncating division. For an odd ``count`` no quotient is a tie.

    Args:
        total: integer window sums (any shape).
        count: positive integer element counts, broadcasting against ``total``.

    Examples:
        >>> rounding_divide(np.array([5, -5, 7, -7, 6, -6]), 4).tolist()
        [1, -1, 2, -2, 2, -2]
    """
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    if np.any(count < 1):
        raise ValueError("count must be positive")
    quotient = (np.abs(total) + count // 2) // count
    return np.where(total < 0, -quotient, quotient)


def average_pool2d(x, kernel, *, stride=(1, 1), padding=(0, 0, 0, 0), qmin=-128, qmax=127):
    """int8 average pooling, NHWC: the rounded mean over each window of the elements inside the input.

    Padded positions are not counted (TFLite's ``filter_count`` counts only the taps that fall inside the input), so
    a window's divisor is ``rows inside * columns inside``.

    Args:
        x: int8 input ``(N, H, W, C)``.
        kernel: window ``(KH, KW)``.
        stride: ``(sh, sw)``.
        padding: ``(top, bottom, left, right)``; ``(0, 0, 0, 0)`` is VALID.
        qmin, qmax: clamp bounds of the fused activation (the output shares the input's scale and zero point).
    Returns:
        int64 array ``(N, Ho, Wo, C)`` of int8 values.
    Raises:
        ValueError: for a bad shape or parameter, or a window that lies entirely in the padding.
    """
    x, kernel, stride, (top, bottom, left, right), qmin, qmax = _window_operands(x, kernel, stride, padding, qmin, qmax)
    padded, (ho, wo) = _centred_padded(x, 0, kernel, stride, (top, bottom, left, right), np.int64)
    total = sum(tap for _, _, tap in _taps(padded, kernel, stride, (ho, wo)))
    h, w = x.shape[1:3]
    rows = _inside(h, kernel[0], stride[0], top, ho)
    cols = _inside(w, kernel[1], stride[1], left, wo)
    count = rows[:, None] * cols[None, :]
    if np.any(count == 0):
        raise ValueError("a pooling window lies entirely in the padding")
    return np.clip(rounding_divide(total, count[None, :, :, None]), qmin, qmax)


def max_pool2d(x, kernel, *, stride=(1, 1), padding=(0, 0, 0, 0), qmin=-128, qmax=127):
    """int8 max pooling, NHWC: the largest element inside the input of each window, then clamped.

    Padding never wins: a padded tap reads -128, the smallest int8, which equals the true maximum only when every
    element inside the window is -128 too (TFLite's MAX_POOL_2D skips padded taps; an explicit padding is written
    as a PADV2 with -128 before a VALID pool, docs/arithmetic.md "Max pooling"). Input and output share one scale
    and zero point.

    Arguments, result and errors as :func:`average_pool2d`'s.
    """
    x, kernel, stride, (top, bottom, left, right), qmin, qmax = _window_operands(x, kernel, stride, padding, qmin, qmax)
    # x + 128 >= 0, padded with 0: the padding reads -128 after the shift back.
    padded, (ho, wo) = _centred_padded(x, -128, kernel, stride, (top, bottom, left, right), np.int64)
    h, w = x.shape[1:3]
    if not (_inside(h, kernel[0], stride[0], top, ho).all() and _inside(w, kernel[1], stride[1], left, wo).all()):
        raise ValueError("a pooling window lies entirely in the padding")
    largest = np.maximum.reduce([tap for _, _, tap in _taps(padded, kernel, stride, (ho, wo))])
    return np.clip(largest - 128, qmin, qmax)


def global_average_pool(x, *, qmin=-128, qmax=127):
    """int8 global average pooling: :func:`average_pool2d` with the whole ``H x W`` map as the window.

    Returns:
        int64 array ``(N, 1, 1, C)``.
    """
    x = _activation(x, 4)
    return average_pool2d(x, x.shape[1:3], qmin=qmin, qmax=qmax)


def average_pool_params(count):
    """``(multiplier, shift)`` that turn ``GAP_WEIGHT * sum`` into ``round_half_away(sum / count)`` exactly.

    Write ``count = 2**a * u`` with ``u`` odd and ``c = ceil(log2 u)``; then ``multiplier = round(2**(30+c) / u)``
    (in ``[2**30, 2**31)``) and ``shift = -(a + 5 + c)``. For a window sum ``t`` with ``|t| <= 128 * count``, the
    requantizer's ``h = SRDHM(64 t, multiplier)`` is within ``1/2 + count / 2**19 < 1`` of ``h* = t * 2**(5+c) / u``,
    and equals ``h*`` whenever ``h*`` is an integer (the error is then below 1/2). Its final rounding shift by
    ``a + 5 + c`` divides ``h*`` back to ``t / count``: when ``t / count`` is a tie, ``h*`` is an integer and the
    shift rounds it away from zero as :func:`golden.pool.rounding_divide` does; otherwise ``t / count`` is at least
    ``1 / (2 count)`` from a rounding boundary, i.e. ``h*`` at least ``2**(4+c) / u >= 16`` from one, so an error
    below 1 cannot move it across. ``64 t`` fits int32 while ``count <= MAX_POOL_COUNT``.

    Args:
        count: the number of window elements, in ``[1, MAX_POOL_COUNT]``.
    Returns:
        ``(multiplier, shift)`` for the descriptor (integer arithmetic only).

    Examples:
        >>> average_pool_params(49)
        (1402438301, -11)
        >>> average_pool_params(16)
        (1073741824, -9)
    """
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or not 1 <= count <= MAX_POOL_COUNT:
        raise ValueError(f"count must be an integer in [1, {MAX_POOL_COUNT}], not {count!r}")
    count = int(count)
    twos = (count & -count).bit_length() - 1
    odd = count >> twos
    ceil_log2 = (odd - 1).bit_length()
    multiplier = ((1 << (30 + ceil_log2)) + odd // 2) // odd
    return multiplier, -(twos + 5 + ceil_log2)


def _window_operands(x, kernel, stride, padding, qmin, qmax):
    # The validated operands of a pooling window: x, kernel, stride, padding, qmin, qmax.
    return (_activation(x, 4), _stride(kernel, "kernel"), _stride(stride), _padding(padding),
            *_clamp_bounds(qmin, qmax))


def _inside(size, kernel, stride, pad_before, out_size):
    # For each output position along one axis: how many of the window's taps fall inside the input.
    start = np.arange(out_size) * stride - pad_before
    return np.maximum(np.minimum(start + kernel, size) - np.maximum(start, 0), 0)
