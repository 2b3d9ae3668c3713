"""Paired comparisons of two classifiers on the same images: bootstrap interval of the top-1 difference, McNemar.

On a few hundred images one image is a quarter of a point and two methods differ by a point or two by chance, so the
quantizer's report states, for every method against the per-channel reference and against the float model, how
sure the difference is: a paired bootstrap interval (both methods are resampled on the same images, so what they
share cancels) and McNemar's exact test on the discordant images (the images exactly one of the two gets right).
:func:`paired_sqnr_bootstrap` does the same for the logit SQNR of two approximations of the same reference logits.
"""

import numpy as np
from scipy.stats import binomtest

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "paired_bootstrap", "mcnemar_exact", "compare",
           "paired_sqnr_bootstrap"]

#: Resamples of :func:`paired_bootstrap` in the quantizer's report.
BOOTSTRAP_RESAMPLES = 10_000
#: Seed of the report's bootstrap: the intervals are reproducible.
BOOTSTRAP_SEED = 0


def _correct_pair(correct_a, correct_b):
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two equally long, non-empty 1-D arrays of per-image outcomes, not shapes "
                         f"{a.shape} and {b.shape}")
    return a, b


def paired_bootstrap(correct_a, correct_b, *, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED, level=0.95):
    """Percentile bootstrap interval of ``top1(a) - top1(b)`` in percentage points, resampling images in pairs.

    A resample draws ``n`` images with replacement and takes the difference of the two accuracies on them. Per image
    the difference is -1, 0 or +1, so a resample is fully described by how many of each it drew: a multinomial draw
    with the observed shares, which is what this computes (the same distribution as index resampling, without an
    ``n x resamples`` array).

    Returns:
        ``(difference, low, high)``: the observed difference and the ``level`` interval, in points.
    """
    a, b = _correct_pair(correct_a, correct_b)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, not {resamples!r}")
    n = a.size
    d = a.astype(np.int64) - b.astype(np.int64)
    shares = np.array([np.sum(d == -1), np.sum(d == 0), np.sum(d == 1)], dtype=np.float64) / n
    counts = np.random.default_rng(seed).multinomial(n, shares, size=resamples)
    differences = 100.0 * (counts[:, 2] - counts[:, 0]) / n
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(differences, [tail, 1.0 - tail])
    return 100.0 * float(d.sum()) / n, float(low), float(high)


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test: ``(a_only, b_only, p)``.

    ``a_only`` images only ``a`` classifies correctly, ``b_only`` only ``b``; under the null hypothesis (equal
    accuracy) each discordant image is a fair coin, so ``p`` is the two-sided binomial probability of a split at least
    as uneven as the observed one (1 when no image is discordant).
    """
    a, b = _correct_pair(correct_a, correct_b)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if a_only + b_only == 0:
        return a_only, b_only, 1.0
    return a_only, b_only, float(binomtest(a_only, a_only + b_only, 0.5).pvalue)


def compare(correct_a, correct_b, *, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """Both tests of ``a`` against ``b`` as the JSON-able dict of results.json: ``difference_pp``, ``ci95_pp``
    ``[low, high]``, ``only_this`` / ``only_other`` (discordant images) and ``mcnemar_p``."""
    difference, low, high = paired_bootstrap(correct_a, correct_b, resamples=resamples, seed=seed)
    a_only, b_only, p = mcnemar_exact(correct_a, correct_b)
    return {"difference_pp": difference, "ci95_pp": [low, high], "only_this": a_only, "only_other": b_only,
            "mcnemar_p": p}


def paired_sqnr_bootstrap(reference, approximation_a, approximation_b, *, resamples=BOOTSTRAP_RESAMPLES,
                          seed=BOOTSTRAP_SEED, level=0.95, chunk=1000):
    """Percentile bootstrap interval of ``SQNR(a) - SQNR(b)`` in dB against the same ``reference``, resampling images.

    ``reference`` and the approximations are ``(images, ...)`` arrays; the SQNR of a resample is ``10 log10(sum
    signal / sum noise)`` over the drawn images (:func:`tools.quantizer.weights.sqnr_db` on them), both methods on the
    same draw (``chunk`` resamples at a time). Tells whether two points of a bit sweep differ by more than the
    choice of images.

    Returns:
        ``(difference, low, high)`` in dB.
    Raises:
        ValueError: shapes differ, no image, an approximation without error, or a bad ``level``/``resamples``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    a = np.asarray(approximation_a, dtype=np.float64)
    b = np.asarray(approximation_b, dtype=np.float64)
    if reference.ndim < 1 or reference.shape[0] == 0 or a.shape != reference.shape or b.shape != reference.shape:
        raise ValueError(f"need a non-empty reference and two approximations of its shape, not shapes "
                         f"{reference.shape}, {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, not {resamples!r}")
    n = reference.shape[0]
    # The signal of a draw is the same for both: the difference is 10 log10(noise b / noise a).
    noise_a, noise_b = (np.sum((x - reference).reshape(n, -1) ** 2, axis=1) for x in (a, b))
    if not noise_a.any() or not noise_b.any():
        raise ValueError("an approximation equals the reference: its SQNR is infinite")
    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, resamples, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - start)).astype(np.float64)
        with np.errstate(divide="ignore"):          # a draw of only error-free images of a or b: +-inf dB
            differences.append(10.0 * np.log10((counts @ noise_b) / (counts @ noise_a)))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(differences), [tail, 1.0 - tail])
    return 10.0 * float(np.log10(noise_b.sum() / noise_a.sum())), float(low), float(high)
