"""tools/golden_infer.py: golden inference on a user's int8 tensor, NHWC and NCHW, every layer, one-line errors."""

import os
import re

import numpy as np
import pytest

from golden import network as gnet
from tools.golden_infer import main


@pytest.fixture(scope="module")
def saved(quantized_reference, tmp_path_factory):
    """The wess network saved as the quantizer does, and 5 int8 NHWC test images."""
    networks, x = quantized_reference
    folder = tmp_path_factory.mktemp("quantized")
    gnet.save(networks["wess"], folder)
    return folder, networks["wess"], x[:5]


def test_nhwc_and_nchw_inputs_give_the_golden_output(saved, tmp_path, capsys):
    folder, network, x = saved
    np.save(tmp_path / "nhwc.npy", x)
    np.save(tmp_path / "nchw.npy", x.transpose(0, 3, 1, 2).astype(np.int16))     # any integer dtype in int8 range
    assert main([str(folder), str(tmp_path / "nhwc.npy"), "-o", str(tmp_path / "a.npy"), "--quiet",
                 "--batch-size", "2"]) == 0
    assert main([str(folder), str(tmp_path / "nchw.npy"), "-o", str(tmp_path / "b.npy"), "--layout", "nchw",
                 "--quiet"]) == 0
    expected = gnet.run(network, x)
    for name in ("a.npy", "b.npy"):
        output = np.load(tmp_path / name)
        assert output.dtype == np.int8 and output.shape == (5, 10)
        np.testing.assert_array_equal(output, expected)
    assert "wrote" in capsys.readouterr().out


def test_one_image_and_every_layer(saved, tmp_path):
    folder, network, x = saved
    np.save(tmp_path / "one.npy", x[0])                                           # (H, W, C): a batch of one
    assert main([str(folder), str(tmp_path / "one.npy"), "-o", str(tmp_path / "y.npy"), "--layers",
                 str(tmp_path / "layers"), "--quiet"]) == 0
    _, trace = gnet.run(network, x[:1], keep=True)
    assert sorted(os.listdir(tmp_path / "layers")) == sorted(f"{name}.npy" for name in trace.tensors)
    for name, value in trace.tensors.items():
        np.testing.assert_array_equal(np.load(tmp_path / "layers" / f"{name}.npy"), value)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), trace.tensors[network.output])


@pytest.mark.parametrize("content, args, message", [
    (np.zeros((2, 28, 28, 1), np.float32), [], "must be an int8 tensor"),
    (np.full((2, 28, 28, 1), 128, np.int16), [], r"values must lie in \[-128, 127\]"),
    (np.zeros((2, 1, 28, 28), np.int8), [], r"the network takes \(N, 28, 28, 1\) in NHWC"),
    (np.zeros((2, 28, 28, 1), np.int8), ["--layout", "nchw"], r"the network takes \(N, 1, 28, 28\) in NCHW"),
    (np.zeros((2, 28, 28, 1), np.int8), ["--batch-size", "0"], "--batch-size must be a positive integer"),
    (np.zeros((2, 28, 28, 1), np.int8), ["--layers", "{tmp}/full"], "exists and is not an empty folder"),
    (b"not an array", [], "cannot read"),
])
def test_bad_input_is_one_line_and_writes_nothing(saved, tmp_path, capsys, content, args, message):
    folder = saved[0]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    path = tmp_path / "x.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    args = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main([str(folder), str(path), "-o", str(tmp_path / "y.npy"), "--quiet", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python tools/golden_infer.py: error:")
    assert re.search(message, err), err
    assert sorted(os.listdir(tmp_path)) == ["full", "x.npy"]
    assert os.listdir(tmp_path / "full") == ["keep.txt"]


def test_missing_network_folder(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.int8))
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")])
    assert "cannot read a network" in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()
