"""Cross-layer equalization (Nagel et al. 2019, "Data-free quantization", section 4.1) of the float graph IR.

Where a convolution ``A`` writes a tensor that only one convolution ``B`` reads (MobileNetV2: expansion 1x1 ->
depthwise 3x3 -> projection 1x1 -> next expansion), output channel ``c`` of ``A`` may be divided by ``s_c > 0`` and
input channel ``c`` of ``B`` multiplied by ``s_c`` without changing ``B``'s output: ``relu(x / s) = relu(x) / s``
and convolutions are linear. Choosing ``s_c = sqrt(r1_c / r2_c)`` (``r1_c = max |W_A[c]|``, ``r2_c`` the largest
weight of ``B`` on input channel ``c``) gives both the range ``sqrt(r1_c r2_c)``: channels of very different ranges
(batch-norm folding makes them, up to 2,200x in MobileNetV2's depthwise layers) become alike, so one scale per layer
(``layer``) or a few power-of-two steps (``wess``) lose less. Nothing changes on the NPU: the equalized graph is
just another float model, quantized as any other.

ReLU6 is the exception: ``min(relu(x / s), 6) = min(relu(x), 6 s) / s``, i.e. the clamp would have to move to
``6 s_c`` per channel, which one int8 clamp per layer cannot do. A ReLU6 channel is therefore equalized only where the
clamp does not act on the calibration images, before or after: its largest calibrated output ``m_c`` is below 6
and ``s_c >= m_c / 6``; a channel that reached 6 keeps ``s_c = 1``. On those images the equalized graph then computes
what the original does; on other images a ReLU6 channel that the calibration never saw clamped may clamp at a
different point, which the evaluation against the original float model measures.
"""

import dataclasses

import numpy as np

from . import frontend as ir

__all__ = ["RELU6_LIMIT", "equalization_pairs", "equalize"]

#: The bound of ReLU6 (``Clip(0, 6)``).
RELU6_LIMIT = 6.0


def equalization_pairs(graph):
    """``[(A, B), ...]`` indices into ``graph.nodes``: convolution ``A`` whose output only convolution ``B`` reads
    (regular ``B`` with one group, or depthwise), not the graph output, with no or a ReLU/ReLU6 activation."""
    readers = {}
    for index, node in enumerate(graph.nodes):
        for tensor in node.inputs:
            readers.setdefault(tensor, []).append(index)
    pairs = []
    for index, node in enumerate(graph.nodes):
        if not isinstance(node, ir.Conv) or node.output == graph.output or not (node.groups == 1 or node.depthwise) \
                or node.activation == "hard_sigmoid":         # its clamp at 1 does not scale with the weights
            continue
        following = readers.get(node.output, [])
        if len(following) != 1:
            continue
        reader = graph.nodes[following[0]]
        if isinstance(reader, ir.Conv) and (reader.groups == 1 or reader.depthwise):
            pairs.append((index, following[0]))
    return pairs


def _output_ranges(node):
    return np.abs(node.weights.astype(np.float64)).reshape(node.weights.shape[0], -1).max(axis=1)


def _input_ranges(node):
    weights = np.abs(node.weights.astype(np.float64))
    if node.depthwise:
        return weights.reshape(weights.shape[0], -1).max(axis=1)
    return weights.max(axis=(0, 2, 3))


