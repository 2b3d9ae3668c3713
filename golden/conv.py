"""Golden model of the convolution engine's accumulation: conv, depthwise conv and fully connected layers.

Each function returns the exact int32 accumulators of one layer as an int64 array; the caller requantizes them with
:func:`golden.requant.requantize`. Tensors are NHWC, activations int8 with one zero point per tensor, weights int8
(symmetric), biases int32. A padded tap reads the input zero point, so it contributes nothing (docs/arithmetic.md).

Why float BLAS is exact here: the contractions run as float32 or float64 matrix products because NumPy has no integer
BLAS. Every product ``w * (x - zp)`` is an integer of magnitude at most ``128 * 255 < 2**24``, and every partial sum
that any summation order (blocking, FMA) can form is a sum of a subset of those products, so its magnitude is at most
``max_c sum |w_c| * max |x - zp|``. While that bound is below ``2**24`` (float32) or ``2**53`` (float64) every
intermediate value is an integer the format represents exactly, so no rounding ever happens and the conversion back to
int64 is exact. The bound is computed from the actual data for every call; float32 is used where it holds, float64
otherwise, and a contraction that could exceed ``2**53`` (more than ~2.7e11 terms) is refused.
"""

import numpy as np

from .requant import INT32_MAX, INT32_MIN

__all__ = [
    "conv2d", "depthwise_conv2d", "fully_connected",
    "same_padding", "conv_output_size", "accumulator_bound",
]

_INT8_MIN, _INT8_MAX = -128, 127


