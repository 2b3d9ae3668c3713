"""golden/network.py: whole-network integer inference against a slow loop reference and against float; save/load."""

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from golden import network as gnet
from golden.activation import activation_table, lookup
from golden.add import add_params
from golden.config import NPUConfig
from golden.mul import mul, mul_params
from golden.placement import plan_network
from golden.pool import max_pool2d
from golden.requant import quantize_multiplier

ROOT = str(Path(__file__).resolve().parents[2])


# -- an independent, slow, element-by-element integer reference (Python ints, docs/arithmetic.md) ----------------------

def _saturate32(v):
    return max(-(1 << 31), min((1 << 31) - 1, v))


def _mbqm(acc, multiplier, exponent):
    left, right = max(exponent, 0), max(-exponent, 0)
    x = _saturate32(acc << left)
    high = (x * multiplier + (1 << 30)) // (1 << 31)          # SRDHM for multiplier >= 0: ties toward +inf
    if right == 0:
        return high
    quotient, remainder = divmod(abs(high), 1 << right)        # RDBPOT: ties away from zero
    quotient += 2 * remainder >= (1 << right)
    return quotient if high >= 0 else -quotient


def _clamp(v, low, high):
    return max(low, min(high, v))


def _ref_weighted(layer, x, zp_in, zp_out):
    weights = np.asarray(layer.weights).tolist()
    bias = [int(b) for b in layer.bias]
    n, h, w, c = x.shape if x.ndim == 4 else (x.shape[0], 1, 1, x.shape[1])
    x = x.reshape(n, h, w, c).tolist()
    if isinstance(layer, gnet.FullyConnected):
        kernel, stride, (top, bottom, left, right), cout = (1, 1), (1, 1), (0, 0, 0, 0), len(bias)
        taps = lambda o: [[weights[o]]]                                      # noqa: E731
        group_in = c
    elif isinstance(layer, gnet.DepthwiseConv2D):
        kernel, stride, (top, bottom, left, right) = np.shape(weights)[:2], layer.stride, layer.padding
        cout, group_in = c, 1
        taps = lambda o: [[[weights[ky][kx][o]] for kx in range(kernel[1])] for ky in range(kernel[0])]  # noqa
    else:
        kernel, stride, (top, bottom, left, right) = np.shape(weights)[1:3], layer.stride, layer.padding
        cout, group_in = len(bias), np.shape(weights)[3]
        taps = lambda o: weights[o]                                          # noqa: E731
    ho = (h + top + bottom - kernel[0]) // stride[0] + 1
    wo = (w + left + right - kernel[1]) // stride[1] + 1
    per_group_out = cout // (c // group_in) if not isinstance(layer, gnet.DepthwiseConv2D) else 1
    multiplier = np.broadcast_to(layer.multiplier, (cout,)).tolist()
    shift = np.broadcast_to(layer.shift, (cout,)).tolist()
    out = np.zeros((n, ho, wo, cout), dtype=np.int64)
    for b in range(n):
        for yo in range(ho):
            for xo in range(wo):
                for o in range(cout):
                    first = (o // per_group_out) * group_in
                    acc = bias[o]
                    kernel_o = taps(o)
                    for ky in range(kernel[0]):
                        for kx in range(kernel[1]):
                            yi, xi = yo * stride[0] + ky - top, xo * stride[1] + kx - left
                            if 0 <= yi < h and 0 <= xi < w:
                                for i in range(group_in):
                                    acc += kernel_o[ky][kx][i] * (x[b][yi][xi][first + i] - zp_in)
                    assert -(1 << 31) <= acc < (1 << 31)
                    v = _mbqm(acc, multiplier[o], shift[o] - int(layer.channel_shift[o]))
                    out[b, yo, xo, o] = _clamp(v + zp_out, layer.qmin, layer.qmax)
    return out.reshape(n, cout) if isinstance(layer, gnet.FullyConnected) else out


def _ref_add(layer, a, b):
    p = layer.params
    flat = []
    for u, v in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()):
        s1 = _mbqm((u - p.zero_point1) << p.left_shift, p.multiplier1, p.shift1)
        s2 = _mbqm((v - p.zero_point2) << p.left_shift, p.multiplier2, p.shift2)
        flat.append(_clamp(_mbqm(s1 + s2, p.output_multiplier, p.output_shift) + p.output_zero_point,
                           layer.qmin, layer.qmax))
    return np.array(flat, dtype=np.int64).reshape(a.shape)


