"""The WESS network builder: a float graph with activation ranges -> the integer network the NPU runs.

The pass after calibration (:mod:`tools.quantizer.calibrate`) and before evaluation: every IR tensor gets its int8
quantization from its calibrated range (pooling and flattening keep their input's), every Conv and FullyConnected
node its integer weights from one weight method (:mod:`tools.quantizer.weights`), an int32 bias in the accumulator's
scale and the fixed-point multiplier of its requantizer (``golden.requant``); residual adds get their
``golden.add`` parameters. Layers are named by kind and position (``conv0``, ``depthwise1``, ``add9``: the names of
the manifest, the memory images and the .tflite export), weights are converted to the NPU's layouts (NHWC,
fully connected columns in NHWC flatten order), and a layer whose bias or accumulator could overflow int32 is
refused with :class:`QuantizationError` instead of being built. :func:`mixed_network` combines the layers of two
networks of the same graph, to find which layer's quantization costs what (docs/quantizer.md, "Why the bit sweep is
not monotonic").
"""

import dataclasses

import numpy as np

from golden import network as gnet
from golden.activation import FIXED_OUTPUT, activation_table
from golden.add import add_params
from golden.config import NPUConfig
from golden.conv import accumulator_bound
from golden.layouts import CODE_BITS
from golden.mul import mul_params
from golden.requant import INT32_MAX, activation_bounds, quantize_multiplier, round_half_away_from_zero

from . import frontend as ir
from .calibrate import activation_quantization
from .output_error import refine_weights
from .weights import METHODS as WEIGHT_METHODS, QUANTIZERS, quantize_weights, sqnr_db

__all__ = ["QuantizationError", "build_network", "layer_names", "mixed_network"]


class QuantizationError(ValueError):
    """The model cannot be quantized for the NPU (an int32 bias or accumulator overflow, a degenerate layer)."""


def layer_names(graph):
    """IR tensor -> the name of the layer (and tensor) it becomes: kind + position, e.g. conv0, depthwise1, add9."""
    names = {}
    for index, node in enumerate(graph.nodes):
        kind = {ir.Conv: "depthwise" if getattr(node, "depthwise", False) else "conv", ir.FullyConnected: "fc",
                ir.Add: "add", ir.Pool: "pool", ir.Flatten: "flatten", ir.MaxPool: "maxpool",
                ir.Activation: getattr(node, "function", ""), ir.Concat: "concat", ir.Mul: "mul"}[type(node)]
        names[node.output] = f"{kind}{index}"
    return names


def _shared_ranges(graph, ranges):
    """``ranges`` with each Concat's inputs and output given the union of their ranges (LiteRT's int8 CONCATENATION
    requires one quantization for all of them), and the [0, 1] of every folded HardSigmoid."""
    ranges = dict(ranges)
    for node in graph.nodes:
        if getattr(node, "activation", None) == "hard_sigmoid":
            ranges[node.output] = (0.0, 1.0)
        if isinstance(node, ir.Concat):
            members = (*node.inputs, node.output)
            union = (min(ranges[t][0] for t in members), max(ranges[t][1] for t in members))
            ranges.update({t: union for t in members})
    return ranges


def _tensor_table(graph, ranges, names, input_range):
    """IR tensor name -> (layer tensor name, Tensor)."""
    table = {}
    ranges = _shared_ranges(graph, ranges)
    low, high = input_range if input_range is not None else ranges[graph.input]
    scale, zero_point = activation_quantization(low, high)
    c, h, w = graph.shapes[graph.input]
    table[graph.input] = (gnet.INPUT, gnet.Tensor(shape=(h, w, c), scale=scale, zero_point=zero_point))
    for node in graph.nodes:
        shape = graph.shapes[node.output]
        shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)
        if isinstance(node, (ir.Pool, ir.MaxPool, ir.Flatten)):
            source = table[node.input][1]       # pooling and flattening keep the input's quantization
            scale, zero_point = source.scale, source.zero_point
        elif isinstance(node, ir.Activation) and node.function in FIXED_OUTPUT:
            scale, zero_point = FIXED_OUTPUT[node.function]
        else:
            scale, zero_point = activation_quantization(*ranges[node.output])
        table[node.output] = (names[node.output], gnet.Tensor(shape=tuple(int(d) for d in shape), scale=scale,
                                                              zero_point=zero_point))
    return table


