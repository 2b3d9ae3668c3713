"""Random engine layers placed in memory images, with their expected outputs: the one stimulus generator.

``tests/hdl/test_engine.py``, the cocotb benches (``tb/engine_cases.py``) and ``tools/bench_engine.py`` take their
layers from here. A *spec* is ``(name, kind, input (H, W, C), output channels, kernel, stride, padding (top, bottom,
left, right), flavour)``; flavours: ``"plain"`` (outputs spread over int8), ``"saturate"`` (most outputs clamp),
``"relu6"`` (narrow clamp bounds), ``"edge-zp"`` (input zero point -128 / 127).

:func:`random_layers` draws each layer's data and parameters from one seed, places every layer's input, output, weights
and biases in its own regions of the memories (so one engine build runs all of them, one after another) and computes
each expected output with the golden ops (``golden.conv``, ``golden.pool``, ``golden.requant``) on the drawn arrays,
independently of the memory layouts. :func:`two_bit_layers` gives the same layers two-bit weights;
:func:`fitted_config` sizes the memories for a list of specs.
"""

import dataclasses

import numpy as np

from .conv import conv2d, depthwise_conv2d, fully_connected
from .descriptor import layer_descriptor, unbounded_config
from .images import MemoryImages, store_activation, store_bias, store_weights
from .layouts import CODE_BITS, activation_words, groups, weight_words
from .pool import GAP_WEIGHT, average_pool_params, global_average_pool
from .requant import quantize_multiplier, requantize

__all__ = ["Case", "random_layers", "two_bit_layers", "fitted_config"]


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """A layer placed in memory images: descriptor, expected int8 output and the int32 accumulators behind it."""
    name: str
    descriptor: object
    expected: np.ndarray
    acc: np.ndarray


def fitted_config(specs, config):
    """``config`` with the smallest power-of-two memories (16 words at least) that hold the layers of ``specs``."""
    words = _place(specs, config)[1]
    return dataclasses.replace(config, **{f"{name}_depth": 1 << max(4, (count - 1).bit_length())
                                          for name, count in words.items()})


def random_layers(specs, config, seed):
    """``(cases, images)``: random layers with fixed seeds, each in its own memory regions, and their golden outputs.

    Args:
        specs: ``(name, kind, input shape, output channels, kernel, stride, padding, flavour)`` tuples (module
            docstring).
        config: an :class:`golden.config.NPUConfig` whose memories hold them (see :func:`fitted_config`).
        seed: the random seed.
    Returns:
        The :class:`Case` s and the :class:`golden.images.MemoryImages` holding every layer's input, weights and
        biases. Expected outputs come from the golden ops on the original arrays, independently of the layouts.
    """
    images, layers = _draw(specs, config, seed)
    return [_case(layer, layer["weights"], layer["name"]) for layer in layers], images


def two_bit_layers(specs, codebooks, config, seed):
    """``(cases, images, codes)``: :func:`random_layers`' layers with two-bit weights.

    Inputs, biases, shifts, placement and descriptors are :func:`random_layers`' (``images.weights`` keeps its int8
    weights); each layer's weights are random codes (a second generator with the same seed) of its entry of
    ``codebooks`` (4 ascending int8 values), stored as codes (``codes``: ``(weight_depth, lanes, lanes)``, padding
    code 0), and the expected output comes from the golden ops on the decoded int8 weights.

    Raises:
        ValueError: a layer without weights (an average pool), or not one codebook per layer.
    """
    images, layers = _draw(specs, config, seed)
    codes = np.zeros_like(images.weights)
    rng = np.random.default_rng(seed)
    cases = []
    for layer, codebook in zip(layers, codebooks, strict=True):
        if layer["weights"] is None:
            raise ValueError(f"layer {layer['name']!r} has no weights to give two-bit codes")
        d = layer["descriptor"]
        layer_codes = rng.integers(0, 1 << CODE_BITS, size=layer["weights"].shape)
        store_weights(codes, d.kind, layer_codes, base=d.weight_base, config=config)
        cases.append(_case(layer, np.asarray(codebook)[layer_codes], f"{layer['name']} codebook {codebook}"))
    return cases, images, codes