def _ref_pool(layer, x):
    n, h, w, c = x.shape
    kernel = layer.kernel or (h, w)
    top, bottom, left, right = layer.padding
    ho = (h + top + bottom - kernel[0]) // layer.stride[0] + 1
    wo = (w + left + right - kernel[1]) // layer.stride[1] + 1
    out = np.zeros((n, ho, wo, c), dtype=np.int64)
    for b in range(n):
        for yo in range(ho):
            for xo in range(wo):
                for ch in range(c):
                    values = [int(x[b, yi, xi, ch])
                              for yi in range(yo * layer.stride[0] - top, yo * layer.stride[0] - top + kernel[0])
                              for xi in range(xo * layer.stride[1] - left, xo * layer.stride[1] - left + kernel[1])
                              if 0 <= yi < h and 0 <= xi < w]
                    total, count = sum(values), len(values)
                    q, r = divmod(abs(total), count)
                    q += 2 * r >= count
                    out[b, yo, xo, ch] = q if total >= 0 else -q
    return out


def reference_run(network, x):
    """Slow loop reference of golden.network.run."""
    values = {gnet.INPUT: np.asarray(x, dtype=np.int64)}
    for layer in network.layers:
        if isinstance(layer, gnet.Add):
            result = _ref_add(layer, values[layer.inputs[0]], values[layer.inputs[1]])
        elif isinstance(layer, gnet.AveragePool):
            result = _ref_pool(layer, values[layer.input])
        elif isinstance(layer, gnet.Flatten):
            result = values[layer.input].reshape(len(x), -1)
        else:
            result = _ref_weighted(layer, values[layer.input], network.tensors[layer.input].zero_point,
                                   network.tensors[layer.output].zero_point)
        values[layer.output] = result
    return values


# -- random networks with edge-case parameters ---------------------------------------------------------------------------

def _random_network(seed, *, per_channel=False):
    rng = np.random.default_rng(seed)

    def tensor(shape):
        return gnet.Tensor(shape=shape, scale=float(rng.uniform(0.01, 0.2)), zero_point=int(rng.integers(-128, 128)))

    def params(cout, taps):
        # Spread the outputs over the int8 range: |acc| ~ 5400 sqrt(taps), scaled to ~50 for k_c = 0. Most channels
        # get small shifts, the first 0 and the last 15 (the extremes of the shift range).
        shifts = rng.integers(0, 3, cout)
        shifts[0], shifts[-1] = 0, 15
        base = -int(round(np.log2(5400 * np.sqrt(taps) / 50)))
        multiplier = (rng.integers(1 << 30, 1 << 31, cout) if per_channel else int(rng.integers(1 << 30, 1 << 31)))
        shift = rng.integers(base - 1, base + 2, cout) if per_channel else int(rng.integers(base - 1, base + 2))
        return dict(multiplier=multiplier, shift=shift, channel_shift=np.zeros(cout, np.int64) if per_channel
                    else shifts, weight_scale=np.full(cout, 0.01), bias=rng.integers(-(1 << 14), 1 << 14, cout))

    def weights(shape):
        w = rng.integers(-127, 128, shape)
        w.reshape(-1)[:2] = (-127, 127)
        return w

    tensors = {gnet.INPUT: tensor((7, 6, 4))}
    layers = []

    def add_layer(layer, shape):
        layers.append(layer)
        tensors[layer.output] = tensor(shape)

    add_layer(gnet.Conv2D(name="conv0", input="input", output="conv0", weights=weights((8, 3, 3, 4)), stride=(2, 1),
                          padding=(0, 1, 1, 1), qmin=-100, qmax=90, **params(8, 36)), (3, 6, 8))
    add_layer(gnet.DepthwiseConv2D(name="dw1", input="conv0", output="dw1", weights=weights((3, 3, 8)),
                                   stride=(1, 2), padding=(1, 1, 1, 0), **params(8, 9)), (3, 3, 8))
    add_layer(gnet.Conv2D(name="grouped2", input="dw1", output="grouped2", weights=weights((8, 1, 1, 4)), groups=2,
                          **params(8, 4)), (3, 3, 8))
    t1, t2 = tensors["dw1"], tensors["grouped2"]
    out = tensor((3, 3, 8))
    layers.append(gnet.Add(name="add3", inputs=("dw1", "grouped2"), output="add3", qmin=out.zero_point, qmax=127,
                           params=add_params(t1.scale, t1.zero_point, t2.scale, t2.zero_point, out.scale,
                                             out.zero_point)))
    tensors["add3"] = out
    layers.append(gnet.AveragePool(name="pool4", input="add3", output="pool4", kernel=(2, 2), stride=(1, 1),
                                   padding=(0, 1, 1, 0)))
    tensors["pool4"] = tensors["add3"]
    layers.append(gnet.Flatten(name="flatten5", input="pool4", output="flatten5"))
    tensors["flatten5"] = gnet.Tensor(shape=(72,), scale=out.scale, zero_point=out.zero_point)
    add_layer(gnet.FullyConnected(name="fc6", input="flatten5", output="fc6", weights=weights((5, 72)),
                                  **params(5, 72)), (5,))
    layers.append(gnet.AveragePool(name="gap7", input="conv0", output="gap7"))
    tensors["gap7"] = gnet.Tensor(shape=(1, 1, 8), scale=tensors["conv0"].scale,
                                  zero_point=tensors["conv0"].zero_point)
    network = gnet.Network(layers=tuple(layers), tensors=tensors, output="fc6", config=NPUConfig(shift_bits=4),
                           preprocessing={"note": "random"})
    x = rng.integers(-128, 128, (3, 7, 6, 4))
    x[0, 0, 0, :] = (-128, 127, -128, 127)
    return network, x


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_run_matches_loop_reference(seed, per_channel):
    network, x = _random_network(seed, per_channel=per_channel)
    output, trace = gnet.run(network, x, keep=True)
    expected = reference_run(network, x)
    for name, value in expected.items():
        assert np.array_equal(trace.tensors[name], value), name
    assert np.array_equal(output, expected["fc6"]) and output.dtype == np.int8
    assert np.array_equal(gnet.run(network, x), output)
    # Edge behaviour is exercised: clamps reached, both extremes of k_c present.
    assert np.any(trace.tensors["conv0"] == 90) or np.any(trace.tensors["conv0"] == -100)
    assert set(trace.accumulator_max) == {"conv0", "dw1", "grouped2", "fc6"}