def _nhwc_columns(graph, node, array):
    """``array[..., F]`` with its last axis in the NPU's flatten order for the fully connected ``node``.

    ONNX flattens NCHW as ``(c, h, w)``; the NPU's NHWC tensor flattens as ``(h, w, c)``: permute weight columns (and
    input means) when the input is a flattened feature map with more than one pixel.
    """
    producer = graph.producer(node.input)
    if isinstance(producer, ir.Flatten):
        shape = graph.shapes[producer.input]
        if len(shape) == 3 and shape[1] * shape[2] > 1:
            c, h, w = shape
            lead = array.shape[:-1]
            return array.reshape(*lead, c, h, w).swapaxes(-3, -2).swapaxes(-2, -1).reshape(*lead, -1)
    return array


def build_network(graph, ranges, *, method="wess", weight_bits=8, shift_bits=4, input_range=None,
                  preprocessing=None, bias_correction=None, weight_quantizer="uniform", first_last_bits=None,
                  output_statistics=None, search_scales=False, optimise_rounding=False):
    """Quantize ``graph`` with activation ``ranges`` (from :func:`tools.quantizer.calibrate.calibrate`) and a weight
    method of :data:`tools.quantizer.weights.METHODS` at ``weight_bits`` bits, with ``shift_bits``-bit WESS shifts.

    ``input_range``, the real range of every preprocessed image (:attr:`tools.quantizer.datasets.Dataset.input_range`),
    fixes the input tensor's quantization (default: its calibrated range); ``preprocessing``, the dataset's contract,
    is stored in the network with the input scale and zero point added.

    ``weight_quantizer`` is one of :data:`tools.quantizer.weights.QUANTIZERS`: a two-bit one (``uq``, ``sptq``,
    ``msptq``, with ``weight_bits=2``) gives every weighted layer its codebook (:attr:`golden.network.Conv2D.codebook`)
    and the network an engine with the two-bit decoder (``weight_code_bits`` 2), whose images store those layers as
    codes (docs/memory.md section 2a).
    ``first_last_bits``, if given, quantizes the first and the last weighted layer with the uniform grid of that many
    bits instead (the usual exception of low-bit networks).

    ``bias_correction``, the channel means of :func:`tools.quantizer.calibrate.channel_means`, turns on empirical bias
    correction (Nagel et al. 2019): each float bias first loses the expected error its layer's weight quantization
    adds to the output, ``sum_i (W_q - W)[c, i] * mean(x_i)`` (padding ignored). The weights are unchanged.

    ``output_statistics``, the layer inputs of :func:`tools.quantizer.output_error.input_statistics`, lets the weights
    be chosen by the layers' output error on the calibration data (:func:`tools.quantizer.output_error.refine_weights`,
    uniform grid only): ``search_scales`` the layer scale and shifts (``+oe``), ``optimise_rounding`` each weight's
    rounding direction (``+ar``); with bias correction the error's mean is left to it (the covariance is minimised).

    Returns:
        ``(network, stats)``: the :class:`golden.network.Network` and a list of per-layer statistics dicts
        (weighted layers only: channel range ratio, shifts, weight SQNR, clipping, accumulator bound).
    Raises:
        QuantizationError: an all-zero layer, a bias that does not fit int32, or an accumulator that could overflow.
        ValueError: bad bits, method or quantizer.
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"method must be one of {', '.join(WEIGHT_METHODS)}, not {method!r}")
    if weight_quantizer not in QUANTIZERS:
        raise ValueError(f"weight quantizer must be one of {', '.join(QUANTIZERS)}, not {weight_quantizer!r}")
    if weight_quantizer != "uniform" and weight_bits != 2:
        raise ValueError(f"the two-bit quantizer {weight_quantizer} needs 2 weight bits, not {weight_bits!r}")
    config = NPUConfig(shift_bits=shift_bits, weight_code_bits=8 if weight_quantizer == "uniform" else CODE_BITS)
    names = layer_names(graph)
    table = _tensor_table(graph, ranges, names, input_range)
    weighted = [node for node in graph.nodes if isinstance(node, (ir.Conv, ir.FullyConnected))]
    ends = {id(weighted[0]), id(weighted[-1])} if first_last_bits is not None and weighted else set()
    layers, stats = [], []
    for node in graph.nodes:
        name, out = table[node.output]
        if isinstance(node, (ir.Conv, ir.FullyConnected)):
            bits, quantizer = (first_last_bits, "uniform") if id(node) in ends else (weight_bits, weight_quantizer)
            refine = None
            if search_scales or optimise_rounding:
                refine = dict(statistics=output_statistics[node.output], search=search_scales,
                              rounding=optimise_rounding, centred=bias_correction is not None)
            layer, stat = _weighted_layer(graph, node, name, table, method, bits, shift_bits,
                                          None if bias_correction is None else bias_correction[node.input],
                                          quantizer, refine)
            layers.append(layer)
            stats.append(stat)
        elif isinstance(node, ir.Add):
            (a, ta), (b, tb) = (table[t] for t in node.inputs)
            try:
                params = add_params(ta.scale, ta.zero_point, tb.scale, tb.zero_point, out.scale, out.zero_point)
            except ValueError as error:
                raise QuantizationError(f"layer {name} ({node.name}): {error}") from None
            qmin, qmax = activation_bounds(node.activation, out.scale, out.zero_point)
            layers.append(gnet.Add(name=name, inputs=(a, b), output=name, params=params, qmin=qmin, qmax=qmax,
                                   activation=node.activation, source=node.name))
        elif isinstance(node, ir.Mul):
            (a, ta), (b, tb) = (table[t] for t in node.inputs)
            params = mul_params(ta.scale, ta.zero_point, tb.scale, tb.zero_point, out.scale, out.zero_point)
            qmin, qmax = activation_bounds(node.activation, out.scale, out.zero_point)
            layers.append(gnet.Mul(name=name, inputs=(a, b), output=name, params=params, qmin=qmin, qmax=qmax,
                                   activation=node.activation, source=node.name))
        elif isinstance(node, ir.Pool):
            layers.append(gnet.AveragePool(name=name, input=table[node.input][0], output=name, kernel=node.kernel,
                                           stride=node.stride, padding=node.padding, source=node.name))
        elif isinstance(node, ir.MaxPool):
            layers.append(gnet.MaxPool(name=name, input=table[node.input][0], output=name, kernel=node.kernel,
                                       stride=node.stride, padding=node.padding, source=node.name))
        elif isinstance(node, ir.Activation):
            source, t_in = table[node.input]
            try:
                values = activation_table(node.function, t_in.scale, t_in.zero_point, out.scale, out.zero_point,
                                          alpha=node.alpha)
            except ValueError as error:
                raise QuantizationError(f"layer {name} ({node.name}): {error}") from None
            layers.append(gnet.Activation(name=name, input=source, output=name, function=node.function,
                                          alpha=node.alpha, table=values, source=node.name))
        elif isinstance(node, ir.Concat):
            for tensor in node.inputs:
                if table[tensor][1].scale != out.scale or table[tensor][1].zero_point != out.zero_point:
                    raise QuantizationError(f"layer {name} ({node.name}): input {table[tensor][0]} keeps its "
                                            f"producer's quantization, not the concatenation's (LiteRT's int8 "
                                            f"CONCATENATION does not requantize)")
            layers.append(gnet.Concat(name=name, inputs=tuple(table[t][0] for t in node.inputs), output=name,
                                      source=node.name))
        else:
            layers.append(gnet.Flatten(name=name, input=table[node.input][0], output=name, source=node.name))
    tensors = dict(table.values())
    network = gnet.Network(layers=tuple(layers), tensors=tensors, output=table[graph.output][0], config=config,
                           preprocessing=dict(preprocessing or {}, input_scale=tensors[gnet.INPUT].scale,
                                              input_zero_point=tensors[gnet.INPUT].zero_point))
    return network, stats


def _weighted_layer(graph, node, name, table, method, weight_bits, shift_bits, input_means, quantizer, refine):
    """``(layer, stats)`` of the Conv or FullyConnected ``node``: integer weights (chosen by output error with the
    :func:`tools.quantizer.output_error.refine_weights` options ``refine``, if given), int32 bias (bias-corrected with
    ``input_means`` if given), requantizer multiplier, clamp; refused if its bias or accumulators overflow int32."""
    source, t_in = table[node.input]
    t_out = table[node.output][1]
    fully_connected = isinstance(node, ir.FullyConnected)
    float_weights = _nhwc_columns(graph, node, node.weights) if fully_connected else node.weights
    label = f"layer {name} ({node.name})"
    try:
        if refine is None:
            wq = quantize_weights(float_weights, method=method, bits=weight_bits, shift_bits=shift_bits,
                                  quantizer=quantizer)
        else:
            # The statistics are in the IR's input order: refine there, then permute the columns as the weights.
            wq = refine_weights(node.weights, method=method, bits=weight_bits, shift_bits=shift_bits,
                                quantizer=quantizer, **refine)
            if fully_connected:
                wq = dataclasses.replace(wq, values=_nhwc_columns(graph, node, wq.values))
    except ValueError as error:
        raise QuantizationError(f"{label}: {error}") from None
    float_bias = node.bias.astype(np.float64)
    if input_means is not None:
        error = wq.dequantized() - float_weights
        if fully_connected:
            float_bias = float_bias - error @ _nhwc_columns(graph, node, input_means)
        else:
            per_group = error.shape[1]
            means = input_means.reshape(node.groups, per_group)[np.arange(error.shape[0]) // (error.shape[0]
                                                                                             // node.groups)]
            float_bias = float_bias - np.sum(error.sum(axis=(2, 3)) * means, axis=1)
    bias = round_half_away_from_zero(float_bias / (t_in.scale * wq.scales))
    worst = int(np.argmax(np.abs(bias)))
    if abs(bias[worst]) > INT32_MAX:
        raise QuantizationError(f"{label}: int32 bias overflow in channel {worst} (bias {float_bias[worst]:.6g}"
                                f" / scale {t_in.scale * wq.scales[worst]:.6g} = {bias[worst]:.6g}, shift k_c = "
                                f"{int(wq.shifts[worst])}, method {method})")
    bias = bias.astype(np.int64)
    if method == "channel":
        pairs = [quantize_multiplier(t_in.scale * s / t_out.scale) for s in wq.scales]
        multiplier = np.array([m for m, _ in pairs], dtype=np.int64)
        shift = np.array([e for _, e in pairs], dtype=np.int64)
    else:
        multiplier, shift = quantize_multiplier(t_in.scale * wq.layer_scale / t_out.scale)
    # A folded HardSigmoid clamps at 0 (ReLU) and at 1, the top of its fixed [0, 1] output range (int8 saturation).
    qmin, qmax = activation_bounds("relu" if node.activation == "hard_sigmoid" else node.activation, t_out.scale,
                                   t_out.zero_point)
    common = dict(name=name, input=source, output=name, bias=bias, multiplier=multiplier, shift=shift,
                  channel_shift=wq.shifts, weight_scale=wq.scales, qmin=qmin, qmax=qmax,
                  activation=node.activation, source=node.name, codebook=wq.codebook)
    if isinstance(node, ir.FullyConnected):
        layer = gnet.FullyConnected(weights=wq.values, **common)
        axis = 0
    elif node.depthwise:
        layer = gnet.DepthwiseConv2D(weights=wq.values[:, 0].transpose(1, 2, 0), stride=node.stride,
                                     padding=node.padding, **common)
        axis = -1
    else:
        layer = gnet.Conv2D(weights=wq.values.transpose(0, 2, 3, 1), stride=node.stride, padding=node.padding,
                            groups=node.groups, **common)
        axis = 0
    bound = accumulator_bound(layer.weights, t_in.zero_point, bias, channel_axis=axis)
    left = max(int(np.max(np.asarray(shift) - layer.channel_shift)), 0)
    if bound << left > INT32_MAX:
        raise QuantizationError(f"{label}: accumulators could overflow int32 (bound {bound}"
                                f"{f' << {left}' if left else ''} > {INT32_MAX})")
    ranges = np.abs(float_weights.reshape(float_weights.shape[0], -1)).max(axis=1)
    live = ranges[ranges > 0]
    stat = {"layer": name, "source": node.name, "kind": layer.kind, "channels": int(layer.channels),
            "weight_bits": weight_bits, "weight_quantizer": quantizer,
            "range_ratio": float(live.max() / live.min()) if live.size else float("nan"),
            "dead_channels": int(np.sum(ranges == 0)),
            "shifts": np.bincount(wq.shifts, minlength=(1 << shift_bits)).tolist(),
            "channel_shift": wq.shifts.tolist(),
            "weight_sqnr_db": sqnr_db(float_weights, wq.dequantized()),
            "clipped_weights": wq.clipped, "weights": int(wq.values.size),
            "accumulator_bound": bound, "bias_max": int(np.abs(bias).max(initial=0)),
            "channel_ranges": ranges.tolist(),
            "multiplier": None if method == "channel" else int(multiplier),
            "shift": None if method == "channel" else int(shift)}
    return layer, stat


def mixed_network(base, donor, layers):
    """``base`` with the layers named in ``layers`` taken from ``donor``: two :func:`build_network` results of the same
    graph and activation ranges (e.g. other weight bits), so every tensor's quantization is the same in both.

    Raises:
        ValueError: the networks' tensors differ, or a name is not a layer of both.
    """
    if base.tensors != donor.tensors:
        raise ValueError("the two networks quantize their tensors differently: not built from the same graph and "
                         "ranges")
    donated = {layer.name: layer for layer in donor.layers if layer.name in layers}
    own = {layer.name for layer in base.layers}
    missing = sorted(set(layers) - (own & set(donated)))
    if missing:
        raise ValueError(f"not a layer of both networks: {', '.join(missing)}")
    return dataclasses.replace(base, layers=tuple(donated.get(layer.name, layer) for layer in base.layers))
