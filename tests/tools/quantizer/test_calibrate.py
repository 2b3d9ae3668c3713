"""tools/quantizer/calibrate.py: activation quantization of a range, and the minmax / percentile / mse range choices."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.quantizer.calibrate import BINS, activation_quantization, calibrate
from tools.quantizer.frontend import load_graph
from tools.quantizer.weights import SCALE_BITS


@pytest.mark.parametrize("low, high", [(-1.0, 3.0), (0.0, 6.0), (-5.0, -1.0), (2.0, 7.0), (-0.3, 0.001),
                                       (-1e-4, 1e3)])
def test_activation_quantization_covers_the_range_and_zero(low, high):
    scale, zero_point = activation_quantization(low, high)
    assert -128 <= zero_point <= 127
    lo, hi = min(low, 0.0), max(high, 0.0)
    assert scale >= (hi - lo) / 255 and scale < (hi - lo) / 255 * (1 + 2.0 ** (1 - SCALE_BITS))
    # Zero is a grid point (the zero point); the range's ends lie within half a step of the grid's ends.
    assert scale * (-128 - zero_point) <= lo + scale / 2 and scale * (127 - zero_point) >= hi - scale / 2


def test_activation_quantization_relu_and_degenerate():
    assert activation_quantization(0.0, 6.0)[1] == -128
    assert activation_quantization(0.0, 0.0) == (1.0, -128)
    with pytest.raises(ValueError, match="finite with low <= high"):
        activation_quantization(1.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        activation_quantization(0.0, np.inf)


def _identity_like_graph():
    # x -> Conv 1x1 with weight 1 and bias 0 -> y = x: the calibrated range of y is the range of the images.
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return load_graph(model)


def test_minmax_percentile_mse():
    graph = _identity_like_graph()
    rng = np.random.default_rng(0)
    images = rng.laplace(0.0, 1.0, (40, 1, 32, 32)).astype(np.float32)       # heavy tails
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 40.0, -30.0                       # two outliers
    minmax = calibrate(graph, images, progress=False, batch_size=7)
    assert minmax["y"] == (float(images.min()), float(images.max())) == minmax["x"]
    percentile = calibrate(graph, images, method="percentile", percentile=99.9, progress=False)["y"]
    expected = np.percentile(images, [0.1, 99.9])
    bin_width = 70.0 / BINS
    assert abs(percentile[0] - expected[0]) <= 2 * bin_width and abs(percentile[1] - expected[1]) <= 2 * bin_width
    mse = calibrate(graph, images, method="mse", progress=False)["y"]
    assert -30.0 < mse[0] < 0 < mse[1] < 40.0                                   # the outliers are clipped
    # The mse range beats min/max in quantization error on these very images.
    def error(low, high):
        scale, zero_point = activation_quantization(low, high)
        q = np.clip(np.floor(np.abs(images / scale) + 0.5) * np.sign(images) + zero_point, -128, 127)
        return float(np.mean((images - (q - zero_point) * scale) ** 2))
    assert error(*mse) < error(*minmax["y"])


def test_bad_arguments():
    graph = _identity_like_graph()
    images = np.zeros((2, 1, 32, 32), np.float32)
    with pytest.raises(ValueError, match="calibration method"):
        calibrate(graph, images, method="kl")
    with pytest.raises(ValueError, match="percentile"):
        calibrate(graph, images, method="percentile", percentile=40)
    with pytest.raises(ValueError, match="at least one image"):
        calibrate(graph, images[:0])
