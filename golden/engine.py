"""Golden model of the convolution engine: one layer descriptor run on memory images.

:func:`run_layer` is what ``hdl/engine.py`` does to its memories, computed with the golden ops (``golden.conv``,
``golden.pool``, ``golden.requant``) on the tensors that ``golden.memory`` reads out of the images.

Global average pooling runs on the engine's requantizer: the MAC array sums ``GAP_WEIGHT * x`` over the window
(input zero point 0, bias 0, k_c 0) and :func:`average_pool_params` gives a ``(multiplier, shift)`` with which
:func:`golden.requant.requantize` of that sum equals :func:`golden.pool.global_average_pool`'s rounded division for
every window sum an int8 input can produce (the proof is in the function's docstring; tests check it exhaustively).
"""

import numpy as np

from .conv import conv2d, depthwise_conv2d
from .memory import MAX_POOL_COUNT, check_descriptor, load_activation, store_activation
from .pool import global_average_pool
from .requant import requantize

__all__ = ["GAP_WEIGHT", "average_pool_params", "run_layer"]

#: Weight the engine gives every input of a global average pool (2**6: the sum gains 6 fraction bits).
GAP_WEIGHT = 64


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


def run_layer(descriptor, images, config):
    """Run one layer on :class:`golden.memory.MemoryImages` as the engine does; the output is stored in the images.

    Returns:
        ``(output, accumulators)``: the int8 output tensor ``(Ho, Wo, Cout)`` and the int32 values the requantizer
        received (bias included; for a pool ``GAP_WEIGHT`` times the window sums).
    """
    check_descriptor(descriptor, config)
    d = descriptor
    x = load_activation(images.activation, d.in_shape, base=d.in_base, pitch=d.in_row_pitch, config=config)
    lanes = config.lanes
    channels = d.out_channels
    if d.kind == "average_pool":
        acc = GAP_WEIGHT * x.sum(axis=(0, 1), keepdims=True)
        channel_shift = np.zeros(channels, dtype=np.int64)
        expected = global_average_pool(x[None], qmin=d.qmin, qmax=d.qmax)[0]
    else:
        words = -(-channels // lanes)
        bias = images.bias[d.bias_base:d.bias_base + words].reshape(-1)[:channels]
        channel_shift = images.channel_shift[d.bias_base:d.bias_base + words].reshape(-1)[:channels]
        weights = _weights(d, images, config)
        if d.kind == "depthwise":
            acc = depthwise_conv2d(x[None], weights, bias, stride=(d.stride_height, d.stride_width),
                                   padding=d.padding, input_zero_point=d.input_zero_point)[0]
        else:
            acc = conv2d(x[None], weights, bias, stride=(d.stride_height, d.stride_width), padding=d.padding,
                         input_zero_point=d.input_zero_point)[0]
        expected = None
    output = requantize(acc, d.multiplier, d.shift, channel_shift, d.output_zero_point, d.qmin, d.qmax)
    if expected is not None and not np.array_equal(output, expected):
        raise AssertionError("average_pool_params is not exact for this window")  # the proof above says never
    store_activation(images.activation, output, base=d.out_base, pitch=d.out_row_pitch, config=config)
    return output, acc


def _weights(d, images, config):
    # The layer's weights read back out of the weight image, in the golden ops' layouts.
    lanes = config.lanes
    kh, kw = d.kernel_height, d.kernel_width
    if d.kind == "depthwise":
        blocks = -(-d.out_channels // config.macs)
        words = images.weights[d.weight_base:d.weight_base + blocks * kh * kw]
        flat = words.reshape(blocks, kh, kw, config.macs).transpose(1, 2, 0, 3).reshape(kh, kw, -1)
        return flat[..., :d.out_channels].astype(np.int64)
    gout, gin = -(-d.out_channels // lanes), -(-d.in_channels // lanes)
    words = images.weights[d.weight_base:d.weight_base + gout * kh * kw * gin]
    ohwi = words.reshape(gout, kh, kw, gin, lanes, lanes).transpose(0, 4, 1, 2, 3, 5)
    return ohwi.reshape(gout * lanes, kh, kw, gin * lanes)[:d.out_channels, :, :, :d.in_channels].astype(np.int64)