def test_save_load_round_trip(tmp_path):
    network, x = _random_network(11, per_channel=False)
    manifest = gnet.save(network, tmp_path, extra={"method": "test"})
    assert sorted(os.listdir(tmp_path)) == [gnet.MANIFEST, gnet.ARRAYS]
    assert list(manifest["files"]) == [gnet.ARRAYS]
    assert manifest["quantizer"] == {"method": "test"}
    on_disk = json.loads((tmp_path / gnet.MANIFEST).read_text())
    conv = on_disk["layers"][0]
    assert conv["kind"] == "conv" and conv["channel_shift"] == [int(k) for k in network.layers[0].channel_shift]
    assert conv["arrays"]["weights"]["dtype"] == "int8" and conv["padding"] == [0, 1, 1, 1]
    assert NPUConfig(**on_disk["npu_config"]) == network.config
    loaded = gnet.load(tmp_path)
    assert loaded.tensors == network.tensors and loaded.output == network.output
    assert loaded.preprocessing == network.preprocessing
    for a, b in zip(network.layers, loaded.layers):
        assert type(a) is type(b) and a.name == b.name and a.inputs == b.inputs
        for field in ("weights", "bias", "channel_shift", "multiplier", "shift", "stride", "padding", "params",
                      "kernel", "qmin", "qmax", "groups"):
            if hasattr(a, field):
                assert np.array_equal(getattr(a, field), getattr(b, field)) or getattr(a, field) == getattr(b, field)
    assert np.array_equal(gnet.run(loaded, x), gnet.run(network, x))
    (tmp_path / "rom.hex").write_text("00ff\n")
    listed = gnet.save(network, tmp_path, files=["rom.hex"])["files"]
    assert listed["rom.hex"] == {"sha256": __import__("hashlib").sha256(b"00ff\n").hexdigest(), "bytes": 5}
    per_channel, _ = _random_network(12, per_channel=True)
    gnet.save(per_channel, tmp_path)
    assert np.array_equal(gnet.load(tmp_path).layers[0].multiplier, per_channel.layers[0].multiplier)


