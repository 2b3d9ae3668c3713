"""The golden model against LiteRT's reference int8 kernels (the industry's int8), through tools/quantizer/litert.py.

Every layer is written as a .tflite model, run by LiteRT with ``OpResolverType.BUILTIN_REF`` and compared element by
element with the golden model on the same int8 inputs; the expected count of mismatching elements is 0. The golden side
is computed from the layer's parameters alone (golden conv + ``requantize`` with ``quantize_multiplier(s_in*s_w/s_out)``
and the per-channel ``k_c``), never from the exported file. Counts appear in the "oracle comparisons" summary.
"""

import dataclasses
import itertools

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter",
                    reason="ai-edge-litert (LiteRT) is not importable; install it with pip install -e '.[dev]'")

from golden import network as gnet
from golden.config import NPUConfig
from golden.add import add, add_params
from golden.conv import conv2d, depthwise_conv2d, fully_connected, same_padding
from golden.activation import FIXED_OUTPUT, FUNCTIONS, activation_table, lookup
from golden.concat import concatenate
from golden.mul import mul, mul_params
from golden.pool import average_pool2d, max_pool2d
from golden.requant import (INT32_MIN, activation_bounds, multiply_by_quantized_multiplier, quantize_multiplier,
                            requantize, round_half_away_from_zero)
from tools.quantizer.litert import (ModelBuilder, check_quantization, export_layer, export_network, fused_activation,
                                   litert_activation_bounds, run_reference)

ACTIVATIONS = (None, "relu", "relu6")
#: (op, kernel, stride, padding, activation): every combination is drawn 4 times -> 288 random conv layers.
CONV_CASES = [(op, kernel, stride, padding, activation)
              for op, kernels in (("conv", (1, 3)), ("depthwise", (3,)), ("grouped", (3,)))
              for kernel, stride, padding, activation in itertools.product(kernels, (1, 2), ("VALID", "SAME", "explicit"),
                                                                             ACTIVATIONS)]
DRAWS_PER_CASE = 4


# --- random WESS layers ----------------------------------------------------------------------------------------------

def _zero_point(rng):
    return int(rng.choice([-128, 127, 0, *rng.integers(-128, 128, size=5)]))


def _int8_input(rng, shape):
    x = rng.integers(-128, 128, size=shape)
    x.flat[:2] = -128, 127                              # the extremes in every input
    return x


def _padding(rng, size, kernel, stride, mode):
    if mode == "VALID":
        return (0, 0, 0, 0)
    same = same_padding(size[0], kernel, stride) + same_padding(size[1], kernel, stride)
    if mode == "SAME":
        return same
    while True:                                         # explicit: neither VALID nor SAME -> the exporter emits PAD
        padding = tuple(int(p) for p in rng.integers(0, 3, size=4))
        if padding not in (same, (0, 0, 0, 0)):
            return padding


def _output_scale(rng, acc, s_in, s_w, k):
    """An output scale that puts one random channel's spread at 8..128 LSB, keeping acc * 2**left_shift in int32."""
    channel = rng.integers(acc.shape[-1])
    spread = max(float(np.abs(acc[..., channel] - np.median(acc[..., channel])).max()), 1.0)
    s_out = np.float32(float(s_in) * float(s_w) * 2.0 ** -int(k[channel]) * spread / 2.0 ** rng.uniform(3, 7))
    while True:
        _, shift = quantize_multiplier(float(s_in) * float(s_w) / float(s_out))
        if int(np.abs(acc).max()) << max(shift, 0) < 1 << 31:
            return s_out
        s_out = np.float32(s_out * 2)


def _channel_shifts(rng, channels):
    """WESS shifts spanning at most 3 (so every channel's outputs stay live), reaching k_c = 0 or 15 in 2 of 3 layers."""
    span = int(rng.integers(0, 4))
    low = int(rng.choice([0, 15 - span, rng.integers(0, 16 - span)]))
    k = low + rng.integers(0, span + 1, size=channels)
    k[rng.choice(channels, size=2, replace=False)] = (low, low + span)
    return k


