"""tools/quantizer/statistics.py: McNemar's exact p against hand-computed binomial sums, the paired bootstrap against
index resampling and its coverage, symmetry and determinism."""

import math

import numpy as np
import pytest

from tools.quantizer.statistics import compare, mcnemar_exact, paired_bootstrap, paired_sqnr_bootstrap
from tools.quantizer.weights import sqnr_db


def _outcomes(both, a_only, b_only, neither):
    # Per-image correctness of two classifiers with the given 2x2 table.
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return np.array(a), np.array(b)


def _two_sided_binomial(k, n):
    # Independent: sum of C(n, i) / 2**n over the tails at least as extreme as k, doubled, capped at 1.
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("a_only, b_only", [(0, 5), (1, 7), (3, 3), (2, 9), (10, 4), (0, 1), (12, 30)])
def test_mcnemar_matches_binomial_sums(a_only, b_only):
    a, b = _outcomes(50, a_only, b_only, 7)
    got_a, got_b, p = mcnemar_exact(a, b)
    assert (got_a, got_b) == (a_only, b_only)
    assert p == pytest.approx(_two_sided_binomial(a_only, a_only + b_only), rel=1e-12)


def test_mcnemar_hand_values_and_no_discordance():
    # 0 vs 5: 2 / 32; 1 vs 7: 2 * (1 + 8) / 256; equal split: 1.
    assert mcnemar_exact(*_outcomes(3, 0, 5, 1))[2] == pytest.approx(2 / 32)
    assert mcnemar_exact(*_outcomes(3, 1, 7, 1))[2] == pytest.approx(18 / 256)
    assert mcnemar_exact(*_outcomes(3, 4, 4, 1))[2] == pytest.approx(1.0)
    assert mcnemar_exact(*_outcomes(10, 0, 0, 3)) == (0, 0, 1.0)


def test_bootstrap_matches_index_resampling():
    # The multinomial shortcut has the distribution of resampling image indices: compare the quantiles.
    rng = np.random.default_rng(1)
    a, b = rng.random(300) < 0.8, rng.random(300) < 0.75
    _, low, high = paired_bootstrap(a, b, resamples=20_000, seed=2)
    index = rng.integers(0, a.size, size=(20_000, a.size))
    direct = 100.0 * (a[index].mean(axis=1) - b[index].mean(axis=1))
    ref_low, ref_high = np.quantile(direct, [0.025, 0.975])
    assert low == pytest.approx(ref_low, abs=0.7) and high == pytest.approx(ref_high, abs=0.7)


def test_bootstrap_difference_symmetry_and_determinism():
    a, b = _outcomes(300, 20, 20, 60)
    difference, low, high = paired_bootstrap(a, b)
    assert difference == 0.0
    assert low < 0 < high and low == pytest.approx(-high, abs=0.25 + 1e-9)   # one image is 0.25 pp
    a, b = _outcomes(300, 30, 10, 60)
    first = paired_bootstrap(a, b, seed=5)
    assert first == paired_bootstrap(a, b, seed=5)
    assert first[0] == pytest.approx(100.0 * 20 / 400)
    assert first[1] < first[0] < first[2]
    # Swapping the two classifiers mirrors the interval.
    swapped = paired_bootstrap(b, a, seed=5)
    assert swapped[0] == -first[0]
    assert swapped[1] == pytest.approx(-first[2], abs=0.25 + 1e-9)


def test_bootstrap_interval_covers_the_true_difference():
    # Synthetic classifiers with true accuracies 0.80 and 0.76 (difference 4 pp): about 95 % of the intervals contain it.
    rng = np.random.default_rng(3)
    hits, trials = 0, 200
    for trial in range(trials):
        shared = rng.random(400)
        a = shared < 0.80
        b = np.where(rng.random(400) < 0.5, shared < 0.76, rng.random(400) < 0.76)
        _, low, high = paired_bootstrap(a, b, resamples=2000, seed=trial)
        hits += low <= 4.0 <= high
    assert 0.90 <= hits / trials <= 0.99


def test_compare_and_bad_input():
    a, b = _outcomes(10, 3, 1, 6)
    result = compare(a, b, resamples=500)
    assert result["difference_pp"] == pytest.approx(10.0)
    assert (result["only_this"], result["only_other"]) == (3, 1)
    assert result["mcnemar_p"] == pytest.approx(_two_sided_binomial(1, 4))
    assert result["ci95_pp"][0] <= 10.0 <= result["ci95_pp"][1]
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="equally long"):
        mcnemar_exact([], [])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=1.0)


def _logits(n, noise_a, noise_b, seed=0):
    rng = np.random.default_rng(seed)
    reference = rng.standard_normal((n, 10))
    return (reference, reference + noise_a * rng.standard_normal((n, 10)),
            reference + noise_b * rng.standard_normal((n, 10)))


def test_paired_sqnr_difference_and_interval():
    # Twice the noise amplitude is 6.02 dB less SQNR: the interval holds it and excludes 0.
    reference, a, b = _logits(2000, 0.1, 0.2)
    difference, low, high = paired_sqnr_bootstrap(reference, a, b, resamples=2000)
    assert difference == pytest.approx(sqnr_db(reference, a) - sqnr_db(reference, b), abs=1e-12)
    assert low < difference < high and 0 < low and low < 20 * np.log10(2) < high and high - low < 0.6
    # Swapped methods negate everything; the same seed gives the same interval; chunking does not matter.
    assert paired_sqnr_bootstrap(reference, b, a, resamples=2000) == pytest.approx((-difference, -high, -low))
    assert paired_sqnr_bootstrap(reference, a, b, resamples=2000) == (difference, low, high)
    assert paired_sqnr_bootstrap(reference, a, b, resamples=2000, chunk=7) == pytest.approx((difference, low, high),
                                                                                            abs=0.2)


def test_paired_sqnr_interval_of_equal_noise_holds_zero_and_shrinks_with_images():
    widths = []
    for n in (100, 1600):
        reference, a, b = _logits(n, 0.1, 0.1, seed=n)
        _, low, high = paired_sqnr_bootstrap(reference, a, b, resamples=2000)
        assert low < 0 < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2.5                      # about 1 / sqrt(16) = 1 / 4


def test_paired_sqnr_interval_is_wider_when_a_few_images_carry_the_noise():
    # The same total noise on 5 of 1000 images instead of all: the choice of images decides much more.
    reference, a, b = _logits(1000, 0.1, 0.1, seed=4)
    spread = a.copy()
    spread[:5] += np.sqrt(200) * 0.1 * np.random.default_rng(5).standard_normal((5, 10))
    _, low_even, high_even = paired_sqnr_bootstrap(reference, a, b, resamples=2000)
    _, low, high = paired_sqnr_bootstrap(reference, spread, b, resamples=2000)
    assert high - low > 5 * (high_even - low_even)


@pytest.mark.parametrize("kwargs, message", [({"level": 1.0}, "level"), ({"resamples": 0}, "resamples")])
def test_paired_sqnr_bad_arguments(kwargs, message):
    reference, a, b = _logits(10, 0.1, 0.2)
    with pytest.raises(ValueError, match=message):
        paired_sqnr_bootstrap(reference, a, b, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        paired_sqnr_bootstrap(reference, a[:5], b)
    with pytest.raises(ValueError, match="shape"):
        paired_sqnr_bootstrap(reference[:0], a[:0], b[:0])
    with pytest.raises(ValueError, match="infinite"):
        paired_sqnr_bootstrap(reference, reference, b)
