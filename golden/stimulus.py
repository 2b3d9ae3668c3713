"""Random engine layers placed in memory images, with their expected outputs: the one stimulus generator.

``tests/hdl/test_engine.py``, the cocotb benches (``tb/engine_cases.py``, ``tb/regress_bench.py``) and
``tools/bench_engine.py`` take their layers from here. A *spec* is ``(name, kind, input (H, W, C), output channels,
kernel, stride, padding (top, bottom, left, right), flavour)``; the flavour says how the layer's numbers are drawn: a
:class:`Flavour`, or one of the benches' names ``"plain"`` (outputs spread over int8), ``"saturate"`` (most outputs
clamp), ``"relu6"`` (narrow clamp bounds), ``"edge-zp"`` (input zero point -128 / 127).

:func:`random_layers` draws each layer's data and parameters from one seed, places every layer's input, output, weights
and biases in its own regions of the memories (so one engine build runs all of them, one after another) and computes
each expected output with the golden ops (``golden.conv``, ``golden.pool``, ``golden.requant``, ``golden.add``) on the
drawn arrays, independently of the memory layouts; :func:`chained_program` makes them one program (a layer reads the
previous one's output where the shapes allow) and :func:`mutated_descriptor` corrupts a descriptor. A residual ``add``
spec (kernel 1x1, stride 1, no padding, output channels = input channels) draws two inputs with their own scales and
zero points and an output scale that the flavour's gain spreads or saturates. A layer whose flavour has a codebook has
two-bit weights: on an engine with the decoder (``weight_code_bits`` 2) they are stored as codes (descriptor
``weight_format`` 1, code words at code-word bases that start anywhere in a weight word), else as their int8 values.
A flavour with a ``table`` gets an activation table after its requantizer (random, identity or constant entries, in
the table memory; the expected output looked up in it).
:func:`two_bit_layers` mixes int8 and two-bit layers by a list of codebooks; :func:`fitted_config`
sizes the memories for a list of specs. :func:`constrained_random_layer` draws one layer over the whole legal
descriptor space (every kind — adds too —, kernels 1-7, strides, asymmetric padding, channel counts, zero points,
clamps, live channel shifts k_c 0..15, saturation and rounding ties) at random bases and row pitches: the engine
regression's stimulus (``tb/regress_bench.py``).
"""

import dataclasses

import numpy as np

from . import network
from .activation import activation_table, lookup
from .add import add, add_descriptor_fields, add_params, rescaled_sum
from .conv import conv2d, depthwise_conv2d, fully_connected
from .descriptor import MAX_PAD, check_descriptor, descriptor_fields, layer_descriptor, unbounded_config
from .images import MemoryImages, store_activation, store_bias, store_weight_codes, store_weights
from .layouts import (CODE_BITS, CODE_WORDS_PER_WORD, TABLE_ENTRIES, UNWEIGHTED, activation_words, groups, row_pitch,
                      weight_words)
from .pool import GAP_WEIGHT, MAX_POOL_PARAMS, average_pool_params, global_average_pool, max_pool2d
from .requant import quantize_multiplier, requantize

__all__ = ["Case", "Flavour", "CLAMPS", "TABLES", "random_layers", "two_bit_layers", "fitted_config",
           "constrained_random_layer", "named_specs", "small_network", "chained_program", "mutated_descriptor"]

#: Clamp bounds a flavour can ask for: the whole int8 range, ReLU ``[zp, 127]``, ReLU6 ``[zp, zp + six]``, and a
#: narrow window anywhere.
CLAMPS = ("full", "relu", "relu6", "narrow")


