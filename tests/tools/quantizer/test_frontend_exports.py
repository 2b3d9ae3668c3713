"""Every export form of the supported layers imports to the same IR and the same integers (tools/quantizer/normalize.py
and frontend.py), and what stays unsupported is refused in one line that says what to do.

The fixtures (tests/fixtures/onnx, written by tools/make_onnx_fixtures.py) are the reference architecture exported by
torch's legacy and dynamo exporters; the small graphs below are built with onnx.helper, one per form, so that no test
needs torch and each normalisation pass is exercised on its own.
"""

import dataclasses
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.quantizer import normalize
from tools.quantizer.build import build_network
from tools.quantizer.calibrate import activation_quantization, calibrate
from tools.quantizer.evaluate import float_logits
from golden.network import quantize_input
from tools.quantizer.frontend import (Activation, Concat, Conv, Flatten, FullyConnected, Pool, UnsupportedModelError,
                                      load_graph)
from tools.quantizer.pipeline import DEFAULT_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "onnx")
FORMS = sorted(name for name in os.listdir(FIXTURES) if name.endswith(".onnx"))   # the reference architecture


def _images(count, shape, seed=0):
    return np.random.default_rng(seed).standard_normal((count,) + shape).astype(np.float32)


def _assert_same_ir(a, b):
    """Same node kinds, attributes and float weights (bit for bit), same shapes; tensor names may differ."""
    assert [type(node) for node in a.nodes] == [type(node) for node in b.nodes]
    for x, y in zip(a.nodes, b.nodes):
        for field in dataclasses.fields(x):
            if field.name not in ("name", "input", "inputs", "output"):
                left, right = getattr(x, field.name), getattr(y, field.name)
                assert np.array_equal(left, right) if isinstance(left, np.ndarray) else left == right, field.name
    assert [a.shapes[node.output] for node in a.nodes] == [b.shapes[node.output] for node in b.nodes]


def _assert_same_network(a, b):
    """Same integers everywhere (weights, biases, multipliers, shifts, k_c, zero points, scales); ``source`` (the ONNX
    node name) may differ."""
    assert a.tensors == b.tensors and a.output == b.output and a.config == b.config
    assert [type(layer) for layer in a.layers] == [type(layer) for layer in b.layers]
    for x, y in zip(a.layers, b.layers):
        for field in dataclasses.fields(x):
            if field.name != "source":
                left, right = getattr(x, field.name), getattr(y, field.name)
                same = np.array_equal(left, right) if isinstance(left, np.ndarray) else left == right
                assert same, (x.name, field.name)


@pytest.fixture(scope="module")
def canonical():
    """The committed model's IR, its calibration on fixed images and its integer network."""
    graph = load_graph(DEFAULT_MODEL)
    images = _images(24, (1, 28, 28))
    ranges = calibrate(graph, images, progress=False)
    network, _ = build_network(graph, ranges, method="wess", input_range=(-2.0, 3.0))
    return graph, images, network


def _quantize(path, images):
    graph = load_graph(path)
    network, _ = build_network(graph, calibrate(graph, images, progress=False), method="wess",
                               input_range=(-2.0, 3.0))
    return graph, network


def test_fixtures_cover_the_forms():
    ops = {}
    for name in FORMS:
        model = onnx.load(os.path.join(FIXTURES, name), load_external_data=False)
        batch = model.graph.input[0].type.tensor_type.shape.dim[0]
        ops[name] = ({node.op_type for node in model.graph.node}, model.opset_import[0].version,
                     batch.dim_value if batch.HasField("dim_value") else "dynamic")
    every = set.union(*(o for o, _, _ in ops.values()))
    assert {"GlobalAveragePool", "AveragePool", "ReduceMean", "Flatten", "Reshape", "Squeeze", "Shape", "Gemm",
            "MatMul", "Constant"} <= every
    assert {opset for _, opset, _ in ops.values()} >= {13, 18, 21}
    assert {batch for _, _, batch in ops.values()} == {1, "dynamic"}
    assert any(name.startswith("dynamo") for name in FORMS) and any(name.startswith("legacy") for name in FORMS)


