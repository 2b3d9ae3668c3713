"""Two-bit symmetric quantizers UQ, SPTQ and MSPTQ for a Laplacian source: mapping and design math (docs/two_bit.md).

Peric, Aleksic, Nikolic, Tomic (Mathematics 2022, 10(19), 3435) propose two four-level quantizers whose cell widths are
powers of two, SPTQ and MSPTQ, and compare them with the two-bit uniform quantizer UQ (Peric et al., Entropy 2021).
Each is fixed up to one step ``delta``; positive half (the negative half mirrors it)::

    quantizer   thresholds    levels        support region
    UQ          0, delta      delta/2, 3*delta/2   [-2 delta, 2 delta]
    SPTQ        0, delta      delta/2, 2*delta     [-3 delta, 3 delta]
    MSPTQ       0, 5*delta/4  delta/2, 2*delta     [-3 delta, 3 delta]

Every level is an integer multiple of ``delta/2`` (:attr:`TwoBitQuantizer.codebook`), so a two-bit code per weight and
a four-entry int8 codebook per layer run exactly on int8 MACs.

This module is float design math, not part of the bit-exact integer datapath: it uses NumPy and SciPy in double
precision. The Laplacian source of variance ``sigma**2`` has density ``p(x) = lambda/2 * exp(-lambda*|x|)`` with
``lambda = sqrt(2)/sigma``.
"""

import dataclasses
import math
from typing import NamedTuple

import numpy as np
from scipy import integrate, optimize

__all__ = [
    "TwoBitQuantizer", "UQ", "SPTQ", "MSPTQ", "QUANTIZERS",
    "Distortion", "TwoBitDesign", "LloydMaxDesign",
    "laplacian_pdf", "distortion", "distortion_numerical",
    "optimal_delta", "optimal_delta_numerical", "sqnr_db", "sqnr_mismatch_db", "empirical_sqnr_db",
    "design", "lloyd_max",
]


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TwoBitQuantizer:
    """A symmetric four-level quantizer fixed up to its step ``delta``.

    Positive half: cells ``[0, threshold*delta)`` and ``[threshold*delta, inf)`` with levels ``multiples[0]*delta/2``
    and ``multiples[1]*delta/2``; the granular (support) region is ``[-support*delta, support*delta]``, the overload
    region is ``|x| > support*delta``, where only the outermost levels serve.

    Parameters
    ----------
    name : str
        Short name shown in tables.
    threshold : float
        Inner positive decision threshold in units of ``delta``; must lie between the two positive levels.
    multiples : tuple of two int
        Positive levels in units of ``delta/2``, ascending.
    support : float
        Support-region bound ``x_max`` in units of ``delta``; at least ``threshold``.

    Raises
    ------
    ValueError
        If the levels are not ascending positive integers, or the threshold or support bound is out of order.
    """

    name: str
    threshold: float
    multiples: tuple
    support: float

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, not {self.name!r}")
        m = self.multiples
        if (not isinstance(m, tuple) or len(m) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in m) or not 0 < m[0] < m[1]):
            raise ValueError(f"multiples must be two ascending positive integers, not {m!r}")
        _check_positive("threshold", self.threshold)
        if not m[0] / 2 <= self.threshold <= m[1] / 2:
            raise ValueError(f"threshold must lie between the levels {m[0] / 2} and {m[1] / 2} (units of delta), "
                             f"not {self.threshold!r}")
        _check_positive("support", self.support)
        if self.support < self.threshold:
            raise ValueError(f"support must be at least the threshold {self.threshold}, not {self.support!r}")

    @property
    def codebook(self):
        """int64 levels of codes 0..3 in units of ``delta/2``, ascending: ``[-m1, -m0, m0, m1]``."""
        m0, m1 = self.multiples
        return np.array([-m1, -m0, m0, m1], dtype=np.int64)

    def thresholds(self, delta):
        """The three decision thresholds ``[-t, 0, t]`` for step ``delta``."""
        t = self.threshold * _check_positive("delta", delta)
        return np.array([-t, 0.0, t])

    def levels(self, delta):
        """The four representation levels, ascending (level of code ``i`` is ``levels[i]``)."""
        return self.codebook * (_check_positive("delta", delta) / 2)

    def support_region(self, delta):
        """``(-x_max, x_max)``: the granular region; beyond it is the overload region."""
        x_max = self.support * _check_positive("delta", delta)
        return -x_max, x_max

    def encode(self, x, delta):
        """Two-bit codes 0..3 (ascending levels) of real values ``x``.

        A magnitude exactly on the threshold goes to the outer level, zero goes to ``+delta/2`` (the sign of ``x >= 0``
        is positive), so the mapping is odd except at ``x == 0``.

        Raises
        ------
        ValueError
            If ``x`` holds a NaN or an infinity.
        """
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("values to quantize must be finite")
        outer = np.abs(x) >= self.threshold * _check_positive("delta", delta)
        return np.where(x >= 0, 2 + outer, 1 - outer).astype(np.int64)

    def decode(self, codes, delta):
        """Levels of two-bit ``codes``."""
        codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer) or np.any((codes < 0) | (codes > 3)):
            raise ValueError("codes must be integers in [0, 3]")
        return self.levels(delta)[codes]

    def quantize(self, x, delta):
        """Quantized values ``Q(x)`` (``decode(encode(x))``)."""
        return self.decode(self.encode(x, delta), delta)