@dataclasses.dataclass(frozen=True)
class Flavour:
    """How a layer's numbers are drawn.

    Members
    -------
    input_zero_point : int or None
        The input zero point; ``None`` draws it over int8 (an average pool's is 0).
    tiny_inputs : bool
        Inputs within 3 of the input zero point: small accumulators (left shifts, tie layers whose outputs spread).
    gain : float
        What the outputs' spread aims at before the clamp (90th percentile of ``|output - zero point|``); large
        values make most outputs saturate.
    clamp : str
        One of :data:`CLAMPS`.
    k_low, k_span : int
        Channel shifts k_c are drawn in ``[k_low, k_low + k_span]``. Channel ``c``'s weights get magnitude
        ``127 >> (max k_c - k_c)``, so that after its shift every channel's outputs spread alike (live for every k_c).
    ties : int or None
        Exact rounding ties: with ``q`` the multiplier is ``2**30`` and the layer shift ``k_low - q``, so channel
        ``c`` rounds right by ``r = q + k_c - k_low``; its weights are multiples of ``2**(r + 1)`` and its bias
        ``2**r`` plus a multiple of ``2**(r + 1)``, so that every accumulator is a tie of the final rounding (of the
        first, the doubling high multiply, for ``r = 0``). Use with ``tiny_inputs``.
    codebook : tuple or None
        Four ascending int8 weights: a two-bit layer (weights drawn as codes; ``k_span`` should be 0).
    zero_multiplier : bool
        Multiplier 0: every output is the clamped zero point.
    scale_ratio : float or None
        A residual add's ``log2(scale2 / scale1)``; ``None`` draws it in ``[-6, 6]``. Beyond about 30 the smaller
        input's rescaling has shift -31, beyond 32 multiplier 0.
    table : str or None
        An activation table fused after the requantizer (descriptor ``table``): one of :data:`TABLES` (random
        entries, the identity, one constant), or ``None`` for none.
    """

    input_zero_point: object = None
    tiny_inputs: bool = False
    gain: float = 120.0
    clamp: str = "full"
    k_low: int = 0
    k_span: int = 3
    ties: object = None
    codebook: object = None
    zero_multiplier: bool = False
    scale_ratio: object = None
    table: object = None


#: The activation tables a flavour can ask for (:func:`_table`).
TABLES = ("random", "identity", "constant")

#: The benches' flavours by name (``"edge-zp"`` alternates its input zero point between -128 and 127 by layer index).
FLAVOURS = {"plain": Flavour(), "saturate": Flavour(gain=3000.0), "relu6": Flavour(gain=200.0, clamp="relu6"),
            "edge-zp": Flavour()}


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    """A layer placed in memory images: descriptor, expected int8 output and the int32 accumulators behind it.

    ``channel_shift`` holds the output channels' k_c (zeros for a pool), ``codebook`` the four int8 weights of a
    two-bit layer (``None``: int8 weights or a pool), ``table`` the layer's activation table (``None``: none).
    """
    name: str
    descriptor: object
    expected: np.ndarray
    acc: np.ndarray
    channel_shift: np.ndarray
    codebook: object = None
    table: object = None


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
    images, cases = _draw(specs, _place(specs, config)[0], config, seed)
    return cases, images


def two_bit_layers(specs, codebooks, config, seed):
    """``(cases, images)``: :func:`random_layers`' layers, those with a codebook two-bit.

    Layer ``i``'s weights are random codes of ``codebooks[i]`` (4 ascending int8 values; ``None``: an int8 layer),
    stored as codes on an engine with the decoder; the expected output comes from the decoded int8 weights.

    Raises:
        ValueError: a codebook for a layer without weights (an average pool, an add), or not one entry per layer.
    """
    specs = list(specs)
    if len(codebooks) != len(specs):
        raise ValueError(f"{len(codebooks)} codebooks for {len(specs)} layers")
    for (name, kind, *_), codebook in zip(specs, codebooks):
        if kind in UNWEIGHTED and codebook is not None:
            raise ValueError(f"layer {name!r} has no weights to give two-bit codes")
    mixed = []
    for index, ((name, *rest, flavour), codebook) in enumerate(zip(specs, codebooks)):
        if codebook is not None:
            name, flavour = f"{name} codebook {list(codebook)}", dataclasses.replace(_flavour(flavour, index),
                                                                                     codebook=tuple(codebook))
        mixed.append((name, *rest, flavour))
    images, cases = _draw(mixed, _place(mixed, config)[0], config, seed)
    return cases, images


def constrained_random_layer(seed, index, config):
    """Layer ``index`` of the constrained-random stream ``seed``: ``(case, images)``.

    The layer is drawn from its own generator (``seed``, ``index``), so any one of the stream is reproduced alone:
    kind (conv ``KxK`` with K 1-7 and some rectangular kernels, depthwise and max pool likewise, fully connected,
    global average pool, residual add: its input 2 now and then input 1 itself, input rescalings now and then of shift
    -31 or multiplier 0), strides 1/2, asymmetric padding 0-3, channel counts that are and are not multiples of the
    lanes, and a random :class:`Flavour` (input zero points with the extremes, every clamp, saturation, rounding ties,
    live k_c 0..15, multipliers over their range and layer shifts of both signs; a quarter with an activation table of
    :data:`TABLES` at a random table). Its input, output, weights and biases lie at random bases of ``config``'s
    memories (the output's banks turned by a random ``out_skew`` in 3 layers of 10), with random row pitches; ``images`` holds only this layer. With
    ``config.weight_code_bits == 2`` half the weighted layers are two-bit, codes of a random codebook at a random
    code word (pools and adds have no weights). Always legal per :func:`golden.descriptor.check_descriptor`.
    """
    rng = np.random.default_rng([seed, index])
    two_bit = config.weight_code_bits == CODE_BITS
    while True:
        spec = _random_spec(rng, config, two_bit)
        place = _random_place(rng, spec, config)
        if place is not None:
            break
    images, (case,) = _draw([spec], [place], config, rng)
    return case, images


