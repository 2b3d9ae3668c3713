"""tools/quantizer/output_error.py: the layer input statistics against directly computed convolutions, the output
error scales (+oe) and the rounding optimisation (+ar) never worse than their nearest-rounding starting points, and
the integer path they feed (storable scales, integers on the grid)."""

import numpy as np
import pytest

from tools.quantizer import frontend as ir
from tools.quantizer.build import build_network
from tools.quantizer.calibrate import calibrate, session
from tools.quantizer.output_error import (InputStatistics, adaround, input_statistics, output_error,
                                          output_error_scales, refine_weights)
from tools.quantizer.weights import qmax_for_bits, quantize_weights, round_to_grid, snap_scale, wess_shifts


def _graph(seed=0):
    """conv 3->6 (3x3, stride 2, padding 1/0/1/2) -> depthwise 3x3 -> global pool -> flatten -> fc 6->5."""
    rng = np.random.default_rng(seed)
    nodes = (
        ir.Conv(name="c0", input="x", output="t0", weights=rng.standard_normal((6, 3, 3, 3)).astype(np.float32),
                bias=np.zeros(6, np.float32), stride=(2, 2), padding=(1, 0, 1, 2), groups=1),
        ir.Conv(name="d1", input="t0", output="t1", weights=rng.standard_normal((6, 1, 3, 3)).astype(np.float32),
                bias=np.zeros(6, np.float32), stride=(1, 1), padding=(1, 1, 1, 1), groups=6, activation="relu"),
        ir.Pool(name="p2", input="t1", output="t2"),
        ir.Flatten(name="f3", input="t2", output="t3"),
        ir.FullyConnected(name="fc4", input="t3", output="t4", weights=rng.standard_normal((5, 6)).astype(np.float32),
                          bias=np.zeros(5, np.float32)),
    )
    shapes = {"x": (3, 9, 8), "t0": (6, 5, 5), "t1": (6, 5, 5), "t2": (6, 1, 1), "t3": (6,), "t4": (5,)}
    return ir.Graph(input="x", output="t4", nodes=nodes, shapes=shapes, metadata={})


def _images(count=7, seed=1):
    return np.random.default_rng(seed).standard_normal((count, 3, 9, 8)).astype(np.float32)


def _direct_conv(x, weights, stride, padding, groups):
    """NCHW convolution by explicit loops over taps (no windows, no im2col), no bias."""
    top, bottom, left, right = padding
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_c, per_group, kh, kw = weights.shape
    ho, wo = (x.shape[2] - kh) // stride[0] + 1, (x.shape[3] - kw) // stride[1] + 1
    out = np.zeros((x.shape[0], out_c, ho, wo))
    for o in range(out_c):
        g = o // (out_c // groups)
        for i in range(per_group):
            for dy in range(kh):
                for dx in range(kw):
                    out[:, o] += weights[o, i, dy, dx] * x[:, g * per_group + i, dy:dy + stride[0] * ho:stride[0],
                                                           dx:dx + stride[1] * wo:stride[1]]
    return out


@pytest.mark.parametrize("node_index", [0, 1, 4])
def test_statistics_give_the_mean_square_output_of_a_direct_convolution(node_index):
    # With every position sampled, e^T E[x x^T] e of each channel is the mean square of the layer's output with the
    # weights e, computed here by a direct convolution of the float tensors (and a matrix product for fc).
    graph, images = _graph(), _images()
    node = graph.nodes[node_index]
    statistics = input_statistics(graph, images, positions=10 ** 6, progress=False)[node.output]
    x = images if node.input == "x" else session(graph.to_onnx()).run([node.input], {"x": images})[0]
    x = x.astype(np.float64)
    errors = np.random.default_rng(2).standard_normal(node.weights.shape)
    if isinstance(node, ir.FullyConnected):
        out = x.reshape(len(x), -1) @ errors.T
        axes = (0,)
    else:
        out = _direct_conv(x, errors, node.stride, node.padding, node.groups)
        axes = (0, 2, 3)
    flat = errors.reshape(len(errors), -1)
    np.testing.assert_allclose(output_error(statistics, flat, damping=0.0), np.mean(out ** 2, axis=axes),
                               rtol=1e-9)
    # The centred form is the variance of the output (what empirical bias correction leaves).
    np.testing.assert_allclose(output_error(statistics, flat, centred=True, damping=0.0), np.var(out, axis=axes),
                               rtol=1e-7, atol=1e-12)


def test_statistics_sample_positions_per_image():
    graph, images = _graph(), _images(6)
    sampled = input_statistics(graph, images, positions=4, progress=False)
    assert sampled["t0"].count == 4 * len(images) and sampled["t1"].count == 4 * len(images)
    assert sampled["t4"].count == len(images)
    # Fewer patches than their length: the patches are kept instead of the second moment, with the same products.
    assert sampled["t0"].samples is not None and sampled["t0"].second_moment is None
    moment = InputStatistics(second_moment=np.einsum("gnk,gnl->gkl", sampled["t0"].samples, sampled["t0"].samples)
                             / sampled["t0"].count, samples=None, mean=sampled["t0"].mean, count=sampled["t0"].count)
    errors = np.random.default_rng(3).standard_normal((6, 27))
    for centred in (False, True):
        np.testing.assert_allclose(sampled["t0"].product(errors, centred), moment.product(errors, centred),
                                   rtol=1e-9)
    again = input_statistics(graph, images, positions=4, progress=False)
    assert np.array_equal(again["t1"].second_moment, sampled["t1"].second_moment)       # seeded