@pytest.mark.parametrize("name", FORMS)
def test_every_export_form_gives_the_same_integers(name, canonical, tmp_path):
    graph, images, network = canonical
    path = os.path.join(FIXTURES, name)
    form_graph, form_network = _quantize(path, images)
    _assert_same_ir(graph, form_graph)
    _assert_same_network(network, form_network)
    # The same model with its weights inline.
    inline = tmp_path / "inline.onnx"
    onnx.save(onnx.load(path), inline)
    assert os.listdir(tmp_path) == ["inline.onnx"]
    _assert_same_network(network, _quantize(inline, images)[1])
    # The float reference runs on a static batch 1 as on a dynamic batch, an odd count of images included.
    np.testing.assert_allclose(float_logits(path, images[:7], batch_size=4, progress=False),
                               float_logits(DEFAULT_MODEL, images[:7], batch_size=4, progress=False), atol=1e-4)


# --- one small graph per form ---------------------------------------------------------------------------------------

def _model(nodes, initializers, output, *, opset=13, batch="N", shape=(3, 4, 4)):
    """x ``[batch, *shape]`` -> Conv 1x1 (``conv_out``, 5 channels) -> ``nodes`` -> ``output``."""
    rng = np.random.default_rng(7)
    conv = [helper.make_node("Conv", ["x", "cw", "cb"], ["conv_out"], name="conv", kernel_shape=[1, 1])]
    tensors = [numpy_helper.from_array(rng.standard_normal((5, shape[0], 1, 1)).astype(np.float32), "cw"),
               numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "cb")]
    tensors += [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers.items()]
    graph = helper.make_graph(conv + nodes, "form", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                   [batch, *shape])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], tensors)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


_FC = {"fw": np.random.default_rng(3).standard_normal((5, 2)).astype(np.float32),
       "fb": np.random.default_rng(4).standard_normal(2).astype(np.float32)}
_GEMM = helper.make_node("Gemm", ["flat", "fw", "fb"], ["y"], name="fc")


def _head(pool_nodes, flatten_nodes=(), extra=None, **kwargs):
    """conv -> pool nodes (-> ``pooled``) -> flatten nodes (-> ``flat``) -> Gemm."""
    return _model(list(pool_nodes) + list(flatten_nodes) + [_GEMM], dict(_FC, **(extra or {})), "y", **kwargs)


_GLOBAL = [helper.make_node("GlobalAveragePool", ["conv_out"], ["pooled"], name="pool")]
_FLATTEN = [helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1)]