def equalize(graph, channel_max=None, *, iterations=20, tolerance=1e-4, power_of_two=False):
    """The graph with every :func:`equalization_pairs` pair equalized, repeated until the scales settle.

    Args:
        graph: a :class:`tools.quantizer.frontend.Graph`.
        channel_max: ``{tensor: (C,) largest calibrated value per channel}`` of the original graph
            (:func:`tools.quantizer.calibrate.channel_maxima`); needed for ReLU6 tensors, whose channels are left
            alone without it.
        iterations: passes over all pairs at most (each pair's scale depends on its neighbours').
        tolerance: stop when no scale of a pass differs from 1 by more than this.
        power_of_two: then scale every pair's first layer's channels so that each channel's range is the layer's
            largest one times a power of two (WESS-aware: every channel then uses the whole int8 grid after its
            shift, as per-channel quantization does); a ReLU6 channel as above.

    Returns:
        ``(graph, scales)``: the equalized graph (float32 weights, as the IR stores them) and ``{tensor: (C,)
        float64}``, the factor each equalized tensor's channels were divided by.
    """
    nodes = list(graph.nodes)
    weights = {i: n.weights.astype(np.float64) for i, n in enumerate(nodes) if isinstance(n, ir.Conv)}
    biases = {i: n.bias.astype(np.float64) for i, n in enumerate(nodes) if isinstance(n, ir.Conv)}
    pairs = equalization_pairs(graph)
    total = {nodes[a].output: np.ones(nodes[a].weights.shape[0]) for a, _ in pairs}
    for _ in range(iterations):
        largest = 0.0
        for a, b in pairs:
            first, second = nodes[a], nodes[b]
            view_a = dataclasses.replace(first, weights=weights[a])
            view_b = dataclasses.replace(second, weights=weights[b])
            r1, r2 = _output_ranges(view_a), _input_ranges(view_b)
            live = (r1 > 0) & (r2 > 0)
            scale = np.where(live, np.sqrt(np.where(live, r1, 1.0) / np.where(live, r2, 1.0)), 1.0)
            if first.activation == "relu6":
                scale = _relu6_limit(scale, channel_max, first.output, total[first.output])
            weights[a] = weights[a] / scale[:, None, None, None]
            biases[a] = biases[a] / scale
            if second.depthwise:
                weights[b] = weights[b] * scale[:, None, None, None]
            else:
                weights[b] = weights[b] * scale[None, :, None, None]
            total[first.output] = total[first.output] * scale
            largest = max(largest, float(np.max(np.abs(scale - 1.0), initial=0.0)))
        if largest <= tolerance:
            break
    if power_of_two:
        # One pass in graph order: each producer's channel ranges become its largest one times a power of two, so
        # WESS's shifts make every channel of it use the whole grid; the consumer absorbs the (< 2x) factor.
        for a, b in pairs:
            first, second = nodes[a], nodes[b]
            relu6 = first.activation == "relu6"
            if relu6 and (channel_max is None or first.output not in channel_max):
                continue
            r1 = _output_ranges(dataclasses.replace(first, weights=weights[a]))
            scale = _power_of_two_scale(r1, channel_max[first.output] if relu6 else None, total[first.output])
            weights[a] = weights[a] / scale[:, None, None, None]
            biases[a] = biases[a] / scale
            weights[b] = weights[b] * (scale[:, None, None, None] if second.depthwise else scale[None, :, None, None])
            total[first.output] = total[first.output] * scale
    for i in weights:
        nodes[i] = dataclasses.replace(nodes[i], weights=weights[i].astype(np.float32),
                                       bias=biases[i].astype(np.float32))
    return dataclasses.replace(graph, nodes=tuple(nodes)), total


def _relu6_limit(scale, channel_max, tensor, done):
    """Scales of a ReLU6 tensor's channels that keep its clamp inactive on the calibration images (module docstring).

    ``done`` is the factor the channels were already divided by; the original maximum is ``channel_max[tensor]``.
    """
    if channel_max is None or tensor not in channel_max:
        return np.ones_like(scale)
    peak = np.asarray(channel_max[tensor], dtype=np.float64)
    clamped = peak >= RELU6_LIMIT * (1 - 1e-6)
    # After this step the channel's maximum is peak / (done * scale); it must stay <= 6.
    scale = np.maximum(scale, peak / (RELU6_LIMIT * done))
    return np.where(clamped, 1.0, scale)


def _power_of_two_scale(ranges, peak, done):
    """Per channel ``s`` with ``ranges / s = max(ranges) * 2**-k``: the channel grows to the next power of two
    (``s`` in ``(1/2, 1]``: its activations grow too, and lose less to the per-tensor activation step), or shrinks to
    the one below (``s`` in ``[1, 2)``) where a ReLU6 channel (``peak``: its original calibrated maxima, already
    divided by ``done``) would pass 6; a clamped ReLU6 channel and an all-zero one keep ``s = 1``."""
    top = ranges.max(initial=0.0)
    live = ranges > 0
    ratio = np.where(live, ranges / top, 1.0)
    down = np.exp2(np.floor(np.log2(ratio)))               # the power of two at or below the channel's range
    scale = ratio / _target(np.where(ratio == down, down, 2 * down))
    if peak is not None:
        peak = np.asarray(peak, dtype=np.float64)
        scale = np.where(peak / (done * scale) > RELU6_LIMIT, ratio / _target(down), scale)
        scale = np.where(peak >= RELU6_LIMIT * (1 - 1e-6), 1.0, scale)
    return np.where(live, scale, 1.0)


def _target(fraction):
    # A power-of-two fraction of the layer's range, a hair (2**-12) below it where it is < 1: after float32 round-off
    # the channel's range times 2**k still does not exceed the largest one, so WESS's floor(log2) gives k, not k - 1.
    return np.where(fraction < 1, fraction * (1 - 2.0 ** -12), 1.0)
