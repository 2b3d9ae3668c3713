"""tools/design_2bit.py: the layers' weights read with batch norm folded, the design table and plots, bad input."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.design_2bit import main, read_layer_weights


def _conv_bn_gemm_model(path, *, depthwise):
    rng = np.random.default_rng(5)
    channels = 4
    w = rng.normal(size=(channels, 1 if depthwise else 3, 3, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, channels).astype(np.float32), rng.normal(size=channels).astype(np.float32)
    mean, var = rng.normal(size=channels).astype(np.float32), rng.uniform(0.1, 3, channels).astype(np.float32)
    fc = rng.normal(size=(2, channels)).astype(np.float32)
    inputs = 4 if depthwise else 3
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", group=channels if depthwise else 1),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn", epsilon=1e-3),
        helper.make_node("GlobalAveragePool", ["n"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (gamma, "g"), (beta, "b"), (mean, "m"),
                                                        (var, "v"), (fc, "fc"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(helper.make_model(graph), path)
    folded = w.astype(np.float64) * (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + 1e-3))[:, None,
                                                                                                        None, None]
    return folded, fc


@pytest.mark.parametrize("depthwise", [False, True])
def test_read_layer_weights_folds_batch_norm(tmp_path, depthwise):
    path = str(tmp_path / "m.onnx")
    folded, fc = _conv_bn_gemm_model(path, depthwise=depthwise)
    conv, gemm = read_layer_weights(path)
    assert (conv.name, conv.kind, gemm.name, gemm.kind) == ("conv", "depthwise" if depthwise else "conv",
                                                            "fc", "gemm")
    np.testing.assert_allclose(conv.weights, folded, rtol=1e-6)
    np.testing.assert_array_equal(gemm.weights, fc)


def test_cli_prints_table_and_writes_plots(tmp_path, capsys):
    path = str(tmp_path / "m.onnx")
    _conv_bn_gemm_model(path, depthwise=False)
    out = tmp_path / "plots"
    assert main(["--out", str(out), "--model", path, "--samples", "20000"]) == 0
    text = capsys.readouterr().out
    assert "UQ          1.08739" in text and "MSPTQ       0.90210" in text and "Lloyd-Max" in text
    assert "mean over layers" in text
    assert sorted(p.name for p in out.iterdir()) == ["sqnr_mismatch.png", "transfer.png"]
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in ("transfer.png", "sqnr_mismatch.png"))


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["--model", str(tmp / "missing.onnx")], "model file not found"),
    (lambda tmp: ["--model", str(tmp / "bad.onnx")], "cannot read ONNX model"),
    (lambda tmp: ["--samples", "0", "--no-model"], "--samples: must be a positive integer, not '0'"),
    (lambda tmp: ["--seed", "-1", "--no-model"], "--seed: must be a non-negative integer, not '-1'"),
    (lambda tmp: ["--out", str(tmp / "bad.onnx"), "--no-model"], "exists and is not a directory"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, make_args, message):
    (tmp_path / "bad.onnx").write_bytes(b"\xff\x00 not a protobuf \x01" * 7)
    out = tmp_path / "out"
    try:
        status = main(make_args(tmp_path) + (["--out", str(out)] if "--out" not in make_args(tmp_path) else []))
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and captured.err.count("\n") == 1
    assert not out.exists()