# name -> (model, the pass it needs)
FORMS_BY_PASS = {
    "reduce_mean_axes_attribute_keepdims": (_head(
        [helper.make_node("ReduceMean", ["conv_out"], ["pooled"], name="pool", axes=[2, 3], keepdims=1)], _FLATTEN),
        normalize.reduce_mean_to_global_pool),
    "reduce_mean_axes_attribute_no_keepdims": (_head(
        [helper.make_node("ReduceMean", ["conv_out"], ["flat"], name="pool", axes=[-1, -2], keepdims=0)]),
        normalize.reduce_mean_to_global_pool),
    "reduce_mean_axes_input_keepdims_opset18": (_head(
        [helper.make_node("ReduceMean", ["conv_out", "axes"], ["pooled"], name="pool", keepdims=1)], _FLATTEN,
        {"axes": np.array([2, 3])}, opset=18), normalize.reduce_mean_to_global_pool),
    "reduce_mean_axes_input_no_keepdims_opset21": (_head(
        [helper.make_node("ReduceMean", ["conv_out", "axes"], ["flat"], name="pool", keepdims=0)], (),
        {"axes": np.array([3, -2])}, opset=21), normalize.reduce_mean_to_global_pool),
    "average_pool_whole_map": (_head(
        [helper.make_node("AveragePool", ["conv_out"], ["pooled"], name="pool", kernel_shape=[4, 4],
                          strides=[4, 4], pads=[0, 0, 0, 0], count_include_pad=1)], _FLATTEN),
        normalize.whole_map_average_pool_to_global),
    "squeeze_axes_input": (_head(_GLOBAL, [helper.make_node("Squeeze", ["pooled", "sq"], ["flat"], name="squeeze")],
                                 {"sq": np.array([2, 3])}), normalize.squeeze_to_flatten),
    "squeeze_w_then_h": (_head(_GLOBAL, [helper.make_node("Squeeze", ["pooled", "s3"], ["half"], name="squeeze3"),
                                         helper.make_node("Squeeze", ["half", "s2"], ["flat"], name="squeeze2")],
                               {"s3": np.array([3]), "s2": np.array([2])}), normalize.squeeze_to_flatten),
    "squeeze_h_then_w": (_head(_GLOBAL, [helper.make_node("Squeeze", ["pooled", "s2"], ["half"], name="squeeze2"),
                                         helper.make_node("Squeeze", ["half", "s_last"], ["flat"], name="squeeze3")],
                               {"s2": np.array([2]), "s_last": np.array([-1])}), normalize.squeeze_to_flatten),
    "reshape_minus_one": (_head(_GLOBAL, [helper.make_node("Reshape", ["pooled", "shape"], ["flat"], name="view")],
                                {"shape": np.array([-1, 5])}), normalize.reshape_to_flatten),
    "reshape_zero_opset14": (_head(_GLOBAL, [helper.make_node("Reshape", ["pooled", "shape"], ["flat"], name="view",
                                                              allowzero=0)],
                                   {"shape": np.array([0, -1])}, opset=14), normalize.reshape_to_flatten),
    "reshape_batch1_allowzero_static": (_head(_GLOBAL, [helper.make_node("Reshape", ["pooled", "shape"], ["flat"],
                                                                         name="view", allowzero=1)],
                                              {"shape": np.array([1, 5])}, opset=18, batch=1),
                                        normalize.reshape_to_flatten),
    "reshape_of_computed_shape": (_head(_GLOBAL, [
        helper.make_node("Shape", ["pooled"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero_axis"], ["batch_vector"], name="unsqueeze"),
        helper.make_node("Concat", ["batch_vector", "rest"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["pooled", "target"], ["flat"], name="view")],
        {"zero": np.array(0), "zero_axis": np.array([0]), "rest": np.array([-1])}),
        normalize.computed_shape_to_constant),
    "shape_as_constant_node": (_head(_GLOBAL, [
        helper.make_node("Constant", [], ["shape"], name="shape_constant",
                         value=numpy_helper.from_array(np.array([0, -1]))),
        helper.make_node("Reshape", ["pooled", "shape"], ["flat"], name="view")]), normalize.constants_to_initializers),
    "matmul_add": (_model(_GLOBAL + _FLATTEN + [helper.make_node("MatMul", ["flat", "mw"], ["mm"], name="fc"),
                                                helper.make_node("Add", ["mb", "mm"], ["y"], name="bias")],
                          {"mw": _FC["fw"], "mb": _FC["fb"].reshape(1, 2)}, "y"), normalize.matmul_add_to_gemm),
    "matmul_alone": (_model(_GLOBAL + _FLATTEN + [helper.make_node("MatMul", ["flat", "mw"], ["y"], name="fc")],
                            {"mw": _FC["fw"]}, "y"), normalize.matmul_add_to_gemm),
    "identity_and_dropout": (_head([helper.make_node("Identity", ["conv_out"], ["same"], name="identity"),
                                    helper.make_node("GlobalAveragePool", ["same"], ["pooled"], name="pool")],
                                   [helper.make_node("Dropout", ["pooled", "ratio", "training"], ["dropped", "mask"],
                                                     name="dropout"),
                                    helper.make_node("Flatten", ["dropped"], ["flat"], name="flatten", axis=1)],
                                   {"ratio": np.array(0.5, np.float32), "training": np.array(False)}),
                             normalize.drop_identity),
    "identity_writes_the_output": (_model(_GLOBAL + _FLATTEN + [
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], name="fc"),
        helper.make_node("Identity", ["logits"], ["y"], name="identity")], _FC, "y"), normalize.drop_identity),
}


@pytest.mark.parametrize("name", sorted(FORMS_BY_PASS))
def test_each_form_imports_exactly_and_needs_its_pass(name, monkeypatch):
    model, needed = FORMS_BY_PASS[name]
    graph = load_graph(model)
    assert [type(node) for node in graph.nodes] == [Conv, Pool, Flatten, FullyConnected]
    assert graph.nodes[1].kernel is None                       # every form of the global pool is the global pool
    static = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    x = _images(1 if static else 3, (3, 4, 4))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    ir = ort.InferenceSession(graph.to_onnx().SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(ir.run([graph.output], {graph.input: x})[0], expected, rtol=1e-5, atol=1e-6)
    # The normalised model itself computes what the original does (every rewrite is exact, up to float round-off).
    normalized = ort.InferenceSession(normalize.normalize(model).SerializeToString(),
                                      providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(normalized.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-6)
    # Without its pass the form is refused, or (an AveragePool over the whole map) not the global pool.
    monkeypatch.setattr(normalize, "PASSES", tuple(p for p in normalize.PASSES if p is not needed))
    try:
        without = load_graph(model)
    except UnsupportedModelError:
        return
    assert without.nodes[1].kernel is not None


def test_relu6_bounds_as_inputs_initializers_or_constant_nodes():
    bounds = [helper.make_node("Constant", [], ["low"], name="low", value_float=0.0),
              helper.make_node("Constant", [], ["high"], name="high",
                               value=numpy_helper.from_array(np.array(6.0, np.float32)))]
    for nodes, initializers in (([], {"low": np.array(0.0, np.float32), "high": np.array(6.0, np.float32)}),
                                (bounds, {})):
        model = _model(nodes + [helper.make_node("Clip", ["conv_out", "low", "high"], ["y"], name="relu6")],
                       initializers, "y")
        assert load_graph(model).nodes[0].activation == "relu6"
    only_min = _model([helper.make_node("Clip", ["conv_out", "low"], ["y"], name="relu")],
                      {"low": np.array(0.0, np.float32)}, "y")
    assert load_graph(only_min).nodes[0].activation == "relu"


def test_average_pool_count_include_pad_matters_only_with_padding():
    unpadded = _model([helper.make_node("AveragePool", ["conv_out"], ["y"], name="pool", kernel_shape=[2, 2],
                                        strides=[2, 2], count_include_pad=1)], {}, "y")
    graph = load_graph(unpadded)
    assert graph.nodes[1].kernel == (2, 2) and graph.shapes[graph.output] == (5, 2, 2)
    padded = _model([helper.make_node("AveragePool", ["conv_out"], ["y"], name="pool", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], count_include_pad=1)], {}, "y")
    with pytest.raises(UnsupportedModelError, match=r"^unsupported AveragePool attribute count_include_pad=1 "
                                                    r"\(node 'pool'\): must be 0$"):
        load_graph(padded)


def test_static_batch_model_float_reference_runs_every_image(tmp_path):
    model, _ = FORMS_BY_PASS["reshape_batch1_allowzero_static"]
    x = _images(5, (3, 4, 4))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"x": x[i:i + 1]})[0] for i in range(5)])
    np.testing.assert_allclose(float_logits(model, x, batch_size=2, progress=False), expected, rtol=1e-6)


