"""tools/quantizer/equalize.py: which layers pair up, the graph computes the same after equalization (exactly through
ReLU, on the calibration images through ReLU6), the ranges it equalizes, and the power-of-two variant's ranges."""

import numpy as np
import pytest

from tools.quantizer import frontend as ir
from tools.quantizer.calibrate import channel_maxima, session
from tools.quantizer.equalize import RELU6_LIMIT, equalization_pairs, equalize
from tools.quantizer.weights import channel_ranges, wess_shifts


def _graph(first_activation="relu", seed=0, depthwise_gain=1.0):
    """conv 3->6 (first_activation) -> depthwise (relu) -> conv 6->4 -> {conv 4->4 relu, add}: channel ranges spread
    over three decades, as batch-norm folding makes them (a large ``depthwise_gain`` makes equalization grow the
    first layer's channels)."""
    rng = np.random.default_rng(seed)

    def weights(shape):
        spread = 10.0 ** rng.uniform(-3, 0, size=(shape[0], 1, 1, 1))
        return (rng.standard_normal(shape) * spread).astype(np.float32)

    def bias(n):
        return (rng.standard_normal(n) * 0.1).astype(np.float32)

    conv = dict(stride=(1, 1), padding=(1, 1, 1, 1))
    one = dict(stride=(1, 1), padding=(0, 0, 0, 0), groups=1)
    nodes = (
        ir.Conv(name="c0", input="x", output="t0", weights=weights((6, 3, 3, 3)) * 40, bias=bias(6), groups=1,
                activation=first_activation, **conv),
        ir.Conv(name="d1", input="t0", output="t1", weights=weights((6, 1, 3, 3)) * depthwise_gain, bias=bias(6), groups=6,
                activation="relu", **conv),
        ir.Conv(name="c2", input="t1", output="t2", weights=weights((4, 6, 1, 1)), bias=bias(4), **one),
        ir.Conv(name="c3", input="t2", output="t3", weights=weights((4, 4, 1, 1)), bias=bias(4), activation="relu",
                **one),
        ir.Add(name="a4", inputs=("t2", "t3"), output="t4"),
    )
    shapes = {"x": (3, 8, 8), "t0": (6, 8, 8), "t1": (6, 8, 8), "t2": (4, 8, 8), "t3": (4, 8, 8), "t4": (4, 8, 8)}
    return ir.Graph(input="x", output="t4", nodes=nodes, shapes=shapes, metadata={})


def _images(count=16, seed=1):
    return np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)


def _run(graph, images):
    return session(graph.to_onnx(expose_all=False)).run(None, {graph.input: images})[0].astype(np.float64)


def test_pairs_are_single_reader_convolutions():
    # t2 is read by c3 and by the add (a residual): not a pair; t3 feeds the add only.
    assert equalization_pairs(_graph()) == [(0, 1), (1, 2)]
    # A folded HardSigmoid clamps at 1 whatever its weights' scale: never scaled.
    assert equalization_pairs(_graph("hard_sigmoid")) == [(1, 2)]


def test_relu_graph_is_unchanged_and_ranges_equalized():
    graph = _graph()
    equalized, scales = equalize(graph)
    images = _images()
    np.testing.assert_allclose(_run(equalized, images), _run(graph, images), rtol=1e-4, atol=1e-4)
    assert set(scales) == {"t0", "t1"} and not np.allclose(scales["t0"], 1.0)
    nodes = equalized.nodes
    # Converged: each channel's range in the producer equals its range in the consumer (the geometric mean).
    depthwise = channel_ranges(nodes[1].weights)
    np.testing.assert_allclose(channel_ranges(nodes[0].weights), depthwise, rtol=1e-3)
    np.testing.assert_allclose(depthwise, np.abs(nodes[2].weights).max(axis=(0, 2, 3)), rtol=1e-3)
    # The spread between channels shrinks.
    before = channel_ranges(graph.nodes[1].weights)
    assert np.ptp(np.log(depthwise)) < np.ptp(np.log(before))
    # The layers outside the pairs are untouched.
    assert nodes[3] is graph.nodes[3] or np.array_equal(nodes[3].weights, graph.nodes[3].weights)


@pytest.mark.parametrize("depthwise_gain", [1.0, 100.0])
def test_relu6_channels_equalized_only_where_the_clamp_stays_idle(depthwise_gain):
    graph = _graph("relu6", depthwise_gain=depthwise_gain)
    images = _images()
    peaks = channel_maxima(graph, images, progress=False)["t0"]
    clamped = peaks >= RELU6_LIMIT
    assert clamped.any() and not clamped.all()        # the fixture has both kinds of channel
    # Without maxima a ReLU6 tensor is left alone.
    _, untouched = equalize(graph)
    np.testing.assert_array_equal(untouched["t0"], 1.0)
    for power_of_two in (False, True):
        equalized, scales = equalize(graph, channel_maxima(graph, images, progress=False),
                                     power_of_two=power_of_two)
        np.testing.assert_array_equal(scales["t0"][clamped], 1.0)
        assert not np.allclose(scales["t0"][~clamped], 1.0)
        assert np.all(peaks / scales["t0"] <= RELU6_LIMIT * (1 + 1e-9))
        # On the calibration images the clamp acts where it did before: the graph computes the same.
        np.testing.assert_allclose(_run(equalized, images), _run(graph, images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_power_of_two_ranges_use_the_whole_grid_after_the_wess_shift(activation):
    graph = _graph(activation)
    maxima = channel_maxima(graph, _images(), progress=False)
    equalized, _ = equalize(graph, maxima, power_of_two=True)
    for index in (0, 1):
        ranges = channel_ranges(equalized.nodes[index].weights)
        used = ranges * np.exp2(wess_shifts(ranges, 4)) / ranges.max()
        idle = maxima["t0"] >= RELU6_LIMIT if index == 0 and activation == "relu6" else np.zeros(6, bool)
        assert np.all(used[~idle] > 1 - 2.0 ** -10) and np.all(used <= 1)
    # Plain equalization leaves channels between half and all of the grid.
    plain, _ = equalize(graph, maxima)
    ranges = channel_ranges(plain.nodes[1].weights)
    assert np.any(ranges * np.exp2(wess_shifts(ranges, 4)) / ranges.max() < 0.9)
