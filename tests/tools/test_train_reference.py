"""The committed reference model (models/fmnist_mobilenet*.onnx) and tools/train_reference.py."""

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tools.quantizer.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, load_fashion_mnist, normalize_images

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"unfolded": str(ROOT / "models" / "fmnist_mobilenet.onnx"),
          "folded": str(ROOT / "models" / "fmnist_mobilenet_folded.onnx")}

needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_ROOT),
                                         reason="Debian package dataset-fashion-mnist is not installed")


# --- the committed reference model ------------------------------------------------------------------------------

def model_input(path, images):
    """Fashion-MNIST pixels normalised as the model's own metadata says (no torch involved)."""
    metadata = {prop.key: prop.value for prop in onnx.load(path).metadata_props}
    assert metadata["dataset"] == "fashion-mnist" and metadata["input_layout"] == "NCHW"
    assert json.loads(metadata["input_shape"]) == [1, 28, 28]
    assert json.loads(metadata["classes"]) == list(FASHION_MNIST_CLASSES)
    return normalize_images(images, mean=json.loads(metadata["mean"]), std=json.loads(metadata["std"]),
                            scale=float(metadata["input_scale"]))


def logits_of(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def test_reference_model_graphs():
    graphs = {kind: onnx.load(path) for kind, path in MODELS.items()}
    for kind, model in graphs.items():
        assert os.path.getsize(MODELS[kind]) < 1_000_000
        assert {o.domain: o.version for o in model.opset_import}[""] == 17
        onnx.checker.check_model(model)
        ops = [node.op_type for node in model.graph.node]
        assert set(ops) <= {"Conv", "BatchNormalization", "Clip", "Add", "GlobalAveragePool", "Flatten", "Gemm",
                            "Constant"}, kind
        assert ops.count("Conv") == 13 and ops.count("Add") >= 1 and ops.count("Gemm") == 1, kind
        attributes = [{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                      for node in model.graph.node if node.op_type == "Conv"]
        depthwise_stride2 = [a for a in attributes if a["group"] > 1 and list(a["strides"]) == [2, 2]]
        assert depthwise_stride2, kind
    assert [n.op_type for n in graphs["unfolded"].graph.node].count("BatchNormalization") == 13
    assert "BatchNormalization" not in [n.op_type for n in graphs["folded"].graph.node]
    # Parameters of the folded model (BN folded away): weights and biases only, a small network.
    parameters = sum(int(np.prod(t.dims)) for t in graphs["folded"].graph.initializer)
    assert parameters <= 60_000
    assert [p.key for p in graphs["unfolded"].metadata_props] == [p.key for p in graphs["folded"].metadata_props]


@needs_fashion_mnist
def test_reference_model_accuracy_and_folding():
    images, labels = load_fashion_mnist("test")
    images, labels = images[:1000], labels[:1000]
    x = model_input(MODELS["unfolded"], images)
    np.testing.assert_array_equal(x, model_input(MODELS["folded"], images))
    unfolded, folded = logits_of(MODELS["unfolded"], x), logits_of(MODELS["folded"], x)
    assert unfolded.shape == (1000, 10)
    np.testing.assert_allclose(unfolded, folded, rtol=1e-4, atol=1e-4)
    assert np.mean(unfolded.argmax(1) == labels) >= 0.85
    assert np.mean(folded.argmax(1) == labels) >= 0.85


@needs_fashion_mnist
@pytest.mark.parametrize("name, ops", [("fmnist_resnet", {"MaxPool", "Add"}),
                                       ("fmnist_mobilenetv3", {"HardSwish", "HardSigmoid", "Mul", "Concat"})])
def test_results_models_accuracy(name, ops):
    """The committed ResNet- and MobileNetV3-style models (models/README.md): their layers, the reference model's
    contract, at least 85 % top-1 on 1,000 test images."""
    path = str(ROOT / "models" / f"{name}.onnx")
    assert os.path.getsize(path) < 300_000
    assert ops <= {node.op_type for node in onnx.load(path).graph.node}
    images, labels = load_fashion_mnist("test")
    assert np.mean(logits_of(path, model_input(path, images[:1000])).argmax(1) == labels[:1000]) >= 0.85


# --- tools/train_reference.py (torch, optional) -----------------------------------------------------------------

def test_export_keeps_or_folds_batch_norm(tmp_path):
    torch = pytest.importorskip("torch", reason="torch (training only): pip install -e '.[train]'")
    from tools.training.models import FashionMobileNet
    from tools.training import export
    torch.manual_seed(3)
    model = FashionMobileNet()
    # Non-trivial running statistics and affine parameters, so that a wrongly folded BN would show.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            with torch.no_grad():
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    model.eval()
    metadata = {"dataset": "fashion-mnist", "mean": "[0.5]"}
    paths = {fold: str(tmp_path / f"{fold}.onnx") for fold in (False, True)}
    for fold, path in paths.items():
        export(model, path, fold_batch_norm=fold, metadata=metadata)
        assert not os.path.exists(path + ".tmp")
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert sum(p.numel() for p in model.parameters()) <= 60_000
    for fold, path in paths.items():
        proto = onnx.load(path)
        assert {p.key: p.value for p in proto.metadata_props} == metadata
        batch_norms = [n.op_type for n in proto.graph.node].count("BatchNormalization")
        assert batch_norms == (0 if fold else 13)
        np.testing.assert_allclose(logits_of(path, x), expected, rtol=1e-4, atol=1e-4)


def test_train_reference_bad_data(tmp_path, capsys):
    pytest.importorskip("torch", reason="torch (training only): pip install -e '.[train]'")
    from tools.train_reference import main
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert re.fullmatch(r"python tools/train_reference\.py: error: idx file '.*train-images-idx3-ubyte\.gz' "
                        r"does not exist\n", capsys.readouterr().err)
    with pytest.raises(SystemExit) as exit_info:
        main(["--epochs", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("python tools/train_reference.py: error: "
                                       "--epochs must be a positive integer, not 0\n")


@pytest.mark.parametrize("arch, kinds", [
    ("resnet", {"Conv": 6, "MaxPool": 1, "Add": 2, "Pool": 1, "FullyConnected": 1}),
    ("mobilenetv3", {"Conv": 13, "Activation": 6, "Mul": 2, "Concat": 1, "Pool": 3, "FullyConnected": 1}),
])
def test_results_architectures_import_with_their_layers(arch, kinds, tmp_path):
    """The ResNet- and MobileNetV3-style networks of ``--arch`` export (batch norm kept) to graphs the front end
    imports with their MaxPool and adds, or HardSwish tables, SE gates (HardSigmoid folded, Mul) and Concat, and the
    imported IR computes torch's logits."""
    torch = pytest.importorskip("torch", reason="torch (training only): pip install -e '.[train]'")
    from tools.quantizer.frontend import load_graph
    from tools.training import export
    from tools.training.models import ARCHITECTURES
    torch.manual_seed(4)
    model = ARCHITECTURES[arch][0]().eval()
    path = str(tmp_path / "m.onnx")
    export(model, path, fold_batch_norm=False, metadata={})
    graph = load_graph(path)
    found = [type(node).__name__ for node in graph.nodes]
    assert {kind: found.count(kind) for kind in kinds} == kinds and set(found) <= set(kinds) | {"Flatten"}
    x = np.random.default_rng(4).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    ir = ort.InferenceSession(graph.to_onnx(expose_all=False).SerializeToString()).run(None, {graph.input: x})[0]
    np.testing.assert_allclose(ir, expected, rtol=1e-4, atol=1e-4)
