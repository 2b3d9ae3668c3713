"""tools/quantizer/weights.py: the WESS rule's properties, its equivalence with per-channel quantization, the other
methods."""

import math

import numpy as np
import pytest

from golden.requant import quantize_multiplier
from tools.quantizer.weights import (METHODS, QUANTIZERS, SCALE_BITS, TWO_BIT_QUANTIZERS, channel_ranges,
                                     qmax_for_bits, quantize_weights, snap_scale, sqnr_db, unit_delta, wess_shifts)


def _layer(seed=0, channels=24, spread=3.0, shape=(3, 3, 3)):
    # Channels whose ranges differ by up to 10**spread, as batch-norm folding makes them.
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((channels,) + shape)
    return weights * 10.0 ** rng.uniform(-spread, 0, size=(channels,) + (1,) * len(shape))


def _reference_round(x):
    # Round half away from zero with Python's exact float arithmetic, element by element.
    return math.copysign(math.floor(abs(x) + 0.5), x)


def test_qmax_for_bits():
    assert [qmax_for_bits(b) for b in range(2, 9)] == [1, 3, 7, 15, 31, 63, 127]
    for bad in (1, 9, 8.0, True):
        with pytest.raises(ValueError, match="weight bits"):
            qmax_for_bits(bad)


def test_wess_shifts_formula_exact_at_powers_of_two():
    ranges = np.array([1.0, 0.5, 0.25, 0.25000001, 0.24999999, 1 / 3, 2.0 ** -15, 2.0 ** -20, 0.0])
    # floor(log2(1 / r)) computed independently; capped at 15; the all-zero channel gets the cap (docs/arithmetic.md).
    expected = [0, 1, 2, 1, 2, 1, 15, 15, 15]
    assert wess_shifts(ranges, 4).tolist() == expected
    assert wess_shifts(ranges, 2).tolist() == [min(k, 3) for k in expected]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shift_bits", [1, 2, 4])