def same_padding(in_size, kernel, stride):
    """Padding ``(before, after)`` of one spatial axis for TFLite SAME / ONNX SAME_UPPER.

    The output has ``ceil(in_size / stride)`` elements; the total padding needed for that is split with the odd
    element at the end (``after >= before``).

    Examples:
        >>> same_padding(224, 3, 2)
        (0, 1)
        >>> same_padding(112, 3, 1)
        (1, 1)
    """
    in_size, kernel, stride = (_positive_int(v, name) for v, name in
                               ((in_size, "in_size"), (kernel, "kernel"), (stride, "stride")))
    out_size = -(-in_size // stride)
    total = max((out_size - 1) * stride + kernel - in_size, 0)
    return total // 2, total - total // 2


def conv_output_size(in_size, kernel, stride=1, pad_before=0, pad_after=0):
    """Output length of one spatial axis: ``(in_size + pad_before + pad_after - kernel) // stride + 1``.

    Raises:
        ValueError: if the kernel is larger than the padded input.

    Examples:
        >>> conv_output_size(224, 3, 2, *same_padding(224, 3, 2))
        112
    """
    in_size, kernel, stride = (_positive_int(v, name) for v, name in
                               ((in_size, "in_size"), (kernel, "kernel"), (stride, "stride")))
    pad_before, pad_after = (_non_negative_int(v, name) for v, name in
                             ((pad_before, "pad_before"), (pad_after, "pad_after")))
    padded = in_size + pad_before + pad_after
    if kernel > padded:
        raise ValueError(f"kernel {kernel} is larger than the padded input {padded}")
    return (padded - kernel) // stride + 1


def accumulator_bound(weights, input_zero_point, bias=None, *, channel_axis=0):
    """Largest ``|acc|`` any int8 input can produce: ``max_c |bias_c| + sum |w_c| * max|x - zp|``.

    ``max|x - zp|`` is taken over the whole int8 range, ``max(|-128 - zp|, |127 - zp|)``, so the bound holds for every
    input; a layer whose bound is at most ``INT32_MAX`` can never overflow its int32 accumulators.

    Args:
        weights: int8 weights; conv ``(Cout, KH, KW, Cin)``, fully connected ``(Cout, Cin)``, depthwise ``(KH, KW, C)``.
        input_zero_point: the input tensor's zero point.
        bias: int32 per-channel bias, or ``None``.
        channel_axis: the output-channel axis of ``weights``: 0 for conv and fully connected, -1 for depthwise.
    Returns:
        The bound as a Python int.

    Examples:
        >>> accumulator_bound(np.full((1, 3), 127), -128, [5])
        97160
    """
    weights = _int_array(weights, "weights", _INT8_MIN, _INT8_MAX).astype(np.int64)
    if weights.ndim == 0:
        raise ValueError("weights must have at least one dimension")
    zero_point = _zero_point(input_zero_point)
    magnitude = _channel_magnitude(weights, channel_axis)
    bias = _bias(bias, magnitude.shape[0])
    return int((np.abs(bias) + magnitude * max(abs(_INT8_MIN - zero_point), abs(_INT8_MAX - zero_point))).max())


def conv2d(x, weights, bias, *, stride=(1, 1), padding=(0, 0, 0, 0), input_zero_point=0):
    """Accumulators of a regular 2-D convolution (TFLite CONV_2D, dilation 1, one group).

    ``acc[n, y, x, c] = bias[c] + sum_{ky, kx, ci} w[c, ky, kx, ci] * (x[n, y*sh+ky-top, x*sw+kx-left, ci] - zp)``
    with padded taps contributing 0.

    Args:
        x: int8 input ``(N, H, W, Cin)``.
        weights: int8 weights ``(Cout, KH, KW, Cin)`` (OHWI, as TFLite stores them).
        bias: int32 bias ``(Cout,)``, or ``None`` for none.
        stride: ``(sh, sw)``.
        padding: ``(top, bottom, left, right)``; see :func:`same_padding`.
        input_zero_point: zero point of ``x``.
    Returns:
        int64 accumulators ``(N, Ho, Wo, Cout)``, each within int32.
    Raises:
        ValueError: for a bad shape, stride, padding or out-of-range value.
        OverflowError: if an accumulator does not fit int32.
    """
    x, weights, bias, stride, padding, zero_point = _spatial_operands(
        "conv2d", "(Cout, KH, KW, Cin)", 0, x, weights, bias, stride, padding, input_zero_point)
    cout, kh, kw, cin = weights.shape

    dtype = _exact_dtype(x, weights, zero_point, channel_axis=0)
    xp, (ho, wo) = _centred_padded(x, zero_point, (kh, kw), stride, padding, dtype)
    n = x.shape[0]
    if (kh, kw) == (1, 1):
        cols = xp[:, :(ho - 1) * stride[0] + 1:stride[0], :(wo - 1) * stride[1] + 1:stride[1], :]
    else:
        cols = np.empty((n, ho, wo, kh, kw, cin), dtype=dtype)
        for ky, kx, tap in _taps(xp, (kh, kw), stride, (ho, wo)):
            cols[:, :, :, ky, kx, :] = tap
    products = cols.reshape(n * ho * wo, kh * kw * cin) @ weights.reshape(cout, -1).T.astype(dtype)
    return _finish(products.reshape(n, ho, wo, cout), bias, "conv2d")


def depthwise_conv2d(x, weights, bias, *, stride=(1, 1), padding=(0, 0, 0, 0), input_zero_point=0):
    """Accumulators of a depthwise 2-D convolution (TFLite DEPTHWISE_CONV_2D, depth multiplier 1, dilation 1).

    ``acc[n, y, x, c] = bias[c] + sum_{ky, kx} w[ky, kx, c] * (x[n, y*sh + ky - top, x*sw + kx - left, c] - zp)``,
    computed as one vectorised multiply-add over the whole tensor per kernel tap.

    Args:
        x: int8 input ``(N, H, W, C)``.
        weights: int8 weights ``(KH, KW, C)`` (TFLite's ``(1, KH, KW, C)`` without the leading 1).
        bias: int32 bias ``(C,)``, or ``None``.
        stride, padding, input_zero_point: as for :func:`conv2d`.
    Returns:
        int64 accumulators ``(N, Ho, Wo, C)``, each within int32.
    Raises:
        ValueError: for a bad shape, stride, padding or out-of-range value.
        OverflowError: if an accumulator does not fit int32.
    """
    x, weights, bias, stride, padding, zero_point = _spatial_operands(
        "depthwise_conv2d", "(KH, KW, C)", -1, x, weights, bias, stride, padding, input_zero_point)
    kh, kw, channels = weights.shape

    # Elementwise products are not BLAS, so integers are as fast as floats: int32 holds every partial sum while the
    # bound allows, int64 always does.
    bound = int(_channel_magnitude(weights, -1).max()) * _input_magnitude(x, zero_point)
    dtype = np.int32 if bound <= INT32_MAX else np.int64
    xp, (ho, wo) = _centred_padded(x, zero_point, (kh, kw), stride, padding, dtype)
    w = weights.astype(dtype)
    taps = _taps(xp, (kh, kw), stride, (ho, wo))
    ky, kx, tap = next(taps)
    acc = tap * w[ky, kx]
    product = np.empty_like(acc)
    for ky, kx, tap in taps:
        np.multiply(tap, w[ky, kx], out=product)
        acc += product
    return _finish(acc, bias, "depthwise_conv2d")


def fully_connected(x, weights, bias, *, input_zero_point=0):
    """Accumulators of a fully connected layer: ``acc[n, c] = bias[c] + sum_i w[c, i] * (x[n, i] - zp)``.

    Args:
        x: int8 input ``(N, Cin)``.
        weights: int8 weights ``(Cout, Cin)``.
        bias: int32 bias ``(Cout,)``, or ``None``.
        input_zero_point: zero point of ``x``.
    Returns:
        int64 accumulators ``(N, Cout)``, each within int32.
    Raises:
        ValueError: for a bad shape or out-of-range value.
        OverflowError: if an accumulator does not fit int32.
    """
    x = _activation(x, 2)
    weights = _weights(weights, "fully_connected", "(Cout, Cin)")
    if x.shape[1] != weights.shape[1]:
        raise ValueError(f"input has {x.shape[1]} features but the weights expect {weights.shape[1]}")
    bias = _bias(bias, weights.shape[0])
    zero_point = _zero_point(input_zero_point)
    dtype = _exact_dtype(x, weights, zero_point, channel_axis=0)
    products = np.subtract(x, zero_point, dtype=dtype) @ weights.T.astype(dtype)
    return _finish(products, bias, "fully_connected")


def _spatial_operands(op, layout, channel_axis, x, weights, bias, stride, padding, input_zero_point):
    # The validated operands of conv2d / depthwise_conv2d; the input channels are the weights' last axis in both.
    x = _activation(x, 4)
    weights = _weights(weights, op, layout)
    if x.shape[3] != weights.shape[-1]:
        raise ValueError(f"input has {x.shape[3]} channels but the weights expect {weights.shape[-1]}")
    bias = _bias(bias, weights.shape[channel_axis])
    return x, weights, bias, _stride(stride), _padding(padding), _zero_point(input_zero_point)


def _exact_dtype(x, weights, zero_point, *, channel_axis):
    # The float format in which the contraction is exact (module docstring): float32 below 2**24, float64 below 2**53.
    bound = int(_channel_magnitude(weights, channel_axis).max()) * _input_magnitude(x, zero_point)
    if bound < 1 << 24:
        return np.float32
    if bound < 1 << 53:
        return np.float64
    raise OverflowError(f"contraction bound {bound} reaches 2**53: float64 would not be exact")


def _channel_magnitude(weights, channel_axis):
    # sum |w| per output channel, as int64
    moved = np.moveaxis(np.abs(weights), channel_axis, 0)
    return moved.reshape(moved.shape[0], -1).sum(axis=1)


def _input_magnitude(x, zero_point):
    if x.size == 0:
        return 0
    return max(abs(int(x.min()) - zero_point), abs(int(x.max()) - zero_point))


def _centred_padded(x, zero_point, kernel, stride, padding, dtype):
    # x - zp in `dtype`, zero-padded: a padded tap then reads zp, i.e. contributes nothing.
    top, bottom, left, right = padding
    n, h, w, c = x.shape
    ho = conv_output_size(h, kernel[0], stride[0], top, bottom)
    wo = conv_output_size(w, kernel[1], stride[1], left, right)
    if padding == (0, 0, 0, 0):
        return np.subtract(x, zero_point, dtype=dtype), (ho, wo)
    xp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=dtype)
    np.subtract(x, zero_point, out=xp[:, top:top + h, left:left + w, :], dtype=dtype)
    return xp, (ho, wo)