UQ = TwoBitQuantizer(name="UQ", threshold=1.0, multiples=(1, 3), support=2.0)
SPTQ = TwoBitQuantizer(name="SPTQ", threshold=1.0, multiples=(1, 4), support=3.0)
MSPTQ = TwoBitQuantizer(name="MSPTQ", threshold=1.25, multiples=(1, 4), support=3.0)
QUANTIZERS = {q.name: q for q in (UQ, SPTQ, MSPTQ)}


class Distortion(NamedTuple):
    """Mean squared error of a quantizer, split into its granular and overload parts."""
    granular: float
    overload: float

    @property
    def total(self):
        return self.granular + self.overload


def laplacian_pdf(x, variance=1.0):
    """Density of the zero-mean Laplacian source of the given variance."""
    lam = math.sqrt(2.0 / _check_positive("variance", variance))
    return lam / 2 * np.exp(-lam * np.abs(np.asarray(x, dtype=np.float64)))


def _tail(x, y, lam):
    """``2 * integral_x^inf (u - y)**2 p(u) du`` for the Laplacian with ``lambda = lam``, ``x >= 0``.

    Closed form ``exp(-lam*x) * ((x-y)**2 + 2(x-y)/lam + 2/lam**2)``: both halves of the source, one cell edge.
    """
    e = x - y
    return np.exp(-lam * x) * (e * e + 2 * e / lam + 2 / lam ** 2)