def test_wess_shifts_properties(seed, shift_bits):
    ranges = channel_ranges(_layer(seed, spread=6.0))
    shifts = wess_shifts(ranges, shift_bits)
    top = ranges.max()
    assert shifts.min() >= 0 and shifts.max() <= 2 ** shift_bits - 1
    assert shifts[np.argmax(ranges)] == 0
    assert np.all(ranges * 2.0 ** shifts <= top)                    # never past the largest channel
    uncapped = shifts < 2 ** shift_bits - 1
    assert np.all(ranges[uncapped] * 2.0 ** (shifts[uncapped] + 1) > top)   # and the largest such shift


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("seed", range(3))
def test_wess_equals_per_channel_quantization_at_power_of_two_scales(bits, seed):
    weights = _layer(seed)
    result = quantize_weights(weights, method="wess", bits=bits)
    qmax = qmax_for_bits(bits)
    ranges = channel_ranges(weights)
    s = result.layer_scale
    assert s == snap_scale(ranges.max() / qmax, up=False)
    assert np.array_equal(result.shifts, wess_shifts(ranges, 4))
    assert np.array_equal(result.scales, s * 2.0 ** -result.shifts.astype(float))
    # Element by element, independently: a TFLite per-channel layer with scales s * 2**-k_c.
    for c in range(weights.shape[0]):
        scale_c = s * 2.0 ** -int(result.shifts[c])
        expected = [max(-qmax, min(qmax, _reference_round(w / scale_c))) for w in weights[c].reshape(-1)]
        assert result.values[c].reshape(-1).tolist() == expected
    # The largest channel uses the full grid; every shifted channel more than half of it.
    assert np.abs(result.values[np.argmax(ranges)]).max() == qmax
    channel_max = np.abs(result.values.reshape(len(ranges), -1)).max(axis=1)
    uncapped = result.shifts < 15
    assert np.all(channel_max[uncapped] >= (qmax + 1) // 2)
    assert result.clipped == 0


def test_wess_channel_scales_share_one_multiplier():
    # docs/arithmetic.md section 2: TFLite's per-channel multipliers of a WESS layer are (M, shift - k_c).
    result = quantize_weights(_layer(7, channels=40, spread=4.0), method="wess")
    s_in, s_out = 0.0173, 0.0411
    multiplier, shift = quantize_multiplier(s_in * result.layer_scale / s_out)
    for k, scale_c in zip(result.shifts, result.scales):
        assert quantize_multiplier(s_in * scale_c / s_out) == (multiplier, shift - int(k))


def test_layer_and_channel_methods():
    weights = _layer(3)
    ranges = channel_ranges(weights)
    layer = quantize_weights(weights, method="layer")
    assert np.all(layer.shifts == 0) and np.all(layer.scales == layer.layer_scale)
    assert np.abs(layer.values).max() == 127
    channel = quantize_weights(weights, method="channel")
    assert channel.layer_scale is None and np.all(channel.shifts == 0)
    assert np.all(np.abs(channel.values.reshape(len(ranges), -1)).max(axis=1) == 127)
    assert np.all(channel.scales <= ranges / 127) and np.all(channel.scales > ranges / 127 * (1 - 2.0 ** (1 - SCALE_BITS)))
    for method in METHODS:
        result = quantize_weights(weights, method=method, bits=8)
        assert result.values.dtype == np.int64 and result.values.shape == weights.shape
        assert np.abs(result.values).max() <= 127
    # Worst-channel weight SQNR on a layer with a wide channel spread: per-channel > WESS >> layer-wise.
    worst = {m: min(sqnr_db(w, d) for w, d in zip(weights, quantize_weights(weights, method=m).dequantized()))
             for m in METHODS}
    assert worst["channel"] > worst["wess"] > worst["layer"] + 20


@pytest.mark.parametrize("bits", [8, 6, 4])
@pytest.mark.parametrize("seed", range(4))
def test_wess_mse_never_worse_per_channel(bits, seed):
    weights = _layer(seed, channels=64)
    paper = quantize_weights(weights, method="wess", bits=bits)
    better = quantize_weights(weights, method="wess-mse", bits=bits)
    assert better.layer_scale == paper.layer_scale
    extra = better.shifts - paper.shifts
    assert np.all((extra >= 0) & (extra <= 2)) and better.shifts.max() <= 15
    error = lambda r: np.sum((weights - r.dequantized()).reshape(len(weights), -1) ** 2, axis=1)
    assert np.all(error(better) <= error(paper))
    assert np.any(extra > 0)                       # it does choose larger shifts somewhere


def test_wess_mse_clips_when_it_pays():
    # One channel: a single outlier and many small weights; a larger shift clips the outlier and wins.
    channel = np.concatenate([[1.0], np.linspace(-0.2, 0.2, 400)])
    big = np.linspace(-2, 2, 401)
    result = quantize_weights(np.stack([big, channel]), method="wess-mse", bits=4)
    assert result.shifts.tolist() == [0, 2]
    assert result.clipped == 1


def test_all_zero_channel_and_layer():
    weights = _layer(1, channels=4)
    weights[2] = 0.0
    for method in METHODS:
        result = quantize_weights(weights, method=method)
        assert np.all(result.values[2] == 0)
        if method.startswith("wess"):
            assert result.shifts[2] == 15
    with pytest.raises(ValueError, match="every weight of the layer is zero"):
        quantize_weights(np.zeros((3, 2)), method="wess")


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="tensor"), "weight method must be one of"),
    (dict(bits=1), "weight bits"),
    (dict(bits=9), "weight bits"),
    (dict(shift_bits=9), "shift bits"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_weights(_layer(), **kwargs)


def test_nan_weights():
    weights = _layer()
    weights[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_weights(weights)


def test_snap_scale():
    rng = np.random.default_rng(5)
    values = 10.0 ** rng.uniform(-8, 3, size=1000)
    down, up = snap_scale(values, up=False), snap_scale(values, up=True)
    assert np.all(down <= values) and np.all(values <= up)
    assert np.all(up - down <= values * 2.0 ** (1 - SCALE_BITS))
    mantissa = np.frexp(up)[0] * 2 ** SCALE_BITS
    assert np.array_equal(mantissa, np.round(mantissa))              # SCALE_BITS significant bits
    assert np.array_equal(snap_scale(up, up=True), up) and np.array_equal(snap_scale(down, up=False), down)
    assert np.array_equal(np.float32(up).astype(np.float64), up)     # exact in float32
    # Round-off far below the grid does not move a snapped scale (away from the grid points).
    assert snap_scale(0.1 * (1 + 1e-7), up=False) == snap_scale(0.1, up=False)
    with pytest.raises(ValueError):
        snap_scale(0.0, up=True)


def test_sqnr_db():
    assert sqnr_db([1.0, -1.0], [1.0, -1.0]) == math.inf
    assert sqnr_db([3.0, 4.0], [3.0, 3.0]) == pytest.approx(10 * math.log10(25.0))


# --- two-bit quantizers (docs/two_bit.md): thresholds and levels in units of delta/2, written out here by hand ------

#: name -> (delta_opt for a unit-variance Laplacian, threshold in units of delta/2, levels in units of delta/2).
TWO_BIT = {"uq": (1.08739, 2.0, (1, 3)), "sptq": (0.85040, 2.0, (1, 4)), "msptq": (0.90210, 2.5, (1, 4))}


def _two_bit_reference(x, threshold, levels):
    # x in units of delta/2: |x| >= threshold -> outer level, else inner; the sign of x >= 0 (zero goes to +inner).
    magnitude = levels[1] if abs(x) >= threshold else levels[0]
    return magnitude if x >= 0 else -magnitude


def _laplacian(seed, shape=(16, 3, 3, 8)):
    return np.random.default_rng(seed).laplace(0.0, 0.05, size=shape)


def test_two_bit_names_and_unit_deltas():
    assert QUANTIZERS == ("uniform", "uq", "sptq", "msptq") and set(TWO_BIT_QUANTIZERS) == set(TWO_BIT)
    for name, (delta, _, levels) in TWO_BIT.items():
        assert round(unit_delta(name), 5) == delta
        assert TWO_BIT_QUANTIZERS[name].codebook.tolist() == [-levels[1], -levels[0], levels[0], levels[1]]


@pytest.mark.parametrize("name", list(TWO_BIT))
@pytest.mark.parametrize("seed", range(3))
def test_two_bit_layer_levels_thresholds_and_step(name, seed):
    weights = _laplacian(seed)
    delta_opt, threshold, levels = TWO_BIT[name]
    result = quantize_weights(weights, method="layer", bits=2, quantizer=name)
    sigma = np.sqrt(np.mean((weights - weights.mean()) ** 2))
    s = result.layer_scale
    # The stored scale is delta/2 with delta = delta_opt * sigma, snapped down to SCALE_BITS significant bits.
    assert s == snap_scale(unit_delta(name) * sigma / 2, up=False)
    assert 1 - 2.0 ** (1 - SCALE_BITS) < 2 * s / (unit_delta(name) * sigma) <= 1
    assert np.all(result.scales == s) and np.all(result.shifts == 0) and result.bits == 2
    assert result.quantizer == name and result.codebook.tolist() == [-levels[1], -levels[0], levels[0], levels[1]]
    expected = [_two_bit_reference(w / s, threshold, levels) for w in weights.reshape(-1)]
    assert result.values.reshape(-1).tolist() == expected
    assert set(np.unique(result.values).tolist()) == {-levels[1], -levels[0], levels[0], levels[1]}
    # Overload: beyond the support region (2 delta for UQ, 3 delta for SPTQ and MSPTQ), i.e. 4 or 6 units of delta/2.
    support = 4 if name == "uq" else 6
    assert result.clipped == int(np.sum(np.abs(weights / s) > support)) > 0
    np.testing.assert_array_equal(result.dequantized(), result.values * s)


@pytest.mark.parametrize("name", list(TWO_BIT))
def test_two_bit_ties_and_zero(name):
    _, threshold, levels = TWO_BIT[name]
    weights = _laplacian(4, shape=(8, 200))
    s = quantize_weights(weights, method="layer", bits=2, quantizer=name).layer_scale
    # The weights nearest to the tie values become them: sigma moves far less than the 2**-10 snapping grid, s stays.
    targets = [threshold * s, -threshold * s, 0.0, np.nextafter(threshold * s, 0), -0.0]
    flat = weights.reshape(-1)
    chosen = []
    for target in targets:
        distance = np.abs(flat - target)
        distance[chosen] = np.inf
        chosen.append(int(np.argmin(distance)))
    flat[chosen] = targets
    result = quantize_weights(weights, method="layer", bits=2, quantizer=name)
    assert result.layer_scale == s
    assert result.values.reshape(-1)[chosen].tolist() == [levels[1], -levels[1], levels[0], levels[0], levels[0]]


@pytest.mark.parametrize("name", list(TWO_BIT))
def test_two_bit_step_scales_with_sigma(name):
    weights = _laplacian(5)
    base = quantize_weights(weights, method="wess", bits=2, quantizer=name)
    for factor in (2.0 ** -7, 4.0, 2.0 ** 10):
        scaled = quantize_weights(weights * factor, method="wess", bits=2, quantizer=name)
        assert scaled.layer_scale == base.layer_scale * factor                  # exact at powers of two
        np.testing.assert_array_equal(scaled.values, base.values)
    for factor in (3.0, 0.1):
        scaled = quantize_weights(weights * factor, method="layer", bits=2, quantizer=name)
        sigma = np.sqrt(np.mean((weights * factor - np.mean(weights * factor)) ** 2))
        assert 1 - 2.0 ** (1 - SCALE_BITS) < 2 * scaled.layer_scale / (unit_delta(name) * sigma) <= 1


@pytest.mark.parametrize("name", list(TWO_BIT))
def test_two_bit_with_wess_uses_sigma_after_the_shift(name):
    # Channels whose ranges differ by up to 1000: sigma of the EQUALIZED layer W_c 2**k_c sets the step.
    weights = _layer(8, channels=32, spread=3.0)
    _, threshold, levels = TWO_BIT[name]
    result = quantize_weights(weights, method="wess", bits=2, quantizer=name)
    shifts = wess_shifts(channel_ranges(weights), 4)
    np.testing.assert_array_equal(result.shifts, shifts)
    equalized = weights * 2.0 ** shifts[:, None, None, None]
    s = result.layer_scale
    assert s == snap_scale(unit_delta(name) * equalized.std() / 2, up=False)
    assert shifts.max() >= 5 and s > 2 * snap_scale(unit_delta(name) * weights.std() / 2, up=False)
    np.testing.assert_array_equal(result.scales, s * 2.0 ** -shifts.astype(float))
    expected = [_two_bit_reference(w / s, threshold, levels) for w in equalized.reshape(-1)]
    assert result.values.reshape(-1).tolist() == expected
    # Against layer-wise two-bit quantization of the same layer, equalizing helps the small channels a lot.
    layer = quantize_weights(weights, method="layer", bits=2, quantizer=name)
    worst = lambda r: min(sqnr_db(w, d) for w, d in zip(weights, r.dequantized()))         # noqa: E731
    assert worst(result) > worst(layer) + 3


@pytest.mark.parametrize("name", list(TWO_BIT))
def test_two_bit_channel_and_wess_mse(name):
    weights = _layer(9, channels=24, spread=2.0)
    _, threshold, levels = TWO_BIT[name]
    channel = quantize_weights(weights, method="channel", bits=2, quantizer=name)
    assert channel.layer_scale is None
    for c in range(len(weights)):
        assert channel.scales[c] == snap_scale(unit_delta(name) * weights[c].std() / 2, up=False)
        expected = [_two_bit_reference(w / channel.scales[c], threshold, levels) for w in weights[c].reshape(-1)]
        assert channel.values[c].reshape(-1).tolist() == expected
    paper = quantize_weights(weights, method="wess", bits=2, quantizer=name)
    better = quantize_weights(weights, method="wess-mse", bits=2, quantizer=name)
    assert better.layer_scale == paper.layer_scale
    extra = better.shifts - paper.shifts
    assert np.all((extra >= 0) & (extra <= 2))
    error = lambda r: np.sum((weights - r.dequantized()).reshape(len(weights), -1) ** 2, axis=1)   # noqa: E731
    assert np.all(error(better) <= error(paper))


@pytest.mark.parametrize("kwargs, match", [
    (dict(quantizer="nf4", bits=2), r"weight quantizer must be one of uniform, uq, sptq, msptq, not 'nf4'"),
    (dict(quantizer="msptq", bits=4), r"the two-bit quantizer msptq needs 2 weight bits, not 4"),
    (dict(quantizer="uq", bits=8), r"the two-bit quantizer uq needs 2 weight bits, not 8"),
])
def test_two_bit_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quantize_weights(_layer(), **kwargs)


def test_two_bit_constant_layer_is_refused():
    with pytest.raises(ValueError, match=r"same value: no two-bit step can be derived \(standard deviation 0\)"):
        quantize_weights(np.full((4, 9), 0.3), method="layer", bits=2, quantizer="uq")
    # One constant channel in a channel-wise layer borrows the layer's sigma.
    weights = _laplacian(2, shape=(4, 9))
    weights[1] = 0.3
    result = quantize_weights(weights, method="channel", bits=2, quantizer="uq")
    assert result.scales[1] == snap_scale(unit_delta("uq") * weights.std() / 2, up=False)