def named_specs(rows, prefix):
    """Specs of ``(kind, input shape, output channels, kernel, stride, padding, flavour)`` rows, each named
    ``prefix[index] kind shape->channels kKxK sSS pPPPP flavour`` (a :class:`Flavour` object by its input zero
    point and scale ratio)."""
    def label(flavour):
        if isinstance(flavour, str):
            return flavour
        parts = [f"zp {flavour.input_zero_point}" if flavour.input_zero_point is not None else "",
                 f"scale ratio 2**{flavour.scale_ratio:g}" if flavour.scale_ratio is not None else "",
                 "tiny" if flavour.tiny_inputs else "", flavour.clamp,
                 f"table {flavour.table}" if flavour.table is not None else ""]
        return " ".join(part for part in parts if part)
    return [(f"{prefix}[{index}] {kind} {'x'.join(map(str, shape))}->{cout} k{kernel[0]}x{kernel[1]} "
             f"s{stride[0]}{stride[1]} p{''.join(map(str, padding))} {label(flavour)}",
             kind, shape, cout, kernel, stride, padding, flavour)
            for index, (kind, shape, cout, kernel, stride, padding, flavour) in enumerate(rows)]


def small_network(rng, config):
    """A small quantized :class:`golden.network.Network` with random parameters, input 9x9x3 (the images' and the
    controller's tests): conv 3x3 -> LeakyReLU (a table, fused into the conv on the engine) -> depthwise 3x3 stride 2
    -> 1x1 conv, residual add of the depthwise and the 1x1 conv (their own scales and zero points) -> 1x1 conv ->
    global pool -> flatten -> fully connected."""
    def weighted(cls, name, source, weights, channels, k_max=15, **extra):
        return cls(name=name, input=source, output=name, weights=weights, bias=rng.integers(-500, 500, size=channels),
                   multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=-int(rng.integers(6, 10)),
                   channel_shift=rng.integers(0, k_max + 1, size=channels), weight_scale=np.ones(channels), **extra)
    shapes = {network.INPUT: (9, 9, 3), "c0": (9, 9, 12), "h0": (9, 9, 12), "d1": (5, 5, 12), "e2": (5, 5, 12),
              "a3": (5, 5, 12), "c4": (5, 5, 20), "p5": (1, 1, 20), "f6": (20,), "fc7": (10,)}
    tensors = {name: network.Tensor(shape=shape, scale=float(rng.uniform(0.05, 0.2)),
                                 zero_point=int(rng.integers(-20, 20))) for name, shape in shapes.items()}
    tensors["p5"] = dataclasses.replace(tensors["c4"], shape=shapes["p5"], zero_point=0)
    tensors["c4"] = dataclasses.replace(tensors["c4"], zero_point=0)
    tensors["f6"] = dataclasses.replace(tensors["p5"], shape=shapes["f6"])
    t = {name: (tensors[name].scale, tensors[name].zero_point) for name in ("d1", "e2", "a3")}
    layers = (
        weighted(network.Conv2D, "c0", network.INPUT, rng.integers(-127, 128, size=(12, 3, 3, 3)), 12,
                 stride=(1, 1), padding=(1, 1, 1, 1)),
        network.Activation(name="h0", input="c0", output="h0", function="leaky_relu", alpha=0.1,
                           table=activation_table("leaky_relu", tensors["c0"].scale, tensors["c0"].zero_point,
                                                  tensors["h0"].scale, tensors["h0"].zero_point, alpha=0.1)),
        weighted(network.DepthwiseConv2D, "d1", "h0", rng.integers(-127, 128, size=(3, 3, 12)), 12,
                 stride=(2, 2), padding=(1, 1, 1, 1), k_max=1),      # the add's inputs spread over int8
        weighted(network.Conv2D, "e2", "d1", rng.integers(-127, 128, size=(12, 1, 1, 12)), 12, k_max=1),
        network.Add(name="a3", inputs=("d1", "e2"), output="a3", params=add_params(*t["d1"], *t["e2"], *t["a3"])),
        weighted(network.Conv2D, "c4", "a3", rng.integers(-127, 128, size=(20, 1, 1, 12)), 20),
        network.AveragePool(name="p5", input="c4", output="p5"),
        network.Flatten(name="f6", input="p5", output="f6"),
        weighted(network.FullyConnected, "fc7", "f6", rng.integers(-127, 128, size=(10, 20)), 10),
    )
    return network.Network(layers=layers, tensors=tensors, output="fc7", config=config)