def test_codebook_saved_loaded_and_validated(tmp_path):
    network, x = _random_network(14)
    index = [layer.name for layer in network.layers].index("fc6")
    fc = network.layers[index]
    codebook = np.array([-4, -1, 1, 4])
    two_bit = dataclasses.replace(fc, weights=codebook[np.random.default_rng(1).integers(0, 4, fc.weights.shape)],
                                  codebook=codebook)
    network = dataclasses.replace(network, layers=network.layers[:index] + (two_bit,) + network.layers[index + 1:])
    manifest = gnet.save(network, tmp_path)
    assert manifest["layers"][index]["codebook"] == [-4, -1, 1, 4]
    assert manifest["layers"][index]["arrays"]["codebook"]["dtype"] == "int8"
    assert "codebook" not in manifest["layers"][0]
    loaded = gnet.load(tmp_path)
    assert loaded.layers[0].codebook is None and loaded.layers[index].codebook.tolist() == [-4, -1, 1, 4]
    assert np.array_equal(gnet.run(loaded, x), gnet.run(network, x))
    with pytest.raises(ValueError, match=r"fc6: a weight is not in the codebook \[-3, -1, 1, 3\]"):
        dataclasses.replace(two_bit, codebook=np.array([-3, -1, 1, 3]))
    for bad in ([-4, 1, -1, 4], [-4, -1, 1], [-128, -1, 1, 4], [-4.0, -1.0, 1.0, 4.0]):
        with pytest.raises(ValueError, match="fc6: codebook must be 4 ascending integers in"):
            dataclasses.replace(two_bit, codebook=np.array(bad))


def test_load_detects_tampering(tmp_path):
    network, _ = _random_network(13)
    gnet.save(network, tmp_path)
    blob = bytearray((tmp_path / gnet.ARRAYS).read_bytes())
    blob[len(blob) // 2] ^= 1
    (tmp_path / gnet.ARRAYS).write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match the sha256"):
        gnet.load(tmp_path)
    with pytest.raises(ValueError, match="cannot read a network"):
        gnet.load(tmp_path / "missing")


def test_quantize_input_rounds_half_away_and_clamps():
    network, _ = _random_network(0)
    info = network.tensors[gnet.INPUT]
    offsets = np.array([2.5, -2.5, 0.49, -0.5, 1000.0, -1000.0])
    images = np.zeros((1, 4, 7, 6))
    images[0, 0, 0, :6] = offsets * info.scale
    q = gnet.quantize_input(network, images)
    assert q.shape == (1, 7, 6, 4) and q.dtype == np.int8
    expected = np.clip(np.array([3, -3, 0, -1, 10 ** 6, -10 ** 6]) + info.zero_point, -128, 127)
    assert q[0, 0, :6, 0].tolist() == expected.tolist()
    assert np.allclose(gnet.dequantize(network, q, gnet.INPUT)[0, 0, 0, 0], (expected[0] - info.zero_point)
                       * info.scale)


def test_network_validation():
    network, _ = _random_network(0)
    layers = list(network.layers)
    with pytest.raises(ValueError, match="reads 'missing' before it is written"):
        gnet.Network(layers=(gnet.Flatten(name="f", input="missing", output="f"),), tensors=network.tensors,
                     output="f", config=network.config)
    with pytest.raises(ValueError, match="a channel shift exceeds 3"):
        gnet.Network(layers=tuple(layers), tensors=network.tensors, output="fc6", config=NPUConfig(shift_bits=2))
    with pytest.raises(ValueError, match="weights must lie in"):
        gnet.FullyConnected(name="fc", input="input", output="fc", weights=np.full((2, 3), -128), bias=np.zeros(2, int),
                            multiplier=1 << 30, shift=0, channel_shift=np.zeros(2, int), weight_scale=np.ones(2))
    with pytest.raises(ValueError, match="input must be"):
        gnet.run(network, np.zeros((1, 6, 7, 4), np.int8))


# -- float path: the quantized network against onnxruntime on the original model ---------------------------------------

@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "models", "fmnist_mobilenet.onnx")),
                    reason="the reference model is not in this checkout")