def _draw(specs, config, seed):
    # Every layer's data and parameters, drawn in spec order from one generator and stored in the images.
    placements, _ = _place(specs, config)
    images = MemoryImages.empty(config)
    rng = np.random.default_rng(seed)
    layers = []
    for index, (spec, place) in enumerate(zip(specs, placements)):
        name, kind, shape, cout, kernel, stride, padding, flavour = spec
        x = rng.integers(-128, 128, size=shape)
        store_activation(images.activation, x, base=place["in"], config=config)
        zero_point = {"edge-zp": (-128, 127)[index % 2]}.get(flavour, int(rng.integers(-128, 128)))
        qmin, qmax = -128, 127
        weights = bias = channel_shift = None
        if kind == "average_pool":
            multiplier, shift = average_pool_params(shape[0] * shape[1])
            zero_point = out_zero_point = 0
            if flavour == "relu6":
                qmin, qmax = -20, 30
        else:
            size = (*kernel, cout) if kind == "depthwise" else (cout, *kernel, shape[2])
            weights = rng.integers(-127, 128, size=size)
            raw = _op(kind)(x[None], weights, None, stride=stride, padding=padding, input_zero_point=zero_point)[0]
            spread = int(np.percentile(np.abs(raw), 90)) + 1
            bias = rng.integers(-spread, spread + 1, size=cout)
            channel_shift = rng.integers(0, 4, size=cout)
            channel_shift[[0, min(1, cout - 1), min(2, cout - 1)]] = [0, 15, 15]   # k_c = 0 and 15 always present
            store_weights(images.weights, kind, weights, base=place["weights"], config=config)
            store_bias(images.bias, images.channel_shift, bias, channel_shift, base=place["bias"], config=config)
            multiplier, shift = quantize_multiplier({"saturate": 3000.0, "relu6": 200.0}.get(flavour, 120.0) / spread)
            out_zero_point = int(rng.integers(-100, 100))
            if flavour == "relu6":
                qmin, qmax = out_zero_point, min(127, out_zero_point + 60)
        descriptor = layer_descriptor(kind, shape, cout, config=config, kernel=kernel, stride=stride,
                                      padding=padding, in_base=place["in"], out_base=place["out"],
                                      weight_base=place["weights"], bias_base=place["bias"],
                                      input_zero_point=zero_point, multiplier=multiplier, shift=shift,
                                      output_zero_point=out_zero_point, qmin=qmin, qmax=qmax)
        layers.append(dict(name=name, x=x, weights=weights, bias=bias, channel_shift=channel_shift, stride=stride,
                           padding=padding, descriptor=descriptor))
    return images, layers


def _case(layer, weights, name):
    # The layer's expected output and accumulators from the golden ops, with `weights` as its int8 weights.
    d, x = layer["descriptor"], layer["x"]
    if d.kind == "average_pool":
        acc = GAP_WEIGHT * x.sum(axis=(0, 1), keepdims=True)
        expected = global_average_pool(x[None], qmin=d.qmin, qmax=d.qmax)[0]
    else:
        if d.kind == "fully_connected" and x.shape[:2] == (1, 1):
            acc = fully_connected(x.reshape(1, -1), weights.reshape(d.out_channels, -1), layer["bias"],
                                  input_zero_point=d.input_zero_point).reshape(1, 1, d.out_channels)
        else:
            acc = _op(d.kind)(x[None], weights, layer["bias"], stride=layer["stride"], padding=layer["padding"],
                              input_zero_point=d.input_zero_point)[0]
        expected = requantize(acc, d.multiplier, d.shift, layer["channel_shift"], d.output_zero_point, d.qmin, d.qmax)
    return Case(name=name, descriptor=d, expected=expected, acc=acc)


def _op(kind):
    # The golden op of a weighted layer (fully connected as the convolution its kernel covers).
    return depthwise_conv2d if kind == "depthwise" else conv2d


def _place(specs, config):
    # Regions for every layer: inputs and outputs one after another, then weights and biases; and the words needed.
    act = weights = bias = 0
    placements = []
    for _, kind, shape, cout, kernel, stride, padding, _ in specs:
        probe = layer_descriptor(kind, shape, cout, config=unbounded_config(config), kernel=kernel, stride=stride,
                                 padding=padding, in_base=0, out_base=activation_words(shape, config),
                                 input_zero_point=0)
        pool = kind == "average_pool"   # reads no weights and no biases
        placements.append({"in": act, "out": act + activation_words(shape, config), "weights": 0 if pool else weights,
                           "bias": 0 if pool else bias})
        act += activation_words(shape, config) + activation_words(probe.out_shape, config)
        weights += weight_words(probe, config)
        bias += 0 if kind == "average_pool" else groups(cout, config)
    return placements, {"act": act, "weight": weights, "bias": bias}
