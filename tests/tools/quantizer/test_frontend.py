"""tools/quantizer/frontend.py: supported graphs import faithfully, batch norm folds away, unsupported ones are refused
early."""

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.quantizer import calibrate as cal
from tools.quantizer.frontend import Activation, Add, Conv, Flatten, FullyConnected, Pool, UnsupportedModelError, \
    fold_batch_norm, load_graph
from tools.quantizer.build import build_network

ROOT = str(Path(__file__).resolve().parents[3])
MODELS = os.path.join(ROOT, "models")


class _Builder:
    """A small ONNX graph under construction: nodes, initializers, fresh names."""

    def __init__(self, seed=0, opset=17):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.initializers, self.opset = [], [], opset
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, array, prefix="c"):
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, **attributes):
        output = self.name(op.lower() + "_out")
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.name(op), **attributes))
        return output

    def conv(self, x, cin, cout, *, kernel=3, stride=1, groups=1, bias=False, pads=None):
        weights = self.rng.standard_normal((cout, cin // groups, kernel, kernel)) * 0.3
        inputs = [x, self.const(weights, "W")] + ([self.const(self.rng.standard_normal(cout) * 0.1, "B")]
                                                  if bias else [])
        pad = kernel // 2 if pads is None else pads
        return self.node("Conv", inputs, kernel_shape=[kernel, kernel], strides=[stride, stride], group=groups,
                         pads=[pad] * 4 if isinstance(pad, int) else pad)

    def batch_norm(self, x, channels):
        gamma = self.rng.uniform(0.2, 3.0, channels)
        beta = self.rng.standard_normal(channels) * 0.2
        mean = self.rng.standard_normal(channels) * 0.1
        var = self.rng.uniform(0.01, 2.0, channels)
        return self.node("BatchNormalization", [x] + [self.const(a, "bn") for a in (gamma, beta, mean, var)],
                         epsilon=1e-5)

    def relu6(self, x):
        return self.node("Clip", [x, self.const(0.0, "min"), self.const(6.0, "max")])

    def model(self, x_shape, output, inputs="x"):
        graph = helper.make_graph(self.nodes, "test", [helper.make_tensor_value_info(inputs, TensorProto.FLOAT,
                                                                                      ["N", *x_shape])],
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model


def _mobilenet_block(b, x):
    # stem conv /2 + BN + ReLU6; depthwise + BN + ReLU; 1x1 + BN (linear); residual Add; 1x1 + BN + ReLU6;
    # global average pool; flatten; Gemm.
    h = b.relu6(b.batch_norm(b.conv(x, 3, 8, stride=2), 8))
    d = b.node("Relu", [b.batch_norm(b.conv(h, 8, 8, groups=8), 8)])
    p = b.batch_norm(b.conv(d, 8, 8, kernel=1), 8)
    r = b.node("Add", [h, p])
    e = b.relu6(b.batch_norm(b.conv(r, 8, 16, kernel=1), 16))
    g = b.node("GlobalAveragePool", [e])
    f = b.node("Flatten", [g], axis=1)
    return b.node("Gemm", [f, b.const(b.rng.standard_normal((5, 16)) * 0.3, "fc"),
                           b.const(b.rng.standard_normal(5) * 0.1, "fcb")], transB=1)


def _folded(model):
    """The same model with every Conv + BatchNormalization folded by :func:`fold_batch_norm` (an exporter's job)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes, replaced = list(model.graph.node), {}
    out = []
    for node in nodes:
        if node.op_type == "BatchNormalization":
            conv = next(n for n in out if n.output[0] == node.input[0])
            weights = values[conv.input[1]]
            bias = values[conv.input[2]] if len(conv.input) > 2 else np.zeros(weights.shape[0], np.float32)
            w, b = fold_batch_norm(weights, bias, *(values[name] for name in node.input[1:5]), 1e-5)
            new_w, new_b = conv.input[1] + "_folded", conv.input[1] + "_folded_bias"
            model.graph.initializer.extend([numpy_helper.from_array(w, new_w), numpy_helper.from_array(b, new_b)])
            del conv.input[1:]
            conv.input.extend([new_w, new_b])
            conv.output[0] = node.output[0]
            continue
        out.append(node)
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def _images(count=6, shape=(3, 16, 16), seed=1):
    return np.random.default_rng(seed).standard_normal((count,) + shape).astype(np.float32)


def test_mobilenet_block_imports_and_matches_onnxruntime():
    b = _Builder()
    model = b.model((3, 16, 16), _mobilenet_block(b, "x"))
    graph = load_graph(model)
    kinds = [(type(n).__name__, getattr(n, "activation", None)) for n in graph.nodes]
    assert kinds == [("Conv", "relu6"), ("Conv", "relu"), ("Conv", None), ("Add", None), ("Conv", "relu6"),
                     ("Pool", None), ("Flatten", None), ("FullyConnected", None)]
    assert graph.nodes[1].depthwise and not graph.nodes[0].depthwise
    assert graph.shapes[graph.nodes[0].output] == (8, 8, 8) and graph.shapes[graph.output] == (5,)
    x = _images()
    expected = _run(model, x)[0]
    ir_outputs = _run(graph.to_onnx(), x)
    assert len(ir_outputs) == len(graph.nodes)
    np.testing.assert_allclose(ir_outputs[-1], expected, rtol=1e-4, atol=1e-5)


def test_folded_and_unfolded_give_identical_ir_and_network():
    b = _Builder(3)
    model = b.model((3, 16, 16), _mobilenet_block(b, "x"))
    folded = _folded(model)
    assert not any(n.op_type == "BatchNormalization" for n in folded.graph.node)
    a, f = load_graph(model), load_graph(folded)
    for node_a, node_f in zip(a.nodes, f.nodes):
        if isinstance(node_a, (Conv, FullyConnected)):
            assert np.array_equal(node_a.weights, node_f.weights) and np.array_equal(node_a.bias, node_f.bias)
    x = _images(8)
    ranges_a, ranges_f = cal.calibrate(a, x, progress=False), cal.calibrate(f, x, progress=False)
    assert list(ranges_a.values()) == list(ranges_f.values())
    for method in ("layer", "channel", "wess", "wess-mse"):
        net_a, _ = build_network(a, ranges_a, method=method)
        net_f, _ = build_network(f, ranges_f, method=method)
        _assert_same_network(net_a, net_f)


def _assert_same_network(net_a, net_f):
    assert net_a.tensors == net_f.tensors
    for layer_a, layer_f in zip(net_a.layers, net_f.layers):
        assert type(layer_a) is type(layer_f)
        for field in ("weights", "bias", "multiplier", "shift", "channel_shift", "qmin", "qmax", "params"):
            if hasattr(layer_a, field):
                assert np.array_equal(getattr(layer_a, field), getattr(layer_f, field)) or \
                    getattr(layer_a, field) == getattr(layer_f, field), (layer_a.name, field)


@pytest.mark.skipif(not os.path.exists(os.path.join(MODELS, "fmnist_mobilenet_folded.onnx")),
                    reason="the reference models are not in this checkout")
def test_committed_reference_models_folded_and_unfolded_give_identical_integers():
    # The folded export was folded by torch's exporter in float32; the importer folds in float64: the float weights
    # differ by round-off (~1e-7), the quantized network must not (tools/quantizer/weights.py, snap_scale).
    from tools.quantizer.datasets import load_dataset
    a = load_graph(os.path.join(MODELS, "fmnist_mobilenet.onnx"))
    f = load_graph(os.path.join(MODELS, "fmnist_mobilenet_folded.onnx"))
    assert sum(isinstance(n, Conv) for n in a.nodes) == sum(isinstance(n, Conv) for n in f.nodes) == 13
    data = load_dataset(a, progress=False)
    images = data.images[:500]
    ranges_a = cal.calibrate(a, images, progress=False)
    ranges_f = cal.calibrate(f, images, progress=False)
    for method in ("layer", "channel", "wess", "wess-mse"):
        net_a, _ = build_network(a, ranges_a, method=method, input_range=data.input_range)
        net_f, _ = build_network(f, ranges_f, method=method, input_range=data.input_range)
        _assert_same_network(net_a, net_f)


def test_matmul_add_reshape_identity_dropout_averagepool():
    b = _Builder(5)
    c = b.conv("x", 3, 4, kernel=3, bias=True)
    c = b.node("Identity", [c])
    r = b.node("Relu", [c])
    p = b.node("AveragePool", [r], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    d = b.node("Dropout", [p])
    s = b.node("Reshape", [d, b.const(np.array([0, -1]), "shape")])
    b.initializers[-1] = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), b.initializers[-1].name)
    m = b.node("MatMul", [s, b.const(b.rng.standard_normal((4 * 4 * 4, 6)), "mm")])
    out = b.node("Add", [m, b.const(b.rng.standard_normal(6), "mmb")])
    model = b.model((3, 8, 8), out)
    graph = load_graph(model)
    assert [type(n) for n in graph.nodes] == [Conv, Pool, Flatten, FullyConnected]
    assert graph.nodes[0].activation == "relu" and graph.nodes[1].kernel == (3, 3)
    assert graph.nodes[1].padding == (1, 1, 1, 1)
    x = _images(4, (3, 8, 8))
    np.testing.assert_allclose(_run(graph.to_onnx(), x)[-1], _run(model, x)[0], rtol=1e-4, atol=1e-5)


def test_clip_as_attributes_and_same_padding():
    b = _Builder(6, opset=10)
    weights = b.const(b.rng.standard_normal((4, 3, 3, 3)), "W")
    c = b.node("Conv", ["x", weights], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    out = b.node("Clip", [c], min=0.0, max=6.0)
    model = b.model((3, 9, 9), out)
    graph = load_graph(model)
    assert graph.nodes[0].activation == "relu6" and graph.nodes[0].padding == (1, 1, 1, 1)
    assert graph.shapes[graph.output] == (4, 5, 5)
    x = _images(2, (3, 9, 9))
    np.testing.assert_allclose(_run(graph.to_onnx(), x)[-1], _run(model, x)[0], rtol=1e-4, atol=1e-5)


def test_grouped_conv():
    b = _Builder(7)
    out = b.conv("x", 4, 6, groups=2, bias=True)
    graph = load_graph(b.model((4, 6, 6), out))
    assert graph.nodes[0].groups == 2 and not graph.nodes[0].depthwise


def test_unsupported_op_is_refused_before_any_work():
    # The structure is broken early (BatchNormalization after a Relu) and an unsupported op sits at the end: the op
    # check runs over every node first, so the error names the Softsign.
    b = _Builder()
    r = b.node("Relu", [b.conv("x", 3, 4)])
    bn = b.batch_norm(r, 4)
    out = b.node("Softsign", [bn])
    with pytest.raises(UnsupportedModelError, match=r"^unsupported op Softsign \(node 'Softsign\d+'\): the quantizer "
                                                    r"imports Conv, .*docs/quantizer.md lists the supported layers\)$"):
        load_graph(b.model((3, 8, 8), out))
    with pytest.raises(UnsupportedModelError, match="BatchNormalization must directly follow a Conv"):
        b.nodes.pop()
        load_graph(b.model((3, 8, 8), bn))


@pytest.mark.parametrize("op, attributes, match", [
    ("Conv", dict(dilations=[2, 2]), r"unsupported Conv attribute dilations=\(2, 2\) \(node 'Conv\d+'\)"),
    ("AveragePool", dict(count_include_pad=1, pads=[1, 1, 1, 1]),
     "unsupported AveragePool attribute count_include_pad=1"),
    ("Conv", dict(foo=1), r"unsupported attribute 'foo' of Conv"),
])
def test_unsupported_attributes(op, attributes, match):
    b = _Builder()
    if op == "Conv":
        out = b.node("Conv", ["x", b.const(np.ones((2, 3, 3, 3)), "W")], kernel_shape=[3, 3], **attributes)
    else:
        out = b.node("AveragePool", ["x"], kernel_shape=[2, 2], **attributes)
    with pytest.raises(UnsupportedModelError, match=match):
        load_graph(b.model((3, 8, 8), out))


def test_unsupported_clip_bounds():
    b = _Builder()
    out = b.node("Clip", [b.conv("x", 3, 4), b.const(-1.0), b.const(1.0)])
    with pytest.raises(UnsupportedModelError, match=r"unsupported Clip bounds min=-1.0, max=1.0"):
        load_graph(b.model((3, 8, 8), out))


def test_nan_weights_and_bad_files(tmp_path):
    b = _Builder()
    weights = np.ones((2, 3, 3, 3))
    weights[1, 0, 0, 0] = np.nan
    out = b.node("Conv", ["x", b.const(weights, "W")], kernel_shape=[3, 3])
    with pytest.raises(UnsupportedModelError, match=r"initializer 'W\d+' holds NaN or infinite values"):
        load_graph(b.model((3, 8, 8), out))
    with pytest.raises(UnsupportedModelError, match="does not exist"):
        load_graph(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \xff\xfe")
    with pytest.raises(UnsupportedModelError, match="is not an ONNX model"):
        load_graph(junk)


def test_dynamic_spatial_input_is_refused():
    b = _Builder()
    out = b.conv("x", 3, 4)
    graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], b.initializers)
    with pytest.raises(UnsupportedModelError, match="must be NCHW with fixed C, H, W"):
        load_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_imagenet_mobilenet_v2_imports():
    path = os.path.join(ROOT, "..", "shared", "models", "mobilenet_v2_imagenet.onnx")
    if not os.path.exists(path):
        pytest.skip("the shared ImageNet model is not on this machine")
    graph = load_graph(path)
    convs = [n for n in graph.nodes if isinstance(n, Conv)]
    assert len(convs) == 52 and sum(n.depthwise for n in convs) == 17
    assert sum(isinstance(n, Add) for n in graph.nodes) == 10
    assert sum(n.activation == "relu6" for n in convs) == 35


# --- MaxPool, activation tables, HardSigmoid folding, Concat, Mul -----------------------------------------------------

def _float_outputs(model, graph, x):
    """The original ONNX model's output and the IR's (re-exported) on ``x``, both by onnxruntime."""
    original = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    ir = ort.InferenceSession(graph.to_onnx(expose_all=False).SerializeToString()).run(None, {"x": x})[0]
    return original, ir


def test_new_layers_import_and_keep_the_float_function():
    b = _Builder(11)
    stem = b.conv("x", 3, 4, bias=True)
    pooled = b.node("MaxPool", [stem], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    swish = b.node("Mul", [pooled, b.node("HardSigmoid", [pooled], alpha=1 / 6, beta=0.5)])   # legacy HardSwish
    leaky = b.node("LeakyRelu", [b.conv(swish, 4, 4)], alpha=0.2)
    joined = b.node("Concat", [leaky, b.node("Tanh", [b.conv(swish, 4, 2)])], axis=1)
    gate = b.node("HardSigmoid", [b.conv(b.node("GlobalAveragePool", [joined]), 6, 6, kernel=1, bias=True)],
                  alpha=0.2, beta=0.5)
    out = b.node("Mul", [gate, joined])                                   # the gate first: the importer swaps them
    out = b.node("Sigmoid", [out])
    model = b.model((3, 9, 9), out)
    graph = load_graph(model)
    kinds = [type(node).__name__ for node in graph.nodes]
    assert kinds == ["Conv", "MaxPool", "Activation", "Conv", "Activation", "Conv", "Activation", "Concat", "Pool",
                     "Conv", "Mul", "Activation"]
    assert [node.function for node in graph.nodes if type(node).__name__ == "Activation"] == \
        ["hard_swish", "leaky_relu", "tanh", "logistic"]
    assert graph.nodes[9].activation == "hard_sigmoid" and graph.shapes[graph.nodes[1].output] == (4, 5, 5)
    assert graph.nodes[10].inputs == (graph.nodes[7].output, graph.nodes[9].output)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    original, ir = _float_outputs(model, graph, x)
    np.testing.assert_allclose(ir, original, rtol=1e-5, atol=1e-6)


def test_relu_after_a_max_pool_moves_to_the_pool_producer():
    """``relu(max_pool2d(conv(x), 2))`` (PyTorch's MNIST example): the ReLU (or a ReLU6 after a ReLU) fuses into the
    conv before the pool, the same float function."""
    b = _Builder(5)
    first = b.node("Relu", [b.node("MaxPool", [b.conv("x", 3, 4, bias=True)], kernel_shape=[2, 2], strides=[2, 2])])
    relu = b.node("Relu", [b.conv(first, 4, 4, bias=True)])
    pooled = b.node("MaxPool", [relu], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    out = b.node("Clip", [pooled, b.const(np.float32(0)), b.const(np.float32(6))])
    model = b.model((3, 8, 8), out)
    graph = load_graph(model)
    assert [(type(node).__name__, getattr(node, "activation", None)) for node in graph.nodes] == [
        ("Conv", "relu"), ("MaxPool", None), ("Conv", "relu6"), ("MaxPool", None)]
    x = 4 * np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    original, ir = _float_outputs(model, graph, x)
    assert (original == 6).any() and (original < 6).any()
    np.testing.assert_allclose(ir, original, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, functions", [
    (lambda b: b.node("Relu", [b.node("MaxPool", ["x"], kernel_shape=[2, 2])]), ["relu"]),
    (lambda b: b.node("Relu", [b.node("MaxPool", [b.node("Tanh", [b.conv("x", 3, 3)])], kernel_shape=[2, 2])]),
     ["tanh", "relu"]),
    (lambda b: b.node("Clip", [b.node("Sigmoid", [b.conv("x", 3, 3)]), b.const(np.float32(0)),
                               b.const(np.float32(6))]), ["logistic", "relu6"]),
    (lambda b: b.node("Relu", [b.node("AveragePool", [b.conv("x", 3, 3)], kernel_shape=[2, 2])]), ["relu"]),
    (lambda b: b.node("Relu", [b.node("Concat", [b.conv("x", 3, 3), b.conv("x", 3, 5)], axis=1)]), ["relu"]),
    (lambda b: b.node("Add", [b.node("Relu", [conv := b.conv("x", 3, 3)]), conv]), ["relu"]),
])
def test_relu_with_nothing_to_fuse_into_is_a_table_layer(make, functions):
    """A Relu / Clip after a table activation, a pool, a Concat, or on a tensor that others read too: a ``relu`` /
    ``relu6`` table layer of its own, computing what onnxruntime computes on the original model."""
    b = _Builder(3)
    model = b.model((3, 8, 8), make(b))
    graph = load_graph(model)
    assert [node.function for node in graph.nodes if isinstance(node, Activation)] == functions
    x = 4 * np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    original, ir = _float_outputs(model, graph, x)
    np.testing.assert_allclose(ir, original, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size, kernel, stride, pads, out, after", [
    (7, 2, 2, 0, 4, 1),        # torch.nn.MaxPool2d(2, ceil_mode=True) on an odd map: one more window
    (8, 3, 2, 1, 5, 2),        # 3x3/2 padding 1 (a ResNet stem written with ceil_mode)
    (6, 2, 2, 0, 3, 0),        # the stride divides the input: ceil_mode changes nothing
    (5, 2, 3, 1, 2, 1),        # a last window that would start in the padding after the input is dropped
])
def test_max_pool_ceil_mode_is_padding(size, kernel, stride, pads, out, after):
    """``ceil_mode=1`` imports as padding after the input (padded taps never win a max), giving onnxruntime's output
    shape and values on the original model."""
    b = _Builder(3)
    model = b.model((3, size, size), b.node("MaxPool", [b.conv("x", 3, 3)], kernel_shape=[kernel] * 2,
                                             strides=[stride] * 2, pads=[pads] * 4, ceil_mode=1))
    graph = load_graph(model)
    pool = graph.nodes[-1]
    assert pool.padding == (pads, after, pads, after) and graph.shapes[pool.output] == (3, out, out)
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    original, ir = _float_outputs(model, graph, x)
    assert original.shape == (2, 3, out, out)
    np.testing.assert_allclose(ir, original, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda b: b.node("HardSigmoid", ["x"]), "HardSigmoid is supported with alpha > 0 directly after a Conv"),
    (lambda b: b.node("Mul", [b.conv("x", 3, 3), b.const(np.ones((1, 3, 1, 1)))]), "Mul by a constant"),
    (lambda b: b.node("Mul", [b.conv("x", 3, 3), b.node("GlobalAveragePool", [b.conv("x", 3, 1)])]),
     r"Mul of shapes \(3, 8, 8\) and \(1, 1, 1\)"),
    (lambda b: b.node("Concat", [b.conv("x", 3, 3), b.conv("x", 3, 3, stride=2)], axis=1), "Concat joins two or more"),
    (lambda b: b.node("AveragePool", ["x"], kernel_shape=[2, 2], ceil_mode=1), "AveragePool attribute ceil_mode=1"),
    (lambda b: b.node("Concat", [b.conv("x", 3, 3), b.conv("x", 3, 3)], axis=2), "Concat attribute axis=2"),
])
def test_new_layers_refused_in_one_line(make, message):
    b = _Builder(3)
    out = make(b)
    with pytest.raises(UnsupportedModelError, match=message) as error:
        load_graph(b.model((3, 8, 8), out))
    assert "\n" not in str(error.value)