def chained_program(cases, config):
    """The descriptors of ``cases`` as one program for ``hdl/controller.py``: a layer whose input shape is the previous
    layer's output shape reads that output (its region and row pitch) instead of its own input; the others keep theirs.

    The outputs of chained layers differ from ``case.expected``: ``golden.controller.run_program`` gives them.
    """
    descriptors = []
    for case in cases:
        d = case.descriptor
        if descriptors and d.in_shape == descriptors[-1].out_shape:
            d = dataclasses.replace(d, in_base=descriptors[-1].out_base, in_row_pitch=descriptors[-1].out_row_pitch)
            check_descriptor(d, config)
        descriptors.append(d)
    return descriptors


def mutated_descriptor(rng, descriptor, config):
    """``descriptor`` with one random field set to a value its bits hold (``kind`` to a code 0..7): a corrupt
    program's word, for ``golden.encode_descriptor(..., check=False)``. Values are drawn over the field, among 0..3,
    or next to the field's value, so that every check of ``golden.controller.CHECKS`` is hit."""
    name, width, signed = descriptor_fields(config)[int(rng.integers(len(descriptor_fields(config))))]
    low = -(1 << (width - 1)) if signed else 0
    choice = int(rng.integers(3))
    if name == "kind" or choice == 0:
        value = int(rng.integers(low, low + (1 << width)))
    elif choice == 1:
        value = int(rng.integers(0, 4))
    else:
        value = int(np.clip(getattr(descriptor, name) + rng.choice([-1, 1]), low, low + (1 << width) - 1))
    return dataclasses.replace(descriptor, **{name: value})


def _flavour(flavour, index):
    # A spec's flavour as a Flavour (names of FLAVOURS; "edge-zp" picks its zero point by layer index).
    if isinstance(flavour, Flavour):
        return flavour
    if flavour == "edge-zp":
        return Flavour(input_zero_point=(-128, 127)[index % 2])
    return FLAVOURS[flavour]


def _draw(specs, placements, config, seed):
    # Every layer's data and parameters, drawn in spec order from one generator and stored in the images (a two-bit
    # layer's codes too, padding code 0).
    images = MemoryImages.empty(config)
    rng = np.random.default_rng(seed)
    cases = []
    for index, (spec, place) in enumerate(zip(specs, placements)):
        name, kind, shape, cout, kernel, stride, padding, flavour = spec
        f = _flavour(flavour, index)
        zero_point = 0 if kind == "average_pool" else \
            int(rng.integers(-128, 128)) if f.input_zero_point is None else f.input_zero_point
        x = _inputs(rng, f, zero_point, shape)
        in_pitch = store_activation(images.activation, x, base=place["in"], config=config, pitch=place.get("in_pitch"))
        weights = bias = x2 = params = None
        channel_shift = np.zeros(cout, dtype=np.int64)
        fields = {}
        if kind == "add":
            x2, params = _add_operands(rng, f, x, zero_point, place)
            fields = dict(add_descriptor_fields(params), in2_base=place["in2"],
                          in2_row_pitch=store_activation(images.activation, x2, base=place["in2"], config=config,
                                                         pitch=place.get("in2_pitch")))
            multiplier, shift, out_zero_point = params.output_multiplier, params.output_shift, params.output_zero_point
        elif kind == "average_pool":
            multiplier, shift = average_pool_params(shape[0] * shape[1])
            out_zero_point = 0
        elif kind == "max_pool":
            # zero points 0 whatever the inputs' spread (input and output share their quantization)
            fields = dict(MAX_POOL_PARAMS)
            multiplier, shift, out_zero_point = fields["multiplier"], fields["shift"], fields["output_zero_point"]
        else:
            channel_shift = f.k_low + rng.integers(0, f.k_span + 1, size=cout)
            weights, layer_codes = _weights(rng, f, kind, shape, cout, kernel, channel_shift)
            raw = _op(kind)(x[None], weights, None, stride=stride, padding=padding, input_zero_point=zero_point)[0]
            bias, multiplier, shift = _requant_params(rng, f, raw, channel_shift)
            if _coded(f, config):
                store_weight_codes(images.weights, kind, layer_codes, base=place["weights"], config=config)
                fields = dict(weight_format=1, **{f"codebook{i}": int(v) for i, v in enumerate(f.codebook)})
            else:
                store_weights(images.weights, kind, weights, base=place["weights"], config=config)
            store_bias(images.bias, images.channel_shift, bias, channel_shift, base=place["bias"], config=config)
            out_zero_point = int(rng.integers(-80, 81))
        qmin, qmax = _clamp(rng, f.clamp, out_zero_point)
        table = None
        if f.table is not None:
            table = _table(rng, f.table)
            images.tables[place["table"]] = table
            fields.update(table=1, table_base=place["table"])
        fields = dict(dict(input_zero_point=zero_point, multiplier=multiplier, shift=shift,
                           output_zero_point=out_zero_point), **fields)
        descriptor = layer_descriptor(kind, shape, cout, config=config, kernel=kernel, stride=stride,
                                      padding=padding, in_base=place["in"], out_base=place["out"],
                                      weight_base=place["weights"], bias_base=place["bias"], qmin=qmin, qmax=qmax,
                                      **fields)
        descriptor = dataclasses.replace(descriptor, in_row_pitch=in_pitch,
                                         out_row_pitch=place.get("out_pitch") or descriptor.out_row_pitch,
                                         out_skew=place.get("out_skew", 0))
        check_descriptor(descriptor, config)
        layer = dict(x=x, x2=x2, params=params, weights=weights, bias=bias, channel_shift=channel_shift,
                     stride=stride, padding=padding, descriptor=descriptor, table=table)
        cases.append(_case(layer, name, f.codebook))
    return images, cases


