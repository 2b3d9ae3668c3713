"""Golden model of the convolution engine: one layer descriptor run on memory images.

:func:`run_layer` is what ``hdl/engine.py`` does to its memories, computed with the golden ops (``golden.conv``,
``golden.pool``, ``golden.requant``) on the tensors that ``golden.images`` reads out of the images. A global average
pool runs on the requantizer with ``golden.pool.GAP_WEIGHT`` and ``golden.pool.average_pool_params``, a max pool
hands it the window maxima (``golden.pool.max_pool2d``) to pass unchanged (``golden.pool.MAX_POOL_PARAMS``); a two-bit
layer's
code words are decoded with its descriptor's codebook (``golden.layouts.decode_code_words``); a residual add reads its
second input too and hands the requantizer ``golden.add.rescaled_sum`` with channel shift 0. A layer with the
``table`` flag looks every requantized output up in its activation table (``golden.activation.lookup``).
"""

import numpy as np

from .activation import lookup
from .add import descriptor_params, rescaled_sum
from .conv import conv2d, depthwise_conv2d
from .descriptor import check_descriptor
from .images import load_activation, read_code_words, store_activation
from .layouts import decode_code_words, weight_words
from .pool import GAP_WEIGHT, global_average_pool, max_pool2d
from .requant import requantize

__all__ = ["run_layer"]


def run_layer(descriptor, images, config):
    """Run one layer on :class:`golden.images.MemoryImages` as the engine does; the output is stored in the images.

    Returns:
        ``(output, accumulators)``: the int8 output tensor ``(Ho, Wo, Cout)`` (after the layer's table, if it has
        one) and the int32 values the requantizer received (bias included; for a pool ``GAP_WEIGHT`` times the
        window sums; for a max pool the window maxima; for an add the rescaled sum).
    """
    check_descriptor(descriptor, config)
    d = descriptor
    x = load_activation(images.activation, d.in_shape, base=d.in_base, pitch=d.in_row_pitch, config=config)
    lanes = config.lanes
    channels = d.out_channels
    expected = None
    if d.kind == "add":
        x2 = load_activation(images.activation, d.in_shape, base=d.in2_base, pitch=d.in2_row_pitch, config=config)
        acc = rescaled_sum(x, x2, descriptor_params(d))
        channel_shift = np.zeros(channels, dtype=np.int64)
    elif d.kind == "average_pool":
        acc = GAP_WEIGHT * x.sum(axis=(0, 1), keepdims=True)
        channel_shift = np.zeros(channels, dtype=np.int64)
        expected = global_average_pool(x[None], qmin=d.qmin, qmax=d.qmax)[0]
    elif d.kind == "max_pool":
        acc = max_pool2d(x[None], (d.kernel_height, d.kernel_width), stride=(d.stride_height, d.stride_width),
                         padding=d.padding)[0]
        channel_shift = np.zeros(channels, dtype=np.int64)
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
    output = requantize(acc, d.multiplier, d.shift, channel_shift, d.output_zero_point, d.qmin, d.qmax)
    if expected is not None and not np.array_equal(output, expected):
        raise AssertionError("average_pool_params is not exact for this window")  # the proof above says never
    if d.table:
        output = lookup(output, images.tables[d.table_base])
    store_activation(images.activation, output, base=d.out_base, pitch=d.out_row_pitch, config=config,
                     skew=d.out_skew)
    return output, acc


def _weights(d, images, config):
    # The layer's weights read back out of the weight image (int8 words, or code words decoded), in the golden ops'
    # layouts. Only the layer's own elements are kept: padding elements (code 0 decodes to codebook[0], not 0) are
    # never used, so the model computes the layer whatever the padding holds.
    lanes = config.lanes
    kh, kw = d.kernel_height, d.kernel_width
    count = weight_words(d, config)
    if d.weight_format:
        codebook = [d.codebook0, d.codebook1, d.codebook2, d.codebook3]
        words = decode_code_words(read_code_words(images.weights, d.weight_base, count, config), codebook, config)
    else:
        words = images.weights[d.weight_base:d.weight_base + count]
    if d.kind == "depthwise":
        blocks = -(-d.out_channels // config.macs)
        flat = words.reshape(blocks, kh, kw, config.macs).transpose(1, 2, 0, 3).reshape(kh, kw, -1)
        return flat[..., :d.out_channels].astype(np.int64)
    gout, gin = -(-d.out_channels // lanes), -(-d.in_channels // lanes)
    ohwi = words.reshape(gout, kh, kw, gin, lanes, lanes).transpose(0, 4, 1, 2, 3, 5)
    return ohwi.reshape(gout * lanes, kh, kw, gin * lanes)[:d.out_channels, :, :, :d.in_channels].astype(np.int64)
