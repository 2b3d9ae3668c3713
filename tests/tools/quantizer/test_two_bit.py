"""Two-bit quantizers UQ / SPTQ / MSPTQ (tools/quantizer/two_bit.py)."""

import math

import numpy as np
import pytest

from tools.quantizer.two_bit import (MSPTQ, QUANTIZERS, SPTQ, UQ, TwoBitQuantizer, design, distortion,
                                     distortion_numerical, empirical_sqnr_db, lloyd_max, optimal_delta,
                                     optimal_delta_numerical, sqnr_mismatch_db)

ALL = [UQ, SPTQ, MSPTQ]


def test_uq_delta_matches_peric_2021():
    assert round(optimal_delta(UQ), 3) == 1.087


# papers.md section 2, unit-variance Laplacian: delta, D (5 decimals), SQNR dB (4 decimals).
@pytest.mark.parametrize("quantizer, delta, total, sqnr", [
    (UQ, 1.08739, 0.19630, 7.0707),
    (SPTQ, 0.85040, 0.20049, 6.9790),
    (MSPTQ, 0.90210, 0.17716, 7.5165),
])
def test_reference_values(quantizer, delta, total, sqnr):
    d = design(quantizer)
    assert round(d.delta, 5) == delta
    assert round(d.distortion, 5) == total
    assert round(d.sqnr_db, 4) == sqnr
    assert d.distortion == pytest.approx(d.granular_distortion + d.overload_distortion, rel=1e-15)


def test_lloyd_max_reference_and_optimality():
    lm = lloyd_max()
    assert round(lm.distortion, 5) == 0.17619
    assert round(lm.sqnr_db, 4) == 7.5401
    t, (y1, y2) = lm.thresholds[2], lm.levels[2:]
    assert t == pytest.approx((y1 + y2) / 2, rel=1e-12)
    # Centroid of the cell [t, inf) of a Laplacian with lambda = sqrt(2) is t + 1/lambda (memorylessness).
    assert y2 == pytest.approx(t + 1 / math.sqrt(2), rel=1e-12)
    assert all(lm.distortion < design(q).distortion for q in ALL)