def _taps(xp, kernel, stride, out_size):
    # (ky, kx, the (N, Ho, Wo, C) view of the padded input that kernel tap (ky, kx) multiplies)
    (sh, sw), (ho, wo) = stride, out_size
    for ky in range(kernel[0]):
        for kx in range(kernel[1]):
            yield ky, kx, xp[:, ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw, :]


def _finish(products, bias, op):
    # Exact conversion (the values are integers, see the module docstring), bias, int32 range check; one allocation.
    acc = np.add(products, bias, dtype=np.int64, casting="unsafe")
    if acc.size:
        low, high = int(acc.min()), int(acc.max())
        if low < INT32_MIN or high > INT32_MAX:
            raise OverflowError(f"{op} accumulators overflow int32: max |acc| = {max(-low, high)}")
    return acc


def _activation(x, ndim):
    # Validated but not copied: activations are the large operands.
    x = _int_array(x, "x", _INT8_MIN, _INT8_MAX)
    if x.ndim != ndim:
        layout = "(N, H, W, C)" if ndim == 4 else "(N, Cin)"
        raise ValueError(f"x must be {layout}, not of shape {x.shape}")
    return x


def _bias(bias, channels):
    if bias is None:
        return np.zeros(channels, dtype=np.int64)
    bias = _int_array(bias, "bias", INT32_MIN, INT32_MAX).astype(np.int64)
    if bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), not {bias.shape}")
    return bias