# --- what stays unsupported: one line naming the op, the node and what to do -----------------------------------------

@pytest.mark.parametrize("nodes, initializers, match", [
    ([helper.make_node("ReduceMean", ["conv_out"], ["y"], name="channel_mean", axes=[1], keepdims=1)], {},
     r"^unsupported op ReduceMean \(node 'channel_mean'\): only a mean over H and W \(axes 2 and 3\) of an NCHW "
     r"tensor, a global average pool, is supported$"),
    ([helper.make_node("Squeeze", ["conv_out", "axes"], ["y"], name="squeeze")], {"axes": np.array([3])},
     r"^unsupported op Squeeze \(node 'squeeze'\): only squeezing H and W of an \[N, C, 1, 1\] tensor"),
    ([helper.make_node("Reshape", ["conv_out", "shape"], ["y"], name="view")], {"shape": np.array([0, 5, 16])},
     r"^unsupported op Reshape \(node 'view'\): only a flatten to \[N, C\*H\*W\] with a constant shape"),
    ([helper.make_node("MatMul", ["conv_out", "conv_out"], ["y"], name="gram")], {},
     r"^unsupported op MatMul \(node 'gram'\): only a flat \[N, K\] tensor times a constant 2-D matrix"),
    ([helper.make_node("Dropout", ["conv_out", "ratio", "training"], ["y"], name="dropout")],
     {"ratio": np.array(0.5, np.float32), "training": np.array(True)},
     r"^unsupported op Dropout \(node 'dropout'\): only inference-mode Dropout .*export the model in eval mode$"),
    ([helper.make_node("GlobalMaxPool", ["conv_out"], ["y"], name="stem_pool")], {},
     r"^unsupported op GlobalMaxPool \(node 'stem_pool'\): the quantizer imports Conv, .* replace it in the model "
     r"\(docs/quantizer.md lists the supported layers\)$"),
])
def test_unsupported_forms_are_refused_in_one_line(nodes, initializers, match):
    with pytest.raises(UnsupportedModelError, match=match) as error:
        load_graph(_model(nodes, initializers, "y", opset=13))
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_fixtures_are_what_the_generator_writes(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    from tools.make_onnx_fixtures import main
    assert main(["--out", str(tmp_path / "onnx")]) == 0
    names = sorted(os.path.relpath(os.path.join(folder, name), FIXTURES)
                   for folder, _, files in os.walk(FIXTURES) for name in files)
    assert names == sorted(os.path.relpath(os.path.join(folder, name), tmp_path / "onnx")
                           for folder, _, files in os.walk(tmp_path / "onnx") for name in files)
    for name in names:
        with open(os.path.join(FIXTURES, name), "rb") as committed, open(tmp_path / "onnx" / name, "rb") as new:
            assert committed.read() == new.read(), name


# --- the layer fixtures: ResNet-, MobileNetV3-, Inception- and fire-style networks, both exporters, vs LiteRT REF ---

LAYER_FIXTURES = os.path.join(FIXTURES, "layers")
LAYER_NETWORKS = {"resnet_style": {"conv", "max_pool", "activation", "add", "average_pool", "mul", "flatten",
                                   "fully_connected"},
                  "mobilenetv3_style": {"conv", "depthwise", "activation", "average_pool", "mul", "concat",
                                        "flatten", "fully_connected"},
                  "inception_style": {"conv", "add", "max_pool", "concat", "activation", "average_pool", "flatten",
                                      "fully_connected"},
                  "fire_style": {"conv", "concat", "activation", "max_pool", "depthwise", "average_pool", "flatten",
                                 "fully_connected"}}


@pytest.fixture(scope="module")
def layer_networks():
    """``{fixture: (graph, images, {method: network})}`` of every layer fixture, calibrated on 16 random images."""
    pytest.importorskip("ai_edge_litert.interpreter")
    result = {}
    for name in sorted(os.listdir(LAYER_FIXTURES)):
        graph = load_graph(os.path.join(LAYER_FIXTURES, name))
        images = _images(16, tuple(graph.shapes[graph.input]), seed=4)
        ranges = calibrate(graph, images, progress=False)
        result[name] = graph, images, {method: build_network(graph, ranges, method=method)[0]
                                       for method in ("wess", "channel")}
    return result


def test_layer_fixtures_match_litert_reference(layer_networks, oracle_counts):
    """Each quantized fixture as one .tflite model: every layer's tensor and the quantization of every tensor."""
    from tools.quantizer.litert import benchmark
    layers = elements = mismatches = 0
    for name, (graph, images, networks) in layer_networks.items():
        for method, network in networks.items():
            result = benchmark(network, quantize_input(network, images[:8]))
            assert result["quantization_problems"] == [] and result["mismatching_layers"] == [], (name, method)
            layers, elements, mismatches = (layers + result["layers"], elements + result["elements"],
                                            mismatches + result["mismatches"])
        kinds = {layer.kind for layer in networks["wess"].layers}
        assert kinds == LAYER_NETWORKS[name.split("_legacy")[0].split("_dynamo")[0]], name
    oracle_counts("LiteRT REF vs golden, layer fixtures (ResNet/MobileNetV3/Inception/fire-style, wess and channel, "
                  "8 images)",
                  layers=layers, elements=elements, mismatches=mismatches)
    assert mismatches == 0


@pytest.mark.parametrize("network", sorted(LAYER_NETWORKS))
def test_layer_fixture_exports_quantize_identically(layer_networks, network):
    """The legacy (opset 13: HardSwish as HardSigmoid * x) and dynamo (opset 18) exports give the same integers."""
    (legacy_graph, _, legacy), (dynamo_graph, _, dynamo) = (layer_networks[f"{network}_{form}.onnx"]
                                                            for form in ("legacy_op13", "dynamo_op18"))
    _assert_same_ir(legacy_graph, dynamo_graph)
    _assert_same_network(legacy["wess"], dynamo["wess"])
    for layer in legacy["wess"].layers:                  # a folded HardSigmoid's output range is [0, 1] exactly
        if getattr(layer, "activation", None) == "hard_sigmoid":
            tensor = legacy["wess"].tensors[layer.output]
            assert (tensor.scale, tensor.zero_point) == activation_quantization(0.0, 1.0)
            assert (layer.qmin, layer.qmax) == (tensor.zero_point, 127)


def test_layer_fixture_ir():
    """The layers each fixture is meant to carry, as the importer sees them."""
    resnet = load_graph(os.path.join(LAYER_FIXTURES, "resnet_style_legacy_op13.onnx"))
    assert [type(node).__name__ for node in resnet.nodes] == [
        "Conv", "MaxPool", "Conv", "Activation", "Conv", "Add", "Pool", "Conv", "Conv", "Activation", "Mul", "Pool",
        "Flatten", "FullyConnected"]
    assert resnet.nodes[1].padding == (1, 1, 1, 1) and resnet.nodes[3].alpha == pytest.approx(0.1)
    mobile = load_graph(os.path.join(LAYER_FIXTURES, "mobilenetv3_style_legacy_op13.onnx"))
    functions = [node.function for node in mobile.nodes if isinstance(node, Activation)]
    assert functions == ["hard_swish", "tanh"]
    assert [node.activation for node in mobile.nodes if isinstance(node, Conv)].count("hard_sigmoid") == 1
    assert any(isinstance(node, Concat) for node in mobile.nodes)
    inception = load_graph(os.path.join(LAYER_FIXTURES, "inception_style_legacy_op13.onnx"))
    # The ReLUs after a Concat, an AvgPool and a Tanh (ReLU6) have no layer to fuse into: table layers of their own.
    assert [getattr(node, "function", type(node).__name__) for node in inception.nodes] == [
        "Conv", "Conv", "Conv", "Conv", "Add", "MaxPool", "MaxPool", "MaxPool", "Concat", "Conv", "Conv", "Concat",
        "relu", "Pool", "relu", "Conv", "tanh", "relu6", "Pool", "Flatten", "FullyConnected"]
    fire = load_graph(os.path.join(LAYER_FIXTURES, "fire_style_legacy_op13.onnx"))
    # A 5 + 12-channel Concat with the ReLU after it, then channel-wise layers (MaxPool, depthwise) before a conv.
    assert [getattr(node, "function", type(node).__name__) for node in fire.nodes] == [
        "Conv", "Conv", "Conv", "Conv", "Concat", "relu", "MaxPool", "Conv", "Conv", "Pool", "Flatten",
        "FullyConnected"]
    assert [fire.shapes[name][0] for name in fire.nodes[4].inputs] == [5, 12]