@pytest.mark.parametrize("quantizer", ALL, ids=lambda q: q.name)
@pytest.mark.parametrize("variance", [0.04, 1.0, 7.0])
@pytest.mark.parametrize("delta", [0.3, 0.9, 1.5, 3.0])
def test_closed_form_equals_quadrature(quantizer, variance, delta):
    closed = distortion(quantizer, delta, variance=variance)
    numeric = distortion_numerical(quantizer, delta, variance=variance)
    assert closed.granular == pytest.approx(numeric.granular, rel=1e-9, abs=1e-14)
    assert closed.overload == pytest.approx(numeric.overload, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("quantizer", ALL, ids=lambda q: q.name)
def test_closed_form_equals_hand_expansion(quantizer):
    """The totals and overload terms expanded by hand in docs/two_bit.md, independent of the generic G form."""
    delta, variance = np.linspace(0.05, 4.0, 80), 2.5
    lam = math.sqrt(2 / variance)
    common = delta ** 2 / 4 - delta / lam + 2 / lam ** 2
    expected_total = {
        "UQ": common - 2 * delta / lam * np.exp(-lam * delta),
        "SPTQ": common + (0.75 * delta ** 2 - 3 * delta / lam) * np.exp(-lam * delta),
        "MSPTQ": common - 3 * delta / lam * np.exp(-1.25 * lam * delta),
    }[quantizer.name]
    gap, bound = {"UQ": (0.5, 2), "SPTQ": (1, 3), "MSPTQ": (1, 3)}[quantizer.name]   # x_max - y2, x_max / delta
    expected_overload = np.exp(-bound * lam * delta) * ((gap * delta) ** 2 + 2 * gap * delta / lam + 2 / lam ** 2)
    d = distortion(quantizer, delta, variance=variance)
    np.testing.assert_allclose(d.total, expected_total, rtol=1e-12)
    np.testing.assert_allclose(d.overload, expected_overload, rtol=1e-12)


@pytest.mark.parametrize("quantizer", ALL, ids=lambda q: q.name)
@pytest.mark.parametrize("variance", [0.01, 1.0, 25.0])
def test_iterative_delta_equals_numerical(quantizer, variance):
    sigma = math.sqrt(variance)
    iterative = optimal_delta(quantizer, variance=variance)
    assert iterative == pytest.approx(optimal_delta_numerical(quantizer, variance=variance), rel=1e-6)
    assert iterative == pytest.approx(sigma * optimal_delta(quantizer), rel=1e-12)
    # Stationary and a minimum of the closed form.
    h = 1e-5 * sigma
    slope = (distortion(quantizer, iterative + h, variance=variance).total
             - distortion(quantizer, iterative - h, variance=variance).total) / (2 * h)
    assert abs(slope) < 1e-8 * sigma
    at = distortion(quantizer, iterative, variance=variance).total
    for step in (-1e-2, 1e-2):
        assert at < distortion(quantizer, iterative + step * sigma, variance=variance).total


def test_iteration_failure_is_reported():
    with pytest.raises(RuntimeError, match=r"^SPTQ: fixed-point iteration did not converge in 3 iterations$"):
        optimal_delta(SPTQ, max_iter=3)


@pytest.mark.parametrize("quantizer, thresholds, levels, support, codebook", [
    (UQ, [-2, 0, 2], [-3, -1, 1, 3], (-4, 4), [-3, -1, 1, 3]),
    (SPTQ, [-2, 0, 2], [-4, -1, 1, 4], (-6, 6), [-4, -1, 1, 4]),
    (MSPTQ, [-2.5, 0, 2.5], [-4, -1, 1, 4], (-6, 6), [-4, -1, 1, 4]),
])
def test_thresholds_levels_support(quantizer, thresholds, levels, support, codebook):
    np.testing.assert_array_equal(quantizer.thresholds(2.0), thresholds)
    np.testing.assert_array_equal(quantizer.levels(2.0), levels)
    assert quantizer.support_region(2.0) == support
    assert quantizer.codebook.dtype == np.int64
    np.testing.assert_array_equal(quantizer.codebook, codebook)
    # Every level, at any step, is the stated integer multiple of delta/2.
    for delta in (0.37, design(quantizer).delta):
        np.testing.assert_array_equal(quantizer.levels(delta), np.array(codebook) * (delta / 2))


@pytest.mark.parametrize("quantizer", ALL, ids=lambda q: q.name)
def test_encode_edges_and_symmetry(quantizer):
    delta = 0.8
    t = quantizer.threshold * delta
    x = np.array([0.0, -0.0, t, -t, np.nextafter(t, 0), -np.nextafter(t, 0), 1e-300, -1e-300, 1e9, -1e9])
    np.testing.assert_array_equal(quantizer.encode(x, delta), [2, 2, 3, 0, 2, 1, 2, 1, 3, 0])
    rng = np.random.default_rng(3)
    y = rng.laplace(0, 1, 10_000)
    y = y[y != 0]
    np.testing.assert_array_equal(quantizer.quantize(-y, delta), -quantizer.quantize(y, delta))
    np.testing.assert_array_equal(quantizer.decode(quantizer.encode(y, delta), delta), quantizer.quantize(y, delta))
    assert quantizer.quantize(2.5, delta) == quantizer.levels(delta)[3]


def test_nearest_level_only_where_thresholds_are_midpoints():
    x = np.random.default_rng(4).uniform(-4, 4, 20_000)
    for quantizer in (UQ, MSPTQ):
        nearest = quantizer.levels(1.0)[np.argmin(np.abs(x[:, None] - quantizer.levels(1.0)), axis=1)]
        np.testing.assert_array_equal(quantizer.quantize(x, 1.0), nearest)
    # SPTQ's threshold delta is below the midpoint 5 delta/4 of its levels: 1.1 goes to 2, though 0.5 is nearer.
    assert SPTQ.quantize(1.1, 1.0) == 2.0


@pytest.mark.parametrize("quantizer", ALL, ids=lambda q: q.name)
@pytest.mark.parametrize("variance", [1.0, 4.0])
def test_sampled_laplacian_matches_theory(quantizer, variance):
    """Sample MSE within 5 standard errors (about 1.5 % relative at 2e5 samples) of the closed form."""
    n = 200_000
    x = np.random.default_rng(11).laplace(0, math.sqrt(variance / 2), n)
    delta = optimal_delta(quantizer, variance=variance)
    squared = (x - quantizer.quantize(x, delta)) ** 2
    expected = distortion(quantizer, delta, variance=variance).total
    assert abs(squared.mean() - expected) < 5 * squared.std() / math.sqrt(n)
    assert abs(squared.mean() - expected) < 0.015 * expected
    assert empirical_sqnr_db(x, quantizer, delta) == pytest.approx(design(quantizer).sqnr_db, abs=0.1)


@pytest.mark.parametrize("quantizer", ALL, ids=lambda q: q.name)
def test_mismatch_curve_peaks_at_zero_db(quantizer):
    mismatch = np.round(np.linspace(-20, 20, 401), 10)
    curve = sqnr_mismatch_db(quantizer, mismatch)
    assert mismatch[np.argmax(curve)] == 0
    assert curve[200] == pytest.approx(design(quantizer).sqnr_db, rel=1e-12)
    assert np.all(np.diff(curve[:201]) > 0) and np.all(np.diff(curve[200:]) < 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="", threshold=1.0, multiples=(1, 3), support=2.0), r"^name must be a non-empty string, not ''$"),
    (dict(name="Q", threshold=1.0, multiples=(3, 1), support=2.0),
     r"^multiples must be two ascending positive integers, not \(3, 1\)$"),
    (dict(name="Q", threshold=2.0, multiples=(1, 3), support=2.0),
     r"^threshold must lie between the levels 0.5 and 1.5 \(units of delta\), not 2.0$"),
    (dict(name="Q", threshold=1.0, multiples=(1, 3), support=0.5), r"^support must be at least the threshold 1.0"),
])
def test_quantizer_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TwoBitQuantizer(**kwargs)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^delta must be a positive finite number, not 0$"):
        UQ.levels(0)
    with pytest.raises(ValueError, match=r"^variance must be a positive finite number, not -1.0$"):
        optimal_delta(UQ, variance=-1.0)
    with pytest.raises(ValueError, match=r"^values to quantize must be finite$"):
        UQ.encode([1.0, np.nan], 1.0)
    with pytest.raises(ValueError, match=r"^codes must be integers in \[0, 3\]$"):
        UQ.decode([0, 4], 1.0)
    with pytest.raises(ValueError, match=r"^delta must be positive and finite"):
        distortion(UQ, np.array([1.0, -1.0]))
    assert set(QUANTIZERS) == {"UQ", "SPTQ", "MSPTQ"}