def random_conv_layer(rng, op, kernel, stride, padding_mode, activation):
    """One random WESS conv/depthwise/grouped conv layer: parameters, input, and the golden accumulators."""
    n = int(rng.integers(1, 3))
    groups = int(rng.integers(2, 5)) if op == "grouped" else 1
    cin = int(rng.integers(1, 9)) * groups if op == "grouped" else int(rng.integers(2, 17))
    cout = cin if op == "depthwise" else int(rng.integers(1, 5)) * groups if op == "grouped" else \
        int(rng.integers(2, 17))
    size = tuple(int(s) for s in rng.integers(kernel, 12, size=2))
    padding = _padding(rng, size, kernel, stride, padding_mode)
    shape = (kernel, kernel, cin) if op == "depthwise" else (cout, kernel, kernel, cin // groups)
    weights = np.round(rng.uniform(-1, 1, size=shape) * rng.uniform(0.2, 1.0)
                       * 127).astype(np.int64)  # float -> test data only
    weights.flat[0] = rng.choice([-127, 127])
    taps = kernel * kernel * (1 if op == "depthwise" else cin // groups)
    bias = rng.integers(-128 * 127 * taps // 4, 128 * 127 * taps // 4 + 1, size=cout)
    x = _int8_input(rng, (n, *size, cin))
    zp_in = _zero_point(rng)
    kwargs = dict(stride=(stride, stride), padding=padding, input_zero_point=zp_in)
    if op == "depthwise":
        acc = depthwise_conv2d(x, weights, bias, **kwargs)
    else:                                               # a grouped conv is `groups` convs on slices of the channels
        per_in, per_out = cin // groups, cout // groups
        acc = np.concatenate([conv2d(x[..., g * per_in:(g + 1) * per_in], weights[g * per_out:(g + 1) * per_out],
                                     bias[g * per_out:(g + 1) * per_out], **kwargs) for g in range(groups)], axis=3)
    s_in = np.float32(2.0 ** rng.uniform(-9, -1))
    s_w = np.float32(2.0 ** rng.uniform(-12, -5))
    k = _channel_shifts(rng, cout)
    return dict(op=op, x=x, weights=weights, bias=bias, stride=(stride, stride), padding=padding, s_in=s_in, s_w=s_w,
                k=k, s_out=_output_scale(rng, acc, s_in, s_w, k), zp_in=zp_in, zp_out=_zero_point(rng),
                activation=activation, acc=acc)


def golden_output(layer):
    """The golden model's output: the accumulators requantized with the layer's (M, e), k_c and clamp."""
    multiplier, shift = quantize_multiplier(float(layer["s_in"]) * float(layer["s_w"]) / float(layer["s_out"]))
    qmin, qmax = activation_bounds(layer["activation"], float(layer["s_out"]), layer["zp_out"])
    return requantize(layer["acc"], multiplier, shift, layer["k"], layer["zp_out"], qmin, qmax), (qmin, qmax)


def litert_output(layer, qmin, qmax):
    """The same layer exported as a .tflite model and run by LiteRT's reference kernels; every tensor's quantization
    parameters are checked against the layer first."""
    builder = ModelBuilder()
    x = builder.input(gnet.INPUT, layer["x"].shape, scale=layer["s_in"], zero_point=layer["zp_in"])
    method = {"conv": builder.conv2d, "grouped": builder.conv2d, "depthwise": builder.depthwise_conv2d,
              "fc": builder.fully_connected}
    kwargs = {} if layer["op"] == "fc" else dict(stride=layer["stride"], padding=layer["padding"])
    y = method[layer["op"]](x, layer["weights"], layer["bias"], weight_scale=layer["s_w"], channel_shift=layer["k"],
                            output_scale=layer["s_out"], output_zero_point=layer["zp_out"], qmin=qmin, qmax=qmax,
                            name="y", **kwargs)
    model = builder.build([y])
    assert check_quantization(model, as_network(layer, qmin, qmax)) == []
    return run_reference(model, [layer["x"]])[0]


def as_network(layer, qmin, qmax):
    """The random ``layer`` as a one-layer :class:`golden.network.Network` (input ``"input"``, output ``"y"``)."""
    k = np.asarray(layer["k"])
    multiplier, shift = quantize_multiplier(float(layer["s_in"]) * float(layer["s_w"]) / float(layer["s_out"]))
    fields = dict(name="y", input=gnet.INPUT, output="y", weights=layer["weights"], bias=np.asarray(
        np.zeros(len(k), np.int64) if layer["bias"] is None else layer["bias"]), multiplier=multiplier, shift=shift,
        channel_shift=k, weight_scale=float(layer["s_w"]) * np.exp2(-k), qmin=qmin, qmax=qmax)
    if layer["op"] == "fc":
        kind = gnet.FullyConnected
    else:
        fields.update(stride=layer["stride"], padding=layer["padding"])
        kind = gnet.DepthwiseConv2D if layer["op"] == "depthwise" else gnet.Conv2D
        if layer["op"] == "grouped":
            fields["groups"] = layer["x"].shape[-1] // layer["weights"].shape[-1]
    tensors = {gnet.INPUT: gnet.Tensor(shape=layer["x"].shape[1:], scale=float(layer["s_in"]),
                                       zero_point=layer["zp_in"]),
               "y": gnet.Tensor(shape=layer["acc"].shape[1:], scale=float(layer["s_out"]), zero_point=layer["zp_out"])}
    return gnet.Network(layers=(kind(**fields),), tensors=tensors, output="y", config=NPUConfig())


class Tally:
    """The counts of one oracle comparison: layers, elements, mismatching elements, and the failing layers' labels."""

    def __init__(self):
        self.layers = self.elements = self.mismatches = 0
        self.failing = []

    def check(self, label, actual, expected):
        assert actual.shape == expected.shape, f"{label}: shape {actual.shape} != {expected.shape}"
        wrong = int(np.count_nonzero(actual != expected))
        self.layers, self.elements, self.mismatches = self.layers + 1, self.elements + expected.size, \
            self.mismatches + wrong
        if wrong:
            self.failing.append(label)

    def record(self, oracle_counts, title):
        """Add the counts to the run's summary; returns the failure message."""
        oracle_counts(f"LiteRT REF vs golden, {title}", layers=self.layers, elements=self.elements,
                      mismatches=self.mismatches)
        return f"{self.mismatches} of {self.elements} elements differ, in layers {self.failing[:20]}"


def compare(layers):
    """Run every layer both ways: the :class:`Tally` (labels = layer indices) and the golden outputs with clamps."""
    tally, outputs = Tally(), []
    for index, layer in enumerate(layers):
        expected, (qmin, qmax) = golden_output(layer)
        tally.check(index, litert_output(layer, qmin, qmax), expected)
        outputs.append((expected, qmin, qmax))
    return tally, outputs


def _live(expected, qmin, qmax, zero_point):
    # Outputs that went through real rounding: strictly inside the clamp and not the zero point.
    return (expected > qmin) & (expected < qmax) & (expected != zero_point)


def _describe(layer):
    return {key: (value.tolist() if key == "k" else value) for key, value in layer.items()
            if key not in ("x", "weights", "bias", "acc")}


# --- (a) random layers -----------------------------------------------------------------------------------------------

def test_litert_random_wess_conv_layers(oracle_counts):
    rng = np.random.default_rng(20261105)
    layers = [random_conv_layer(rng, *case) for case in CONV_CASES for _ in range(DRAWS_PER_CASE)]
    tally, outputs = compare(layers)
    message = tally.record(oracle_counts, "random WESS conv/depthwise/grouped layers")
    print(f"\nrandom WESS conv/depthwise/grouped: {tally.layers} layers, {tally.elements} elements, "
          f"{tally.mismatches} mismatching")
    assert tally.layers >= 200
    assert not tally.failing, f"{message}; the first: {_describe(layers[tally.failing[0]])}"

    # The comparison is only as strong as the outputs are informative: most must be rounded values, and channels with
    # k_c = 0 and with k_c = 15 must produce such values in many layers.
    live = [_live(expected, qmin, qmax, layer["zp_out"]) for layer, (expected, qmin, qmax) in zip(layers, outputs)]
    assert sum(int(m.sum()) for m in live) > tally.elements // 3
    for k in (0, 15):
        reached = sum(bool(m[..., layer["k"] == k].any()) for layer, m in zip(layers, live))
        assert reached >= 40, f"channels with k_c = {k} produce rounded outputs in only {reached} layers"


def test_litert_random_fully_connected_layers(oracle_counts):
    rng = np.random.default_rng(7)
    layers = []
    for activation in ACTIVATIONS * 8:
        n, cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 65)), int(rng.integers(2, 17))
        weights = rng.integers(-127, 128, size=(cout, cin))
        bias = rng.integers(-2**14, 2**14, size=cout)
        x, zp_in = _int8_input(rng, (n, cin)), _zero_point(rng)
        acc = fully_connected(x, weights, bias, input_zero_point=zp_in)
        s_in, s_w, k = np.float32(2.0 ** rng.uniform(-9, -1)), np.float32(2.0 ** rng.uniform(-12, -5)), \
            _channel_shifts(rng, cout)
        layers.append(dict(op="fc", x=x, weights=weights, bias=bias, s_in=s_in, s_w=s_w, k=k,
                           s_out=_output_scale(rng, acc, s_in, s_w, k), zp_in=zp_in, zp_out=_zero_point(rng),
                           activation=activation, acc=acc))
    tally, _ = compare(layers)
    message = tally.record(oracle_counts, "random fully connected (as 1x1 CONV_2D)")
    assert not tally.failing, f"{message}; the first: {_describe(layers[tally.failing[0]])}"


def _edge_layer(x, weights, bias, k, s_in, s_w, s_out, zp_in=0, zp_out=0, activation=None):
    acc = conv2d(x, weights, bias, input_zero_point=zp_in)
    return dict(op="conv", x=x, weights=weights, bias=bias, stride=(1, 1), padding=(0, 0, 0, 0), s_in=np.float32(s_in),
                s_w=np.float32(s_w), k=np.asarray(k), s_out=np.float32(s_out), zp_in=zp_in, zp_out=zp_out,
                activation=activation, acc=acc)


def test_litert_edge_layers(oracle_counts):
    """Hand-picked 1x1 layers at the arithmetic's corners, each checked to really reach its corner."""
    rng = np.random.default_rng(3)
    x = np.arange(-128, 128).reshape(1, 16, 16, 1)                     # every int8 input value
    ramp = np.array([1, -1, 127, -127, 3, -3]).reshape(6, 1, 1, 1)
    layers, reached = [], {}

    # The mantissa rounds up to 2**31: QuantizeMultiplier returns (2**30, e + 1).
    s_in, s_w, s_out = (1 + 2.0**-23) * 2.0**-6, (1 - 2.0**-23) * 2.0**-7, 2.0**-13
    reached["M rounds to 2**31"] = quantize_multiplier(s_in * s_w / s_out) == (1 << 30, 1)
    layers.append(_edge_layer(x, ramp, None, [0, 0, 1, 2, 15, 15], s_in, s_w, s_out))

    # A power-of-two multiplier: every odd accumulator is an exact tie in SRDHM or RDBPOT, with k_c 0..15.
    reached["power-of-two multiplier"] = quantize_multiplier(2.0**-7) == (1 << 30, -6)
    for k in ([0, 1, 2, 3, 4, 15], [5, 6, 7, 8, 9, 15]):
        layers.append(_edge_layer(x, ramp, rng.integers(-1000, 1000, size=6), k, 2.0**-4, 2.0**-8, 2.0**-5,
                                  zp_in=-128, zp_out=127))

    # Multipliers too small to represent once k_c is added (e - k_c < -31): LiteRT's (0, 0), the golden model's long
    # right shift; both give the zero point.
    m, e = quantize_multiplier(2.0**-20)
    reached["e - k_c < -31"] = e - 15 < -31
    layers.append(_edge_layer(x, ramp, [2**20, -2**20, 0, 5, 2**30, -2**30], [0, 5, 11, 12, 13, 15],
                              1.0, 2.0**-20, 1.0, zp_out=-7))

    # Accumulators at the int32 extremes: bias next to INT32_MIN / INT32_MAX, a multiplier that keeps them in int8.
    bound = 255 * 127
    bias = [INT32_MIN + bound, 2**31 - 1 - bound, INT32_MIN + bound, 2**31 - 1 - bound, 0, 0]
    layer = _edge_layer(x, ramp, bias, [0, 0, 1, 1, 0, 0], 2.0**-10, 2.0**-15, 2.0**-10 * 2.0**-15 * 2.0**25,
                        zp_in=-128)
    reached["|acc| near 2**31"] = int(np.abs(layer["acc"]).max()) > 2**31 - 2 * bound
    layers.append(layer)

    # Zero points at the int8 extremes, with ReLU / ReLU6 clamps that coincide with the zero point.
    for zp_in, zp_out, activation in ((-128, -128, "relu6"), (127, 127, "relu"), (127, -128, "relu"),
                                      (-128, 127, "relu6")):
        layers.append(_edge_layer(x, ramp, None, [0, 1, 2, 3, 4, 15], 2.0**-7, 2.0**-7, 2.0**-9,
                                  zp_in=zp_in, zp_out=zp_out, activation=activation))

    assert all(reached.values()), f"an edge case is not reached: {reached}"
    tally, _ = compare(layers)
    message = tally.record(oracle_counts, "edge layers")
    assert not tally.failing, f"{message}; the first: {_describe(layers[tally.failing[0]])}"


def _litert_binary(op, x1, x2, quantization, qmin=-128, qmax=127):
    """LiteRT REF's ADD or MUL (``op``) of ``x1`` and ``x2`` quantized as ``(s1, zp1, s2, zp2, s_out, zp_out)``."""
    s1, zp1, s2, zp2, s_out, zp_out = quantization
    builder = ModelBuilder()
    a = builder.input("a", x1.shape, scale=s1, zero_point=zp1)
    b = builder.input("b", x2.shape, scale=s2, zero_point=zp2)
    y = getattr(builder, op)(a, b, output_scale=s_out, output_zero_point=zp_out, qmin=qmin, qmax=qmax, name="y")
    return run_reference(builder.build([y]), [x1, x2])[0]


def test_litert_random_add_layers(oracle_counts):
    rng = np.random.default_rng(11)
    tally = Tally()
    for activation, ratio in itertools.product(ACTIVATIONS, (1.0, 0.7, 2.0**-8, 5.0, 2.0**6)):
        for _ in range(3):
            shape = (int(rng.integers(1, 3)), *(int(s) for s in rng.integers(1, 9, size=2)), int(rng.integers(1, 17)))
            s1 = np.float32(2.0 ** rng.uniform(-8, -1))
            s2 = np.float32(s1 * ratio)
            s_out = np.float32((s1 + s2) * rng.uniform(0.3, 1.5))
            zp1, zp2, zp_out = _zero_point(rng), _zero_point(rng), _zero_point(rng)
            x1, x2 = _int8_input(rng, shape), _int8_input(rng, shape)
            qmin, qmax = activation_bounds(activation, float(s_out), zp_out)
            expected = add(x1, x2, add_params(s1, zp1, s2, zp2, s_out, zp_out), qmin, qmax)

            actual = _litert_binary("add", x1, x2, (s1, zp1, s2, zp2, s_out, zp_out), qmin, qmax)
            tally.check((activation, ratio, shape), actual, expected)
    message = tally.record(oracle_counts, "random ADD layers")
    assert tally.layers >= 40 and not tally.failing, message


def test_litert_random_average_pool_layers(oracle_counts):
    rng = np.random.default_rng(13)
    tally = Tally()
    windows = ((2, 1, "VALID"), (2, 2, "VALID"), (3, 1, "SAME"), (3, 2, "SAME"), (3, 2, "VALID"), ("global", 1, "VALID"))
    for (kernel, stride, mode), activation in itertools.product(windows, ACTIVATIONS):
        for _ in range(3):
            n, h, w, c = (int(rng.integers(1, 3)), *(int(s) for s in rng.integers(3, 10, size=2)),
                          int(rng.integers(1, 17)))
            window = (h, w) if kernel == "global" else (kernel, kernel)
            padding = (0, 0, 0, 0) if mode == "VALID" else \
                same_padding(h, kernel, stride) + same_padding(w, kernel, stride)
            scale, zp = np.float32(2.0 ** rng.uniform(-8, 0)), _zero_point(rng)
            qmin, qmax = activation_bounds(activation, float(scale), zp)
            x = _int8_input(rng, (n, h, w, c))
            expected = average_pool2d(x, window, stride=(stride, stride), padding=padding, qmin=qmin, qmax=qmax)

            builder = ModelBuilder()
            xi = builder.input("x", x.shape, scale=scale, zero_point=zp)
            y = builder.average_pool2d(xi, window, stride=(stride, stride), padding=padding, qmin=qmin, qmax=qmax,
                                       name="y")
            tally.check((window, stride, mode, activation), run_reference(builder.build([y]), [x])[0], expected)
    message = tally.record(oracle_counts, "random AVERAGE_POOL_2D layers")
    assert tally.layers >= 40 and not tally.failing, message


def test_litert_random_max_pool_layers(oracle_counts):
    rng = np.random.default_rng(17)
    tally = Tally()
    windows = ((2, 2, "VALID"), (3, 2, "SAME"), (3, 1, "SAME"), (3, 2, "explicit"), (3, 1, "explicit"),
               (5, 1, "explicit"))
    for (kernel, stride, mode), activation in itertools.product(windows, ACTIVATIONS):
        for _ in range(3):
            n, h, w, c = (int(rng.integers(1, 3)), *(int(s) for s in rng.integers(3, 12, size=2)),
                          int(rng.integers(1, 9)))
            padding = _padding(rng, (h, w), kernel, stride, mode) if mode != "explicit" else \
                (kernel // 2,) * 4                          # ResNet's MaxPool 3x3/2 pads 1 on every side
            scale, zp = np.float32(2.0 ** rng.uniform(-8, 0)), _zero_point(rng)
            qmin, qmax = activation_bounds(activation, float(scale), zp)
            x = _int8_input(rng, (n, h, w, c))
            x[0, :2, :2] = -128                             # a corner of -128 beside the padding
            expected = max_pool2d(x, (kernel, kernel), stride=(stride, stride), padding=padding, qmin=qmin, qmax=qmax)

            builder = ModelBuilder()
            xi = builder.input("x", x.shape, scale=scale, zero_point=zp)
            y = builder.max_pool2d(xi, (kernel, kernel), stride=(stride, stride), padding=padding, qmin=qmin,
                                   qmax=qmax, name="y")
            tally.check((kernel, stride, padding, activation), run_reference(builder.build([y]), [x])[0], expected)
    message = tally.record(oracle_counts, "random MAX_POOL_2D layers (explicit padding as PADV2 -128)")
    assert tally.layers >= 50 and not tally.failing, message


def _activation_quantizations(rng, function, draws):
    """``(s_in, zp_in, s_out, zp_out, alpha)``: the zero-point extremes first, then random ones."""
    cases = []
    for index in range(draws):
        s_in = np.float32(2.0 ** rng.uniform(-9, 1))
        zp_in = [-128, 127, 0][index] if index < 3 else _zero_point(rng)
        if function in FIXED_OUTPUT:
            s_out, zp_out = FIXED_OUTPUT[function]
        else:
            s_out, zp_out = np.float32(s_in * 2.0 ** rng.uniform(-1.5, 3)), _zero_point(rng)
        alpha = float(rng.choice([0.01, 0.1, 0.2, 0.25, 1 / 3])) if function == "leaky_relu" else None
        cases.append((s_in, zp_in, s_out, zp_out, alpha))
    return cases


@pytest.mark.parametrize("function", FUNCTIONS)
def test_litert_activation_tables_every_input(function, oracle_counts):
    """Each table against LiteRT's own kernel, on all 256 int8 inputs, for 40 quantizations per function."""
    rng = np.random.default_rng(FUNCTIONS.index(function) + 30)
    tally = Tally()
    x = np.arange(-128, 128).reshape(1, 1, 16, 16)
    for s_in, zp_in, s_out, zp_out, alpha in _activation_quantizations(rng, function, 40):
        if function == "hard_swish" and s_in / 128 >= s_out:
            continue                                        # LiteRT refuses it; so does activation_table
        table = activation_table(function, s_in, zp_in, s_out, zp_out, alpha=alpha)
        builder = ModelBuilder()
        xi = builder.input("x", x.shape, scale=s_in, zero_point=zp_in)
        y = builder.activation(xi, function, output_scale=s_out, output_zero_point=zp_out, alpha=alpha, name="y")
        tally.check((float(s_in), zp_in, float(s_out), zp_out, alpha), run_reference(builder.build([y]), [x])[0],
                    lookup(x, table))
    message = tally.record(oracle_counts, f"{function} tables, every int8 input")
    assert tally.layers >= 30 and not tally.failing, message


@pytest.mark.parametrize("quantization, x, expected", [
    ((0.014103823341429234, -128, 0.0259300097823143, 0.1), 20, 80),
    ((0.16728857159614563, -128, 0.545764148235321, 0.01), -13, 36),
])
def test_leaky_relu_multiplier_is_formed_in_float32(quantization, x, expected):
    """LEAKY_RELU's Prepare divides the float scales in float32; the double quotient gives a multiplier whose product
    rounds to ``expected -+ 1`` here (found by search, pinned by running LiteRT)."""
    s_in, zp_in, s_out, alpha = quantization
    assert activation_table("leaky_relu", s_in, zp_in, s_out, 0, alpha=alpha)[x + 128] == expected
    double = quantize_multiplier(float(np.float32(s_in)) / float(np.float32(s_out)))
    assert multiply_by_quantized_multiplier(x - zp_in, *double) != expected
    builder = ModelBuilder()
    xi = builder.input("x", (1, 1), scale=s_in, zero_point=zp_in)
    y = builder.activation(xi, "leaky_relu", output_scale=s_out, output_zero_point=0, alpha=alpha, name="y")
    assert run_reference(builder.build([y]), [np.array([[x]])])[0].item() == expected


def test_activation_tables_are_not_trivial():
    # A table that ignored its function or its quantization would pass a test that only compares it with itself.
    hs = activation_table("hard_swish", 0.05, 0, 0.03, -40)
    assert hs[128] == -40 and hs[0] == -40 and hs[255] > 100          # hswish(0) = 0, hswish(-6.4) = 0, large x = x
    lr = activation_table("leaky_relu", 0.1, 0, 0.1, 0, alpha=0.1)
    assert lr[128 - 100] == -10 and lr[128 + 100] == 100
    lg = activation_table("logistic", 0.1, 0, *FIXED_OUTPUT["logistic"])
    assert lg[128] == 0 and lg[0] == -128 + 0 and lg[255] == 127      # sigmoid(0) = 1/2 -> 128 - 128
    th = activation_table("tanh", 0.05, 10, *FIXED_OUTPUT["tanh"])
    assert th[128 + 10] == 0 and th[0] == -128 and th[255] == 127      # tanh(-6.9) * 128 rounds to -128
    with pytest.raises(ValueError, match="needs the output scale 0.00390625 and zero point -128"):
        activation_table("logistic", 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="HARD_SWISH needs s_in / 128 < s_out"):
        activation_table("hard_swish", 1.0, 0, 0.001, 0)


def test_litert_random_mul_layers(oracle_counts):
    rng = np.random.default_rng(19)
    tally = Tally()
    for activation, broadcast in itertools.product(ACTIVATIONS, (True, False)):
        for _ in range(8):
            shape = (int(rng.integers(1, 3)), *(int(s) for s in rng.integers(1, 7, size=2)), int(rng.integers(1, 17)))
            gate = (shape[0], 1, 1, shape[3]) if broadcast else shape
            s1, s2 = np.float32(2.0 ** rng.uniform(-8, 0)), np.float32(2.0 ** rng.uniform(-8, 0))
            s_out = np.float32(s1 * s2 * 2.0 ** rng.uniform(3, 9))
            zp1, zp2, zp_out = _zero_point(rng), _zero_point(rng), _zero_point(rng)
            qmin, qmax = activation_bounds(activation, float(s_out), zp_out)
            x1, x2 = _int8_input(rng, shape), _int8_input(rng, gate)
            expected = mul(x1, x2, mul_params(s1, zp1, s2, zp2, s_out, zp_out), qmin, qmax)

            actual = _litert_binary("mul", x1, x2, (s1, zp1, s2, zp2, s_out, zp_out), qmin, qmax)
            tally.check((activation, shape, gate), actual, expected)
    message = tally.record(oracle_counts, "random MUL layers (broadcast gates too)")
    assert tally.layers >= 48 and not tally.failing, message


@pytest.mark.parametrize("quantization, x1, x2, expected", [
    ((0.017061863094568253, -128, 0.07256902009248734, 127, 1.2510042190551758), 105, -118, -56),
    ((0.19978712499141693, -128, 0.011554347351193428, 127, 1.1484105587005615), -71, -113, -28),
])
def test_mul_multiplier_is_formed_in_float32(quantization, x1, x2, expected):
    """LiteRT's MUL forms ``s1 * s2 / s_out`` in float32; from the double product the multiplier differs in its last
    bits and these products round to ``expected -+ 1`` (values found by search, pinned by running LiteRT)."""
    s1, zp1, s2, zp2, s_out = quantization
    params = mul_params(s1, zp1, s2, zp2, s_out, 0)
    assert mul(np.int8(x1), np.int8(x2), params) == expected
    double = quantize_multiplier(s1 * s2 / s_out)
    assert double != (params.multiplier, params.shift)
    assert mul(np.int8(x1), np.int8(x2), dataclasses.replace(params, multiplier=double[0], shift=double[1])) != expected
    assert _litert_binary("mul", np.array([[x1]]), np.array([[x2]]), (s1, zp1, s2, zp2, s_out, 0)).item() == expected


def test_litert_concatenation_copies_and_refuses_requantization(oracle_counts):
    rng = np.random.default_rng(23)
    tally = Tally()
    for count in (2, 3, 4):
        shapes = [(2, 5, 4, int(c)) for c in rng.integers(1, 9, size=count)]
        xs = [_int8_input(rng, shape) for shape in shapes]
        builder = ModelBuilder()
        handles = [builder.input(f"x{i}", shape, scale=0.05, zero_point=-7) for i, shape in enumerate(shapes)]
        y = builder.concatenation(handles, name="y")
        tally.check(count, run_reference(builder.build([y]), xs)[0], concatenate(xs))
    message = tally.record(oracle_counts, "CONCATENATION layers")
    assert not tally.failing, message
    builder = ModelBuilder()
    a = builder.input("a", (1, 2, 2, 3), scale=0.05, zero_point=-7)
    b = builder.input("b", (1, 2, 2, 3), scale=0.06, zero_point=-7)
    with pytest.raises(ValueError, match="must share one scale and zero point"):
        builder.concatenation([a, b], name="y")


def test_litert_builder_refuses_bad_layers():
    builder = ModelBuilder()
    x = builder.input("x", (1, 4, 4, 2), scale=0.1, zero_point=0)
    q = dict(weight_scale=0.01, output_scale=0.1, output_zero_point=0)
    ones = np.ones((3, 1, 1, 2), dtype=np.int64)
    cases = [
        (lambda: builder.conv2d(x, ones * 128, None, **q, name="a"), r"weights values must lie in \[-127, 127\]"),
        (lambda: builder.conv2d(x, np.ones((3, 1, 1, 3), np.int64), None, **q, name="a"), "conv weights must be"),
        (lambda: builder.conv2d(x, ones, [1, 2], **q, name="a"), r"bias must have shape \(3,\)"),
        (lambda: builder.conv2d(x, ones, [2**31, 0, 0], **q, name="a"), "bias values must lie in"),
        (lambda: builder.conv2d(x, ones, None, channel_shift=[0, 0, 32], **q, name="a"), "channel_shift values"),
        (lambda: builder.conv2d(x, ones, None, **dict(q, weight_scale=0.0), name="a"), "positive normal float32"),
        (lambda: builder.conv2d(x, ones, None, padding=(1, 1), **q, name="a"), "padding must be"),
        (lambda: builder.conv2d(x, ones, None, **q, qmin=-100, name="a"), "no TFLite fused activation"),
        (lambda: builder.depthwise_conv2d(x, np.ones((3, 3, 3), np.int64), None, **q, name="a"), "depthwise weights"),
        (lambda: builder.average_pool2d(x, (3, 3), padding=(1, 0, 1, 0), name="a"), "neither VALID nor SAME"),
        (lambda: builder.input("x", (1, 2), scale=0.1, zero_point=0), "a tensor is already named 'x'"),
        (lambda: builder.input("b", (1, 2), scale=0.1, zero_point=128), "zero point of 'b' must be"),
        (lambda: builder.reshape(x, (1, 5), name="a"), "cannot reshape"),
        (lambda: builder.fully_connected(x, np.ones((3, 32), np.int64), None, **q, name="a"),
         r"fully connected input must be \(N, Cin\)"),
        (lambda: builder.build([]), "at least one input and one output"),
        (lambda: builder.build([99]), "99 is not an activation tensor"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


# --- a pinned difference: ReLU6's upper bound --------------------------------------------------------------------------

def test_litert_relu6_bound_is_computed_in_float32():
    """LiteRT computes ``6 / s_out`` in float32, and so does golden.requant.activation_bounds (docs/arithmetic.md).

    For ``s_out = float32(6 / 2.5)`` the float32 quotient is exactly 2.5 (rounded up to 3) while the double one is
    2.4999999 (rounded to 2): a double-precision bound would clamp one LSB lower than LiteRT.
    """
    scale, zp = np.float32(6 / 2.5), -128
    assert round_half_away_from_zero(6.0 / float(scale)) == 2                # the double quotient
    assert activation_bounds("relu6", float(scale), zp) == (-128, -125)
    assert litert_activation_bounds("RELU6", scale, zp) == (-128, -125)

    builder = ModelBuilder()                            # y = 127 * x, with LiteRT's own RELU6 clamp
    x = builder.input("x", (1, 1, 1, 1), scale=1.0, zero_point=0)
    y = builder.conv2d(x, np.array([[[[127]]]]), None, weight_scale=1.0, channel_shift=[0], output_scale=scale,
                       output_zero_point=zp, qmin=-128, qmax=-125, name="y")
    assert run_reference(builder.build([y]), [np.array([[[[127]]]])])[0].item() == -125

    with pytest.raises(ValueError, match=r"no TFLite fused activation clamps to \[-128, -126\]"):
        fused_activation(-128, -126, scale, zp)


# --- (b) the built-in reference model, quantized by tools/quantize.py ----------------------------------------------------

def test_litert_reference_model_every_layer(quantized_reference, oracle_counts):
    """Each layer alone, exported as a .tflite model and fed the golden model's own input to that layer."""
    networks, x = quantized_reference
    tally = Tally()
    for method, network in networks.items():
        _, trace = gnet.run(network, x, keep=True)
        for layer in network.layers:
            inputs = [trace.tensors[name] for name in dict.fromkeys(layer.inputs)]
            model = export_layer(network, layer.name, batch=len(x))
            assert check_quantization(model, network) == [], f"{method}/{layer.name}"
            (actual,) = run_reference(model, inputs)
            tally.check(f"{method}/{layer.name}", actual, trace.tensors[layer.output])
    message = tally.record(oracle_counts, f"reference model layer by layer ({', '.join(networks)}; {len(x)} images)")
    kinds = {layer.kind for layer in networks["wess"].layers}
    assert kinds == {"conv", "depthwise", "add", "average_pool", "flatten", "fully_connected"}
    assert any(layer.channel_shift.any() for layer in networks["wess"].layers if hasattr(layer, "channel_shift"))
    assert not tally.failing, message


def test_litert_reference_model_end_to_end(quantized_reference, oracle_counts):
    """The whole network as one .tflite model: its output and every intermediate tensor LiteRT computed."""
    networks, x = quantized_reference
    tally = Tally()
    for method, network in networks.items():
        output, trace = gnet.run(network, x, keep=True)
        model = export_network(network, batch=len(x))
        assert check_quantization(model, network) == [], method
        (litert,), tensors = run_reference(model, [x], keep=True)
        assert litert.shape == output.shape == (len(x), 10)
        np.testing.assert_array_equal(litert, output, err_msg=f"{method}: the network outputs differ")
        for layer in network.layers:
            tally.check(f"{method}/{layer.name}", tensors[layer.output], trace.tensors[layer.output])
    message = tally.record(oracle_counts, f"reference model end to end, every layer's tensor ({', '.join(networks)}; "
                                          f"{len(x)} images)")
    assert not tally.failing, message


def test_export_refuses_what_litert_would_compute_differently(quantized_reference):
    network = quantized_reference[0]["wess"]
    conv = next(layer for layer in network.layers if layer.kind == "conv")
    add_layer = next(layer for layer in network.layers if layer.kind == "add")

    def replaced(old, new):
        return dataclasses.replace(network, layers=tuple(new if layer is old else layer for layer in network.layers))

    with pytest.raises(ValueError, match=rf"layer '{conv.name}', channel 0: LiteRT derives \(multiplier, shift\)"):
        export_network(replaced(conv, dataclasses.replace(conv, multiplier=conv.multiplier + 1)))
    params = dataclasses.replace(add_layer.params, output_multiplier=add_layer.params.output_multiplier - 1)
    with pytest.raises(ValueError, match=rf"layer '{add_layer.name}': LiteRT derives AddParams"):
        export_layer(replaced(add_layer, dataclasses.replace(add_layer, params=params)), add_layer.name)
    with pytest.raises(ValueError, match="no TFLite fused activation clamps to"):
        export_layer(replaced(conv, dataclasses.replace(conv, qmin=-100)), conv.name)


def test_check_quantization_finds_wrong_parameters(quantized_reference):
    """A bias scale written without 2**-k_c (LiteRT's conv kernels never read it), and a network that disagrees with
    the file in an activation scale or a channel's k_c, are each reported naming the tensor and channel."""
    network = quantized_reference[0]["wess"]
    model = export_network(network)
    layer = next(layer for layer in network.layers if hasattr(layer, "channel_shift") and layer.channel_shift.any())
    c = int(np.flatnonzero(layer.channel_shift)[0])
    s_in = float(np.float32(network.tensors[layer.input].scale))
    right = (s_in * np.float32(layer.weight_scale).astype(np.float64)).astype(np.float32)   # the bias scale vector
    wrong = right.copy()
    wrong[c] = np.float32(s_in * float(np.float32(layer.weight_scale[c] * 2.0 ** layer.channel_shift[c])))
    assert model.count(right.tobytes()) == 1                    # patch exactly that channel of that vector
    problems = check_quantization(model.replace(right.tobytes(), wrong.tobytes()), network)
    assert problems == [f"tensor '{layer.output}/bias': scale of channel {c} is {wrong[c]:.9g}, expected "
                        f"{right[c]:.9g}"]

    tensor = network.tensors[layer.output]
    moved = dataclasses.replace(network, tensors=dict(network.tensors, **{
        layer.output: dataclasses.replace(tensor, scale=tensor.scale * 1.5)}))
    assert any(p.startswith(f"tensor '{layer.output}': scale of channel 0 is") for p in check_quantization(model, moved))

    k = layer.channel_shift.copy()
    k[c] -= 1
    shifted = dataclasses.replace(network, layers=tuple(dataclasses.replace(other, channel_shift=k)
                                                         if other is layer else other for other in network.layers))
    problems = check_quantization(model, shifted)
    assert f"layer '{layer.name}': the weight scales are not one scale s_w times 2**-k_c" in problems
    assert any(p.startswith(f"tensor '{layer.output}/weights': scale of channel {c}") for p in problems)
    assert any(p.startswith(f"tensor '{layer.output}/bias': scale of channel {c}") for p in problems)