def _coded(flavour, config):
    # The layer's weights are stored as two-bit codes: it has a codebook and the engine the decoder.
    return flavour.codebook is not None and config.weight_code_bits == CODE_BITS


def _inputs(rng, f, zero_point, shape):
    # An input tensor: int8 over its range, or (tiny inputs) within 3 of its zero point.
    if f.tiny_inputs:
        return np.clip(zero_point + rng.integers(-3, 4, size=shape), -128, 127)
    return rng.integers(-128, 128, size=shape)


def _add_operands(rng, f, x, zero_point, place):
    # An add's second input and its golden.add.AddParams. Input 2 has its own zero point (the other extreme beside an
    # extreme input 1's) and its scale the flavour's ratio to input 1's; the output scale spreads the real sums' 90th
    # percentile over the flavour's gain. An input 2 placed on input 1 (same base) is input 1 (x + x).
    if place["in2"] == place["in"] and place.get("in2_pitch") == place.get("in_pitch"):
        zero_point2, x2 = zero_point, x
    else:
        zero_point2 = {-128: 127, 127: -128}.get(f.input_zero_point, int(rng.integers(-128, 128)))
        x2 = _inputs(rng, f, zero_point2, x.shape)
    scale1 = 2.0 ** rng.uniform(-10, -1)
    scale2 = scale1 * 2.0 ** (rng.uniform(-6, 6) if f.scale_ratio is None else f.scale_ratio)
    real = scale1 * (x - zero_point) + scale2 * (x2 - zero_point2)
    typical = max(float(np.percentile(np.abs(real), 90)), min(scale1, scale2))
    scale_out = typical / (f.gain * 2.0 ** rng.uniform(-0.5, 0.5))
    return x2, add_params(scale1, zero_point, scale2, zero_point2, scale_out, int(rng.integers(-80, 81)))


def _weights(rng, f, kind, shape, cout, kernel, channel_shift):
    # A weighted layer's int8 weights (OHWI, or (KH, KW, C) for depthwise) and, for a two-bit layer, their codes.
    size = (*kernel, cout) if kind == "depthwise" else (cout, *kernel, shape[2])
    per_channel = (lambda v: v) if kind == "depthwise" else (lambda v: v.reshape(-1, 1, 1, 1))
    if f.codebook is not None:
        layer_codes = rng.integers(0, 1 << CODE_BITS, size=size)
        return np.asarray(f.codebook, dtype=np.int64)[layer_codes], layer_codes
    if f.ties is not None:
        step = per_channel(np.int64(2) << (f.ties + channel_shift - f.k_low))
        return step * rng.integers(-1, 2, size=size), None
    magnitude = per_channel(np.maximum(127 >> (channel_shift.max() - channel_shift), 1))
    return rng.integers(-magnitude, magnitude + 1, size=size), None