def test_reference_model_integer_against_float():
    from tools.quantizer import calibrate as cal
    from tools.quantizer.build import build_network
    from tools.quantizer.datasets import load_dataset
    from tools.quantizer.evaluate import classification_metrics, evaluate, float_logits
    from tools.quantizer.frontend import load_graph
    path = os.path.join(ROOT, "models", "fmnist_mobilenet.onnx")
    graph = load_graph(path)
    data = load_dataset(graph, progress=False)
    ranges = cal.calibrate(graph, data.images[:200], progress=False)
    images, labels = data.images[200:600], data.labels[200:600]
    reference = float_logits(path, images, progress=False)
    for method, sqnr in (("wess", 24.0), ("channel", 25.0), ("layer", 20.0)):
        network, _ = build_network(graph, ranges, method=method, input_range=data.input_range)
        metrics = classification_metrics(evaluate(network, images, progress=False), labels, reference)
        assert metrics["logit_sqnr_db"] > sqnr and metrics["agreement"] > 97.0, (method, metrics)


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "models", "fmnist_mobilenet.onnx")),
                    reason="the reference model is not in this checkout")
def test_two_bit_reference_model_integer_against_fake_quantized_float():
    # Two-bit weights change the function a lot (docs/two_bit.md section 9); the integer network must still be the
    # float model with its weights replaced by the two-bit levels times the scales (onnxruntime on the IR).
    from tools.quantizer import calibrate as cal
    from tools.quantizer import frontend as ir
    from tools.quantizer.build import build_network
    from tools.quantizer.datasets import load_dataset
    from tools.quantizer.evaluate import classification_metrics, evaluate
    from tools.quantizer.weights import quantize_weights
    graph = ir.load_graph(os.path.join(ROOT, "models", "fmnist_mobilenet.onnx"))
    data = load_dataset(graph, progress=False)
    ranges = cal.calibrate(graph, data.images[:100], progress=False)
    images, labels = data.images[100:300], data.labels[100:300]
    weighted = [n for n in graph.nodes if isinstance(n, (ir.Conv, ir.FullyConnected))]
    for method, quantizer, first_last in (("wess", "uq", None), ("layer", "msptq", None), ("wess", "sptq", 8)):
        network, _ = build_network(graph, ranges, method=method, weight_bits=2, weight_quantizer=quantizer,
                                   first_last_bits=first_last, input_range=data.input_range)
        nodes = []
        for node in graph.nodes:
            if node in weighted:
                end = first_last is not None and node in (weighted[0], weighted[-1])
                wq = quantize_weights(node.weights, method=method, bits=8 if end else 2,
                                      quantizer="uniform" if end else quantizer)
                node = dataclasses.replace(node, weights=wq.dequantized().astype(np.float32))
            nodes.append(node)
        fake = dataclasses.replace(graph, nodes=tuple(nodes))
        reference = cal.session(fake.to_onnx(expose_all=False)).run(None, {fake.input: images})[0]
        metrics = classification_metrics(evaluate(network, images, progress=False), labels, reference)
        # Measured: 31.6 dB / 100 %, 31.6 dB / 98 %, 20.2 dB / 94 % (int8 activations on ranges of the float model).
        assert metrics["logit_sqnr_db"] > 18.0 and metrics["agreement"] > 90.0, (method, quantizer, metrics)


def test_spatial_flatten_into_fully_connected_matches_float():
    # ONNX flattens NCHW (c, h, w); the NPU flattens NHWC (h, w, c): the quantizer must permute the FC weights.
    from onnx import TensorProto, helper, numpy_helper
    from tools.quantizer import calibrate as cal
    from tools.quantizer.build import build_network
    from tools.quantizer.evaluate import evaluate, float_logits
    from tools.quantizer.frontend import load_graph
    from tools.quantizer.weights import sqnr_db
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, 6 * 3 * 3)).astype(np.float32) * 0.2, "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.standard_normal((64, 3, 6, 6)).astype(np.float32)
    ir = load_graph(model)
    network, _ = build_network(ir, cal.calibrate(ir, x, progress=False), method="wess")
    assert sqnr_db(float_logits(model, x, progress=False),
                   evaluate(network, x, progress=False)) > 25