def _correlated(channels=12, length=20, samples=400, seed=0):
    """Weights and the statistics of strongly correlated inputs (where rounding choices interact)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((length, length)) * 0.3 + np.eye(length)
    x = rng.standard_normal((samples, length)) @ mixing + 0.5
    statistics = InputStatistics(second_moment=(x.T @ x / samples)[None], samples=None, mean=x.mean(0)[None],
                                 count=samples)
    weights = rng.standard_normal((channels, length)) * 10.0 ** rng.uniform(-2, 0, (channels, 1))
    return weights, statistics, x


@pytest.mark.parametrize("bits", [8, 5, 3])
@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_adaround_rounds_down_or_up_and_is_never_worse_than_nearest(bits, centred, seed):
    weights, statistics, x = _correlated(seed=seed)
    nearest = quantize_weights(weights, method="wess", bits=bits)
    values = adaround(weights, nearest.scales, statistics, bits=bits, centred=centred)
    qmax = qmax_for_bits(bits)
    exact = weights / nearest.scales[:, None]
    assert values.dtype == np.int64 and np.abs(values).max() <= qmax
    assert np.all((values == np.clip(np.floor(exact), -qmax, qmax)) | (values == np.clip(np.floor(exact) + 1,
                                                                                          -qmax, qmax)))
    # Output error on the calibration inputs, computed from the inputs themselves.
    inputs = x - x.mean(0) if centred else x

    def mse(v):
        return np.mean((inputs @ (v * nearest.scales[:, None] - weights).T) ** 2, axis=0)

    assert np.all(mse(values) <= mse(nearest.values) * (1 + 1e-12))
    assert mse(values).sum() < 0.9 * mse(nearest.values).sum()


@pytest.mark.parametrize("method", ["layer", "channel", "wess", "wess-mse"])
@pytest.mark.parametrize("bits", [8, 4])
def test_output_error_scales_are_storable_and_never_worse_than_the_nearest_rule(method, bits):
    weights, statistics, _ = _correlated(seed=4)
    scales, layer_scale, shifts = output_error_scales(weights, statistics, method=method, bits=bits)
    qmax = qmax_for_bits(bits)
    if method == "channel":
        assert layer_scale is None and np.array_equal(snap_scale(scales, up=False), scales)
    else:
        assert snap_scale(layer_scale, up=False) == layer_scale
        assert np.array_equal(scales, layer_scale * np.exp2(-shifts.astype(float)))
        assert shifts.min() >= 0 and shifts.max() <= 15 and (method != "layer" or not shifts.any())
    # The method's own nearest-rounding rule (paper shifts for wess) is one of the candidates.
    rule = quantize_weights(weights, method="wess" if method == "wess-mse" else method, bits=bits)

    def error(s):
        values, _ = round_to_grid(weights, s, qmax=qmax)
        return output_error(statistics, values * s[:, None] - weights)

    if method == "channel":
        assert np.all(error(scales) <= error(rule.scales))
    else:
        assert error(scales).sum() <= error(rule.scales).sum()
    assert error(scales).sum() < error(rule.scales).sum() or bits == 8


def test_wess_output_error_shifts_reach_above_the_paper_rule():
    weights, statistics, _ = _correlated(seed=5)
    _, layer_scale, shifts = output_error_scales(weights, statistics, method="wess", bits=4)
    paper = wess_shifts(np.minimum(np.abs(weights).max(1), layer_scale * 7 * (1 + 2 ** -9)), 4)
    assert np.all(shifts >= paper) and np.any(shifts > paper)


def test_refine_weights_keeps_the_integer_path():
    weights, statistics, _ = _correlated(seed=6)
    weights = weights.reshape(12, 5, 2, 2)
    result = refine_weights(weights, statistics, method="wess", search=True)
    flat = weights.reshape(12, -1)
    values, clipped = round_to_grid(flat, result.scales, qmax=127)
    assert np.array_equal(result.values, values.reshape(weights.shape)) and result.clipped == clipped
    assert result.method == "wess" and result.quantizer == "uniform"
    rounded = refine_weights(weights, statistics, method="wess", search=True, rounding=True)
    assert np.array_equal(rounded.scales, result.scales) and not np.array_equal(rounded.values, result.values)
    with pytest.raises(ValueError, match="uniform grid"):
        refine_weights(weights, statistics, method="wess", bits=2, quantizer="msptq", rounding=True)


def test_build_network_with_refinements_runs_the_golden_model():
    from golden import network as gnet
    graph, images = _graph(), _images(12)
    ranges = calibrate(graph, images, progress=False)
    statistics = input_statistics(graph, images, progress=False)
    plain, _ = build_network(graph, ranges, method="wess")
    refined, stats = build_network(graph, ranges, method="wess", output_statistics=statistics, search_scales=True,
                                   optimise_rounding=True)
    assert [layer.name for layer in refined.layers] == [layer.name for layer in plain.layers]
    for layer, stat in zip((lay for lay in refined.layers if hasattr(lay, "weights")), stats):
        assert np.abs(layer.weights).max() <= 127 and 0 <= layer.channel_shift.min() <= layer.channel_shift.max() <= 15
        assert stat["multiplier"] is not None
    logits = gnet.run(refined, gnet.quantize_input(refined, images))
    assert logits.shape == (12, 5) and logits.dtype == np.int8