def _requant_params(rng, f, raw, channel_shift):
    # Biases, multiplier and layer shift of a weighted layer whose accumulators before the bias are `raw`.
    cout = raw.shape[-1]
    spread = np.percentile(np.abs(raw).reshape(-1, cout), 90, axis=0).astype(np.int64) + 1
    if f.ties is not None:
        # Every accumulator a tie of channel c's rounding right shift r (bias 2**r mod 2**(r+1), weights multiples
        # of 2**(r+1)); a quarter of the channels get plain biases.
        r = f.ties + channel_shift - f.k_low
        bias = (np.int64(1) << r) + (np.int64(2) << r) * rng.integers(-10, 11, size=cout)
        plain = rng.random(cout) < 0.25
        bias[plain] = rng.integers(-spread, spread + 1)[plain]
        return bias, 1 << 30, f.k_low - f.ties
    bias = rng.integers(-spread, spread + 1)
    if f.zero_multiplier:
        return bias, 0, 0
    # Channel c's outputs are about raw_c * real * 2**-k_c: aim the typical channel's spread at the gain; the jitter
    # spreads the multiplier's mantissa over [2**30, 2**31).
    typical = max(float(np.median(spread / np.exp2(channel_shift))), 2.0 ** -20)
    real = min(f.gain * 2.0 ** rng.uniform(-0.5, 0.5) / typical, 2.0 ** 30)
    multiplier, shift = quantize_multiplier(real)
    # No accumulator may wrap in the left shift (acc * 2**(shift - k_c) must stay below 2**31).
    largest = np.abs(raw + bias).reshape(-1, cout).max(axis=0)
    limit = min(int(k) + 31 - int(a).bit_length() for k, a in zip(channel_shift, largest))
    return bias, multiplier, min(shift, limit)


def _clamp(rng, clamp, zero_point):
    # (qmin, qmax) of one of CLAMPS around the output zero point.
    if clamp == "full":
        return -128, 127
    if clamp == "relu":
        return zero_point, 127
    if clamp == "relu6":
        return zero_point, min(127, zero_point + int(rng.integers(8, 100)))
    low = int(rng.integers(-128, 128))
    return low, min(127, low + int(rng.integers(0, 24)))


def _case(layer, name, codebook):
    # The layer's expected output and accumulators from the golden ops on its drawn int8 weights.
    d, x, weights = layer["descriptor"], layer["x"], layer["weights"]
    if d.kind == "add":
        acc = rescaled_sum(x, layer["x2"], layer["params"])
        expected = add(x, layer["x2"], layer["params"], d.qmin, d.qmax)
    elif d.kind == "average_pool":
        acc = GAP_WEIGHT * x.sum(axis=(0, 1), keepdims=True)
        expected = global_average_pool(x[None], qmin=d.qmin, qmax=d.qmax)[0]
    elif d.kind == "max_pool":
        window = dict(stride=layer["stride"], padding=layer["padding"])
        kernel = (d.kernel_height, d.kernel_width)
        acc = max_pool2d(x[None], kernel, **window)[0]
        expected = max_pool2d(x[None], kernel, **window, qmin=d.qmin, qmax=d.qmax)[0]
    else:
        if d.kind == "fully_connected" and x.shape[:2] == (1, 1):
            acc = fully_connected(x.reshape(1, -1), weights.reshape(d.out_channels, -1), layer["bias"],
                                  input_zero_point=d.input_zero_point).reshape(1, 1, d.out_channels)
        else:
            acc = _op(d.kind)(x[None], weights, layer["bias"], stride=layer["stride"], padding=layer["padding"],
                              input_zero_point=d.input_zero_point)[0]
        expected = requantize(acc, d.multiplier, d.shift, layer["channel_shift"], d.output_zero_point, d.qmin, d.qmax)
    if layer["table"] is not None:
        expected = lookup(expected, layer["table"])
    return Case(name=name, descriptor=d, expected=expected, acc=acc, channel_shift=layer["channel_shift"],
                codebook=codebook, table=layer["table"])


def _table(rng, kind):
    # An activation table of TABLES: random int8 entries, the identity (entry i is i - 128) or one random constant.
    if kind == "random":
        return rng.integers(-128, 128, size=TABLE_ENTRIES)
    if kind == "identity":
        return np.arange(-128, 128)
    return np.full(TABLE_ENTRIES, int(rng.integers(-128, 128)))