def _weights(weights, op, layout):
    weights = _int_array(weights, "weights", _INT8_MIN, _INT8_MAX).astype(np.int64)
    if weights.ndim != len(layout.split(",")):
        raise ValueError(f"{op} weights must be {layout}, not of shape {weights.shape}")
    return weights


def _int_array(value, name, low, high):
    # An integer array (in its own integer dtype) whose values lie in [low, high].
    array = np.asarray(value)
    if array.size == 0 and not np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not of dtype {array.dtype}")
    info = np.iinfo(array.dtype)
    if array.size and (info.min < low or info.max > high):
        found_low, found_high = int(array.min()), int(array.max())
        if found_low < low or found_high > high:
            raise ValueError(f"{name} values must lie in [{low}, {high}], found [{found_low}, {found_high}]")
    return array


def _zero_point(value, name="input_zero_point"):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not _INT8_MIN <= value <= _INT8_MAX:
        raise ValueError(f"{name} must be an integer in [-128, 127], not {value!r}")
    return int(value)


def _clamp_bounds(qmin, qmax):
    if not all(isinstance(q, (int, np.integer)) and not isinstance(q, bool) for q in (qmin, qmax)) \
            or not _INT8_MIN <= qmin <= qmax <= _INT8_MAX:
        raise ValueError(f"clamp bounds must satisfy -128 <= qmin <= qmax <= 127, not ({qmin!r}, {qmax!r})")
    return int(qmin), int(qmax)


def _stride(stride, name="stride"):
    if not isinstance(stride, (tuple, list)) or len(stride) != 2:
        raise ValueError(f"{name} must be a pair of positive integers, not {stride!r}")
    return tuple(_positive_int(s, name) for s in stride)


def _padding(padding):
    if not isinstance(padding, (tuple, list)) or len(padding) != 4:
        raise ValueError(f"padding must be (top, bottom, left, right), not {padding!r}")
    return tuple(_non_negative_int(p, "padding") for p in padding)


def _positive_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _non_negative_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)