def distortion(quantizer, delta, *, variance=1.0):
    """Granular and overload distortion of ``quantizer`` with step ``delta`` for a Laplacian source, closed form.

    With ``G_y(x) = exp(-lambda x) ((x-y)^2 + 2(x-y)/lambda + 2/lambda^2)`` (``G_y(inf) = 0``), thresholds
    ``0, t``, levels ``y1, y2`` and support bound ``x_max``::

        D_g = G_y1(0) - G_y1(t) + G_y2(t) - G_y2(x_max)
        D_o = G_y2(x_max)

    ``delta`` and ``variance`` broadcast (NumPy arrays give arrays).
    """
    delta = np.asarray(delta, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    if not (np.all(np.isfinite(delta)) and np.all(delta > 0)):
        raise ValueError(f"delta must be positive and finite, not {delta!r}")
    if not (np.all(np.isfinite(variance)) and np.all(variance > 0)):
        raise ValueError(f"variance must be positive and finite, not {variance!r}")
    lam = np.sqrt(2.0 / variance)
    t, x_max = quantizer.threshold * delta, quantizer.support * delta
    y1, y2 = quantizer.multiples[0] * delta / 2, quantizer.multiples[1] * delta / 2
    granular = _tail(0.0, y1, lam) - _tail(t, y1, lam) + _tail(t, y2, lam) - _tail(x_max, y2, lam)
    overload = _tail(x_max, y2, lam)
    if granular.ndim == 0:
        return Distortion(float(granular), float(overload))
    return Distortion(granular, overload)


def distortion_numerical(quantizer, delta, *, variance=1.0):
    """The same as :func:`distortion` by adaptive quadrature (``scipy.integrate.quad``) of ``(x - Q(x))**2 p(x)``.

    ``Q`` is :meth:`TwoBitQuantizer.quantize` itself, integrated over both halves piece by piece (one piece per cell
    of the granular region, one per overload tail), so this checks the closed form against the mapping.
    """
    delta = _check_positive("delta", delta)
    variance = _check_positive("variance", variance)

    def integrand(x):
        return (x - quantizer.quantize(x, delta)) ** 2 * laplacian_pdf(x, variance)

    def piece(low, high):
        # An interior point keeps the piece inside one cell: quad never evaluates the end points.
        return integrate.quad(integrand, low, high, epsabs=1e-15, epsrel=1e-13, limit=200)[0]

    t = quantizer.threshold * delta
    x_max = quantizer.support * delta
    edges = [-x_max, -t, 0.0, t, x_max]
    granular = sum(piece(a, b) for a, b in zip(edges[:-1], edges[1:]))
    overload = piece(-math.inf, -x_max) + piece(x_max, math.inf)
    return Distortion(granular, overload)


def _cell_moments(low, high, lam):
    """Probability and first moment of the positive-half cell ``[low, high)`` (``high`` may be inf)."""
    e_low = math.exp(-lam * low)
    e_high = 0.0 if math.isinf(high) else math.exp(-lam * high)
    upper = 0.0 if math.isinf(high) else (high + 1 / lam) * e_high
    return (e_low - e_high) / 2, ((low + 1 / lam) * e_low - upper) / 2


def optimal_delta(quantizer, *, variance=1.0, tol=1e-13, max_iter=10_000):
    """Step minimizing the total distortion, by the fixed-point iteration on ``dD/d(delta) = 0``.

    With threshold ``t = a delta``, levels ``y1 = b delta``, ``y2 = c delta``, cell probabilities ``P1, P2`` and first
    moments ``M1, M2`` over the positive half (cells ``[0, t)``, ``[t, inf)``)::

        delta <- (b M1 + c M2 + (a/2) delta^2 p(t) ((a-c)^2 - (a-b)^2)) / (b^2 P1 + c^2 P2)

    For UQ and MSPTQ (``t`` midway between the levels) the threshold term vanishes and each step is the
    least-squares scale of the levels over the current cells, a Lloyd step that never increases ``D``. Starting at
    ``delta = sigma``, it converges linearly in a few dozen iterations (docs/two_bit.md).

    Raises
    ------
    RuntimeError
        If it has not converged to a relative change below ``tol`` within ``max_iter`` iterations.
    """
    variance = _check_positive("variance", variance)
    lam = math.sqrt(2.0 / variance)
    a = quantizer.threshold
    b, c = quantizer.multiples[0] / 2, quantizer.multiples[1] / 2
    delta = math.sqrt(variance)
    for _ in range(max_iter):
        t = a * delta
        p1, m1 = _cell_moments(0.0, t, lam)
        p2, m2 = _cell_moments(t, math.inf, lam)
        pdf_t = lam / 2 * math.exp(-lam * t)
        new = (b * m1 + c * m2 + a / 2 * delta ** 2 * pdf_t * ((a - c) ** 2 - (a - b) ** 2)) / (b * b * p1 + c * c * p2)
        if abs(new - delta) <= tol * delta:
            return new
        delta = new
    raise RuntimeError(f"{quantizer.name}: fixed-point iteration did not converge in {max_iter} iterations")


def optimal_delta_numerical(quantizer, *, variance=1.0):
    """Step minimizing the closed-form total distortion by bounded scalar minimisation (``minimize_scalar``)."""
    sigma = math.sqrt(_check_positive("variance", variance))
    result = optimize.minimize_scalar(lambda d: distortion(quantizer, d, variance=variance).total,
                                      bounds=(1e-3 * sigma, 10 * sigma), method="bounded",
                                      options={"xatol": 1e-12 * sigma})
    if not result.success:
        raise RuntimeError(f"{quantizer.name}: minimize_scalar failed: {result.message}")
    return float(result.x)


def sqnr_db(variance, distortion_):
    """Signal-to-quantization-noise ratio ``10 log10(sigma^2 / D)`` in dB."""
    return 10 * np.log10(np.asarray(variance, dtype=np.float64) / np.asarray(distortion_, dtype=np.float64))


def sqnr_mismatch_db(quantizer, mismatch_db, *, delta=None, design_variance=1.0):
    """SQNR of a quantizer designed for ``design_variance`` used on a source of variance ``design * 10**(mismatch/10)``.

    ``delta`` defaults to :func:`optimal_delta` at the design variance. Since ``D(delta, sigma) = sigma^2
    D(delta/sigma, 1)``, the SQNR is ``-10 log10 D(delta/sigma, 1)``: its maximum is at 0 dB mismatch.
    """
    if delta is None:
        delta = optimal_delta(quantizer, variance=design_variance)
    variance = _check_positive("design_variance", design_variance) * 10 ** (np.asarray(mismatch_db, float) / 10)
    return sqnr_db(variance, distortion(quantizer, delta, variance=variance).total)


def empirical_sqnr_db(x, quantizer, delta):
    """Measured SQNR ``10 log10(sum x^2 / sum (x - Q(x))^2)`` of the values ``x``."""
    x = np.asarray(x, dtype=np.float64)
    error = x - quantizer.quantize(x, delta)
    return float(sqnr_db(np.sum(x * x), np.sum(error * error)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TwoBitDesign:
    """A quantizer with its minimum-distortion step for a Laplacian source of ``variance``.

    ``thresholds`` (three), ``levels`` (four, ascending) and ``support`` (``(-x_max, x_max)``) are tuples of floats.
    """
    name: str
    variance: float
    delta: float
    thresholds: tuple
    levels: tuple
    support: tuple
    granular_distortion: float
    overload_distortion: float
    distortion: float
    sqnr_db: float


def design(quantizer, *, variance=1.0):
    """Optimal design of ``quantizer`` (step by :func:`optimal_delta`) for a Laplacian source of ``variance``."""
    delta = optimal_delta(quantizer, variance=variance)
    d = distortion(quantizer, delta, variance=variance)
    return TwoBitDesign(
        name=quantizer.name, variance=float(variance), delta=delta,
        thresholds=tuple(quantizer.thresholds(delta).tolist()), levels=tuple(quantizer.levels(delta).tolist()),
        support=quantizer.support_region(delta), granular_distortion=d.granular, overload_distortion=d.overload,
        distortion=d.total, sqnr_db=float(sqnr_db(variance, d.total)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class LloydMaxDesign:
    """The minimum-MSE four-level quantizer (Lloyd-Max) of a Laplacian source, for comparison."""
    variance: float
    thresholds: tuple
    levels: tuple
    distortion: float
    sqnr_db: float


def lloyd_max(*, variance=1.0, tol=1e-14, max_iter=10_000):
    """Lloyd-Max four-level quantizer: alternate centroid levels and midpoint thresholds until they settle.

    Raises
    ------
    RuntimeError
        If the threshold has not settled within ``max_iter`` iterations.
    """
    variance = _check_positive("variance", variance)
    lam = math.sqrt(2.0 / variance)
    t = math.sqrt(variance)
    for _ in range(max_iter):
        p1, m1 = _cell_moments(0.0, t, lam)
        p2, m2 = _cell_moments(t, math.inf, lam)
        y1, y2 = m1 / p1, m2 / p2
        new = (y1 + y2) / 2
        if abs(new - t) <= tol * t:
            break
        t = new
    else:
        raise RuntimeError(f"Lloyd-Max iteration did not converge in {max_iter} iterations")
    total = float(_tail(0.0, y1, lam) - _tail(t, y1, lam) + _tail(t, y2, lam))
    return LloydMaxDesign(variance=variance, thresholds=(-t, 0.0, t), levels=(-y2, -y1, y1, y2),
                          distortion=total, sqnr_db=float(sqnr_db(variance, total)))