def _op(kind):
    # The golden op of a weighted layer (fully connected as the convolution its kernel covers).
    return depthwise_conv2d if kind == "depthwise" else conv2d


def _probe(spec, config):
    # The descriptor of a spec's geometry at base 0 (minimal pitches), for sizes.
    _, kind, shape, cout, kernel, stride, padding, _ = spec
    params = MAX_POOL_PARAMS if kind == "max_pool" else {"input_zero_point": 0}
    return layer_descriptor(kind, shape, cout, config=unbounded_config(config), kernel=kernel, stride=stride,
                            padding=padding, in_base=0, out_base=activation_words(shape, config), **params)


def _place(specs, config):
    # Regions for every layer: inputs (an add's two) and outputs one after another, then weights and biases; and the
    # words needed. A two-bit layer's code words start at quarter (index mod 4) of a fresh weight word, so that the
    # benches read code words from every quarter.
    act = weights = bias = tables = 0
    placements = []
    for index, spec in enumerate(specs):
        probe = _probe(spec, config)
        unweighted = probe.kind in UNWEIGHTED   # reads no weights and no biases
        base = weights
        if _coded(_flavour(spec[-1], index), config):
            base = weights * CODE_WORDS_PER_WORD + index % CODE_WORDS_PER_WORD
            weights = -(-(base + weight_words(probe, config)) // CODE_WORDS_PER_WORD)
        else:
            weights += weight_words(probe, config)
        in_words = activation_words(probe.in_shape, config)
        inputs = 2 if probe.kind == "add" else 1
        placements.append({"in": act, "in2": act + in_words, "out": act + inputs * in_words,
                           "weights": 0 if unweighted else base, "bias": 0 if unweighted else bias, "table": tables})
        act += inputs * in_words + activation_words(probe.out_shape, config)
        bias += 0 if unweighted else groups(probe.out_channels, config)
        tables += _flavour(spec[-1], index).table is not None
    return placements, {"act": act, "weight": weights, "bias": bias, "table": tables}


def _random_place(rng, spec, config):
    # One layer's regions at random bases, row pitches of the minimum or up to 3 words more; None if it does not fit.
    # An add's input 2 is input 1 itself now and then, else anywhere off the output and input 1 (two live tensors
    # never share words).
    probe = _probe(spec, config)
    pitches, words = [], []
    for height, width, channels in (probe.in_shape, probe.out_shape, probe.in_shape):
        pitch = row_pitch(width, channels, config) + (int(rng.integers(1, 4)) if rng.random() < 0.5 else 0)
        pitches.append(pitch)
        words.append(height * pitch)
    (in_words, out_words, in2_words), depth = words, config.act_depth
    weight_count = weight_words(probe, config)
    weight_capacity = config.weight_depth * (CODE_WORDS_PER_WORD if _coded(spec[-1], config) else 1)
    bias_count = 0 if probe.kind in UNWEIGHTED else groups(probe.out_channels, config)
    if in_words + out_words > depth or weight_count > weight_capacity or bias_count > config.bias_depth:
        return None
    in_base = int(rng.integers(0, depth - in_words - out_words + 1))
    # The output before or after the input: uniform over the bases where it fits.
    before = max(0, in_base - out_words + 1)
    out_base = int(rng.integers(0, before + depth - out_words - in_base - in_words + 1))
    out_base = out_base if out_base < before else out_base - before + in_base + in_words
    place = {"in": in_base, "out": out_base, "in_pitch": pitches[0], "out_pitch": pitches[1],
             "weights": int(rng.integers(0, weight_capacity - max(weight_count, 1) + 1)),
             "bias": int(rng.integers(0, config.bias_depth - max(bias_count, 1) + 1)),
             "table": int(rng.integers(0, config.table_depth)),
             "out_skew": int(rng.integers(0, config.lanes)) if rng.random() < 0.3 else 0}
    if probe.kind in ("add", "max_pool"):
        place.update(weights=0, bias=0)                  # their descriptors hold none
    if probe.kind == "add":
        if rng.random() < 0.15:
            place.update(in2=in_base, in2_pitch=pitches[0])
        else:
            free = [base for base in range(depth - in2_words + 1)
                    if all(base + in2_words <= start or base >= start + words
                           for start, words in ((out_base, out_words), (in_base, in_words)))]
            if not free:
                return None
            place.update(in2=int(rng.choice(free)), in2_pitch=pitches[2])
    return place


def _random_spec(rng, config, two_bit):
    # A spec over the legal descriptor space (see constrained_random_layer), sized for a regression's memories.
    lanes = config.lanes
    kind = str(rng.choice(["conv", "depthwise", "fully_connected", "average_pool", "add", "max_pool"],
                          p=[0.38, 0.28, 0.09, 0.09, 0.08, 0.08]))

    def channels(most):
        # A multiple of the lanes, or any count.
        return lanes * int(rng.integers(1, most // lanes + 1)) if rng.random() < 0.4 else int(rng.integers(1, most + 1))

    stride = (1, 1)
    padding = (0, 0, 0, 0)
    if kind in ("conv", "depthwise", "max_pool"):
        size = int(rng.integers(1, 8))
        kernel = (size, size) if rng.random() < 0.8 else tuple(int(k) for k in rng.integers(1, 8, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 3, size=2)) if rng.random() < 0.3 else (int(rng.integers(1, 3)),) * 2
        # Per axis the output size and the padding, then the input size they follow from (so that the padding after
        # the input is exactly the drawn one, as check_descriptor requires).
        shape, padding = [], []
        for k, s in zip(kernel, stride):
            out = int(rng.integers(1, 20 // s + 2))
            before, after = (int(v) for v in rng.integers(0, min(MAX_PAD, k - 1) + 1, size=2))
            after = min(after, (out - 1) * s + k - before - 1)
            shape.append((out - 1) * s + k - before - after)
            padding += [before, after]
        padding = tuple(padding)
        # A conv's input channels shrink with its kernel (cycles per output pixel and group: KH * KW * groups in).
        cin = channels(min(40, lanes * max(1, 72 // (kernel[0] * kernel[1]))) if kind == "conv" else 72)
        cout = channels(40) if kind == "conv" else cin
        shape = (*shape, cin)
    elif kind == "fully_connected":
        shape = (1, 1, channels(128)) if rng.random() < 0.6 else (*(int(v) for v in rng.integers(1, 5, size=2)), channels(24))
        kernel, cout = shape[:2], channels(48)
    elif kind == "average_pool":
        shape = (*(int(v) for v in rng.integers(1, 10, size=2)), channels(64))
        kernel, cout = shape[:2], shape[2]
    else:
        shape = (int(rng.integers(1, 13)), int(rng.integers(1, 21)), channels(72))
        kernel, cout = (1, 1), shape[2]
    style = str(rng.choice(["plain", "saturate", "ties", "tiny"], p=[0.45, 0.15, 0.25, 0.15]))
    zero_point = (-128, 127, None, None, None)[int(rng.integers(0, 5))]
    unweighted = kind in UNWEIGHTED
    coded = two_bit and not unweighted and rng.random() < 0.5   # half the weighted layers two-bit
    span = 0 if coded or unweighted else int(rng.integers(0, 4 if style == "ties" else 7))
    ties = int(rng.integers(0, 6 - span)) if style == "ties" and kind != "add" else None   # weights up to 2**6
    flavour = Flavour(input_zero_point=zero_point, tiny_inputs=style in ("ties", "tiny"),
                      gain=float(2.0 ** rng.uniform(10, 13) if style == "saturate" else 2.0 ** rng.uniform(3, 6)),
                      clamp=str(rng.choice(CLAMPS)), k_low=int(rng.integers(0, 16 - span)), k_span=span, ties=ties,
                      codebook=_random_codebook(rng, ties) if coded else None,
                      zero_multiplier=bool(rng.random() < 0.01),
                      # an add's input rescalings: now and then of shift -31 or multiplier 0 (2**-30.5, 2**-34)
                      scale_ratio=float(rng.choice([-34, -30.5, 30.5, 34])) if rng.random() < 0.3 else None,
                      table=str(rng.choice(TABLES)) if rng.random() < 0.25 else None)
    name = (f"{kind} {'x'.join(map(str, shape))}->{cout} k{kernel[0]}x{kernel[1]} s{stride[0]}{stride[1]} "
            f"p{''.join(map(str, padding))} {style}")
    return name, kind, shape, cout, kernel, stride, padding, flavour


def _random_codebook(rng, ties):
    # Four ascending int8 weights; for a tie layer multiples of 2**(ties + 1).
    unit = 1 if ties is None else 2 << ties
    levels = np.arange(-128 // unit, 127 // unit + 1) * unit
    return tuple(int(v) for v in np.sort(rng.choice(levels, size=4, replace=False)))