def _host_layer_network(seed):
    """conv0 -> max pool -> HardSwish and LeakyReLU tables -> concat -> global pool -> logistic gate -> SE mul."""
    rng = np.random.default_rng(seed)
    q = gnet.Tensor(shape=(3, 3, 4), scale=0.05, zero_point=-3)
    tensors = {gnet.INPUT: gnet.Tensor(shape=(6, 5, 2), scale=0.02, zero_point=4),
               "conv0": gnet.Tensor(shape=(6, 5, 4), scale=0.1, zero_point=-20)}
    multiplier, shift = quantize_multiplier(float(np.float32(0.02)) * float(np.float32(0.01)) / float(np.float32(0.1)))
    layers = [gnet.Conv2D(name="conv0", input=gnet.INPUT, output="conv0", weights=rng.integers(-127, 128, (4, 1, 1, 2)),
                          bias=rng.integers(-500, 500, 4), multiplier=multiplier, shift=shift,
                          channel_shift=np.zeros(4, np.int64), weight_scale=np.full(4, 0.01)),
              gnet.MaxPool(name="max1", input="conv0", output="max1", kernel=(3, 3), stride=(2, 2),
                           padding=(1, 1, 1, 1))]
    tensors["max1"] = gnet.Tensor(shape=(3, 3, 4), scale=0.1, zero_point=-20)
    for name, function, alpha in (("act2", "hard_swish", None), ("act3", "leaky_relu", 0.1)):
        layers.append(gnet.Activation(name=name, input="max1", output=name, function=function, alpha=alpha,
                                      table=activation_table(function, 0.1, -20, q.scale, q.zero_point, alpha=alpha)))
        tensors[name] = q
    layers.append(gnet.Concat(name="cat4", inputs=("act2", "act3"), output="cat4"))
    tensors["cat4"] = gnet.Tensor(shape=(3, 3, 8), scale=q.scale, zero_point=q.zero_point)
    layers.append(gnet.AveragePool(name="gap5", input="cat4", output="gap5"))
    tensors["gap5"] = gnet.Tensor(shape=(1, 1, 8), scale=q.scale, zero_point=q.zero_point)
    layers.append(gnet.Activation(name="gate6", input="gap5", output="gate6", function="logistic",
                                  table=activation_table("logistic", q.scale, q.zero_point, 1 / 256, -128)))
    tensors["gate6"] = gnet.Tensor(shape=(1, 1, 8), scale=1 / 256, zero_point=-128)
    out = gnet.Tensor(shape=(3, 3, 8), scale=0.04, zero_point=1)
    layers.append(gnet.Mul(name="mul7", inputs=("cat4", "gate6"), output="mul7",
                           params=mul_params(q.scale, q.zero_point, 1 / 256, -128, out.scale, out.zero_point)))
    tensors["mul7"] = out
    network = gnet.Network(layers=tuple(layers), tensors=tensors, output="mul7", config=NPUConfig(shift_bits=4))
    x = rng.integers(-128, 128, (2, 6, 5, 2))
    return network, x


def test_host_layers_run_save_load_and_place(tmp_path):
    network, x = _host_layer_network(3)
    output, trace = gnet.run(network, x, keep=True)
    t = trace.tensors
    np.testing.assert_array_equal(t["max1"], max_pool2d(t["conv0"], (3, 3), stride=(2, 2), padding=(1, 1, 1, 1)))
    np.testing.assert_array_equal(t["act2"], lookup(t["max1"], network.layer("act2").table))
    np.testing.assert_array_equal(t["cat4"][..., 4:], t["act3"])
    np.testing.assert_array_equal(output, mul(t["cat4"], t["gate6"], network.layer("mul7").params))
    assert len(np.unique(output)) > 10                               # the gate and the products are not degenerate
    gnet.save(network, tmp_path)
    loaded = gnet.load(tmp_path)
    assert [layer.kind for layer in loaded.layers] == ["conv", "max_pool", "activation", "activation", "concat",
                                                       "average_pool", "activation", "mul"]
    assert loaded.layer("act3").alpha == 0.1 and loaded.layer("mul7").params == network.layer("mul7").params
    np.testing.assert_array_equal(gnet.run(loaded, x), output)
    plan = plan_network(network, NPUConfig())
    # the gate's table is fused into the pool (its only reader), whose output is then never stored
    assert [entry["name"] for entry in plan["host_layers"]] == ["act2", "act3", "cat4", "mul7"]
    assert [[a.name for a in entry["activations"]] for entry in plan["layers"] if entry["activations"]] == [["gate6"]]
    assert set(plan["tensors"]) == set(network.tensors) - {"gap5"}
