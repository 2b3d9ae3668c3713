"""Weight quantization methods: one float weight tensor (output channels on axis 0) -> int weights and scales.

Methods (all symmetric, zero point 0, integers in ``[-qmax, qmax]`` with ``qmax = 2**(bits-1) - 1``):

``layer``
    One scale ``s = max|W| / qmax`` for the whole layer (per-tensor).
``channel``
    One scale ``s_c = max|W_c| / qmax`` per output channel, as TFLite does. A reference: the NPU stores one
    multiplier per layer, not one per channel.
``wess``
    The WESS paper's rule (docs/quantizer.md): ``r_c = max|W_c|``, ``k_c = min(2**shift_bits - 1,
    floor(log2(max_c r / r_c)))``, ``W'_c = W_c * 2**k_c``, one layer scale ``s = max_c r / qmax``,
    ``q = clip(round_half_away(W'_c / s), -qmax, qmax)``. Channel ``c`` then has the effective scale ``s * 2**-k_c``,
    so the layer is a TFLite per-channel layer whose channel scales differ by powers of two (one multiplier).
``wess-mse``
    As ``wess``, but each ``k_c`` is chosen among ``floor``, ``floor + 1`` and ``floor + 2`` (within the shift
    range) to minimise the channel's weight quantization error ``sum (W_c - s 2**-k_c q_c)**2``; the larger shifts
    clip the channel's largest weights to ``qmax`` in exchange for a finer grid for all the others.

Quantizers (``quantizer=``): ``uniform`` is the integer grid above. ``uq``, ``sptq`` and ``msptq`` are the two-bit
quantizers of two_bit.py (docs/two_bit.md), ``bits=2`` only: their step is ``delta = delta_opt * sigma``, with
``delta_opt`` the optimal step for a unit-variance Laplacian source and ``sigma`` the (population) standard deviation
of the layer's weights -- for ``wess`` and ``wess-mse`` of the layer AFTER the WESS shift, ``W'_c = W_c * 2**k_c``
(power-of-two-equalized channels); for ``channel`` of each channel. The stored scale is ``s = delta/2`` (snapped
down, below) and the integers are the levels in units of ``delta/2``: ``{-3, -1, 1, 3}`` (UQ) or ``{-4, -1, 1, 4}``
(SPTQ, MSPTQ), i.e. ``codebook[encode(W'/s, delta=2)]`` -- the thresholds are applied to ``W * 2**k_c / s`` in units
of ``s``. These run unchanged on the int8 MACs; ``wess-mse`` picks ``k_c`` by the same error rule with the step of
the paper-rule shifts. None of the three has a zero level: a zero weight becomes ``+delta/2``.

A channel whose weights are all zero gets the largest shift ``k_c = 2**shift_bits - 1``, as the paper's formula gives
for ``r_c -> 0`` (docs/arithmetic.md section 2); its integers are zeros whatever the shift.

Every scale is rounded DOWN to :data:`SCALE_BITS` significant bits (:func:`snap_scale`) before the integers are
computed: the largest weight then still lands on ``qmax`` (``r / s`` exceeds ``qmax`` by at most ``2**-10``
relative, which rounds to ``qmax``), and float round-off of about ``1e-7`` in the float weights — e.g. batch norm
folded by an exporter in float32 versus by the importer in float64 — almost never changes a scale, so both exports
give the same integers and the same fixed-point multipliers.
"""

import dataclasses
import functools

import numpy as np

from golden.requant import round_half_away_from_zero

from . import two_bit

__all__ = [
    "METHODS", "QUANTIZERS", "TWO_BIT_QUANTIZERS", "SCALE_BITS", "WeightQuantization", "quantize_weights",
    "channel_ranges", "wess_shifts", "round_to_grid", "qmax_for_bits", "snap_scale", "unit_delta", "sqnr_db",
]

#: Weight quantization methods, in the order reports list them.
METHODS = ("layer", "channel", "wess", "wess-mse")

#: The two-bit quantizers by their command-line name (two_bit.UQ, SPTQ, MSPTQ).
TWO_BIT_QUANTIZERS = {name.lower(): quantizer for name, quantizer in two_bit.QUANTIZERS.items()}

#: Weight quantizers: the uniform integer grid of ``bits`` bits, then the two-bit quantizers.
QUANTIZERS = ("uniform",) + tuple(TWO_BIT_QUANTIZERS)

#: Significant bits kept in every weight and activation scale (:func:`snap_scale`).
SCALE_BITS = 10


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class WeightQuantization:
    """Result of :func:`quantize_weights`.

    Members
    -------
    method : str
    bits : int
        Weight bits; ``uniform`` integers lie in ``[-qmax, qmax]``.
    values : numpy.ndarray
        int64 integers, the shape of the float weights.
    scales : numpy.ndarray
        float64 ``(C,)``: the effective scale of each output channel (``real = scale_c * value``).
    layer_scale : float or None
        The one stored scale ``s`` of ``layer``, ``wess`` and ``wess-mse`` (``scales = s * 2**-shifts``);
        ``None`` for ``channel``.
    shifts : numpy.ndarray
        int64 ``(C,)``: the WESS shift ``k_c`` (zeros for ``layer`` and ``channel``).
    clipped : int
        How many weights were clipped to ``qmax`` by more than half a step (two-bit quantizers: how many lie in the
        overload region, beyond the support region).
    quantizer : str
        One of :data:`QUANTIZERS`.
    codebook : numpy.ndarray or None
        Two-bit quantizers: int64 ``(4,)``, the integer of each code 0..3, ascending (every value is one of them);
        ``None`` for ``uniform``.
    """
    method: str
    bits: int
    values: np.ndarray
    scales: np.ndarray
    layer_scale: float
    shifts: np.ndarray
    clipped: int
    quantizer: str = "uniform"
    codebook: np.ndarray = None

    def dequantized(self):
        """The float weights these integers stand for."""
        return self.values * self.scales.reshape((-1,) + (1,) * (self.values.ndim - 1))


def qmax_for_bits(bits):
    """Largest weight integer of a symmetric ``bits``-bit quantizer: ``2**(bits-1) - 1``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"weight bits must be an integer in [2, 8], not {bits!r}")
    return (1 << (bits - 1)) - 1


def snap_scale(scale, *, up):
    """Round positive scale(s) to :data:`SCALE_BITS` significant bits, up or down (exact in float32 and float64).

    Scales that differ only by float round-off (``~1e-7`` relative) then become equal unless they straddle one of
    the grid points, ``2**-10`` apart relative: the quantized network does not depend on that round-off.

    Examples:
        >>> snap_scale(0.1, up=False), snap_scale(0.1, up=True)
        (0.0999755859375, 0.10009765625)
    """
    scale = np.asarray(scale, dtype=np.float64)
    if np.any(~np.isfinite(scale) | (scale <= 0)):
        raise ValueError("scales must be positive and finite")
    mantissa, exponent = np.frexp(scale)
    steps = (np.ceil if up else np.floor)(mantissa * (1 << SCALE_BITS))
    result = np.ldexp(steps / (1 << SCALE_BITS), exponent)
    return result if result.ndim else float(result)


@functools.cache
def unit_delta(quantizer):
    """The step ``delta_opt`` of a two-bit quantizer (name in :data:`TWO_BIT_QUANTIZERS`) minimizing the distortion of a
    unit-variance Laplacian source (``two_bit.optimal_delta``: UQ 1.08739, SPTQ 0.85040, MSPTQ 0.90210)."""
    return two_bit.optimal_delta(TWO_BIT_QUANTIZERS[quantizer])


def channel_ranges(weights):
    """``r_c = max |W_c|`` over everything but axis 0 (the output channel), float64 ``(C,)``."""
    weights = np.asarray(weights, dtype=np.float64)
    return np.abs(weights.reshape(weights.shape[0], -1)).max(axis=1)


def wess_shifts(ranges, shift_bits):
    """The paper's shift ``k_c = min(2**shift_bits - 1, floor(log2(max_c r / r_c)))``, the maximum for ``r_c = 0``.

    Computed exactly: ``floor(log2(x))`` is the binary exponent of ``x`` minus one (``frexp``), then corrected so that
    ``r_c * 2**k_c <= max_c r`` holds (a shifted channel never exceeds the largest one).
    """
    if not isinstance(shift_bits, int) or isinstance(shift_bits, bool) or not 0 <= shift_bits <= 8:
        raise ValueError(f"shift bits must be an integer in [0, 8], not {shift_bits!r}")
    ranges = np.asarray(ranges, dtype=np.float64)
    top = ranges.max(initial=0.0)
    live = ranges > 0
    exponent = np.frexp(np.where(live, top / np.where(live, ranges, 1.0), 1.0))[1].astype(np.int64) - 1
    exponent = np.where(ranges * np.exp2(exponent) > top, exponent - 1, exponent)
    return np.minimum(np.where(live, exponent, 1 << shift_bits), (1 << shift_bits) - 1).astype(np.int64)


def quantize_weights(weights, *, method="wess", bits=8, shift_bits=4, quantizer="uniform"):
    """Quantize a float weight tensor (output channels on axis 0) with one of :data:`METHODS` and :data:`QUANTIZERS`.

    Raises
    ------
    ValueError
        For an unknown method or quantizer, bits out of [2, 8] (not 2 for a two-bit quantizer), shift bits out of
        range, NaN/infinite weights, a layer whose weights are all zero (no scale can be derived from it) or, for a
        two-bit quantizer, whose weights all have the same value (standard deviation 0).
    """
    if method not in METHODS:
        raise ValueError(f"weight method must be one of {', '.join(METHODS)}, not {method!r}")
    if quantizer not in QUANTIZERS:
        raise ValueError(f"weight quantizer must be one of {', '.join(QUANTIZERS)}, not {quantizer!r}")
    qmax = qmax_for_bits(bits)
    if quantizer != "uniform" and bits != 2:
        raise ValueError(f"the two-bit quantizer {quantizer} needs 2 weight bits, not {bits!r}")
    weights = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(weights)):
        raise ValueError("weights hold NaN or infinite values")
    ranges = channel_ranges(weights)
    top = float(ranges.max(initial=0.0))
    if top == 0.0:
        raise ValueError("every weight of the layer is zero: no scale can be derived")
    channels = weights.shape[0]
    if quantizer == "uniform":
        codebook = None
        round_ = functools.partial(round_to_grid, qmax=qmax)
    else:
        codebook = TWO_BIT_QUANTIZERS[quantizer].codebook
        round_ = functools.partial(_round_two_bit, quantizer=TWO_BIT_QUANTIZERS[quantizer])
    shifts = np.zeros(channels, dtype=np.int64)
    if method in ("wess", "wess-mse"):
        shifts = wess_shifts(ranges, shift_bits)
    if method == "channel":
        # A dead channel keeps the layer-wide scale: any scale represents zeros, and a tiny one would blow up its bias.
        if codebook is None:
            scales = snap_scale(np.where(ranges > 0, ranges, top) / qmax, up=False)
        else:
            sigmas = weights.reshape(channels, -1).std(axis=1)
            constant = np.ptp(weights.reshape(channels, -1), axis=1) == 0
            sigmas = np.where(constant, _layer_sigma(weights), sigmas)
            scales = snap_scale(unit_delta(quantizer) * sigmas / 2, up=False)
        layer_scale = None
    else:
        if codebook is None:
            layer_scale = snap_scale(top / qmax, up=False)
        else:
            # delta = delta_opt * sigma of the (shifted) layer; the stored scale is delta / 2.
            layer_scale = snap_scale(unit_delta(quantizer) * _layer_sigma(weights * _channels(np.exp2(shifts),
                                                                                              weights.ndim)) / 2,
                                     up=False)
        if method == "wess-mse":
            shifts = _mse_shifts(weights, shifts, layer_scale, round_, (1 << shift_bits) - 1)
        scales = layer_scale * np.exp2(-shifts.astype(np.float64))
    values, clipped = round_(weights, scales)
    return WeightQuantization(method=method, bits=bits, values=values, scales=scales, layer_scale=layer_scale,
                              shifts=shifts, clipped=clipped, quantizer=quantizer, codebook=codebook)


def sqnr_db(reference, approximation):
    """Signal-to-quantization-noise ratio ``10 log10(sum ref**2 / sum (ref - approx)**2)`` in dB (inf if exact)."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(approximation, dtype=np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def _channels(array, ndim):
    return np.asarray(array).reshape((-1,) + (1,) * (ndim - 1))


def round_to_grid(weights, scales, *, qmax):
    """``(q, clipped)``: nearest rounding ``q = clip(round_half_away(W / s_c), -qmax, qmax)`` (int64) of ``weights``
    (output channels on axis 0) at the channel ``scales``, and how many weights lie beyond ``qmax`` by more than half
    a step. ``W / (s 2**-k) = W 2**k / s`` exactly in float64."""
    exact = weights / _channels(scales, weights.ndim)
    values = round_half_away_from_zero(exact)
    clipped = int(np.count_nonzero(np.abs(exact) > qmax + 0.5))
    return np.clip(values, -qmax, qmax).astype(np.int64), clipped


def _round_two_bit(weights, scales, *, quantizer):
    # In units of s = delta/2 the step is 2: the level integers are codebook[encode(W 2**k / s, 2)].
    exact = weights / _channels(scales, weights.ndim)
    values = quantizer.codebook[quantizer.encode(exact, 2.0)]
    clipped = int(np.count_nonzero(np.abs(exact) > 2 * quantizer.support))
    return values, clipped


def _layer_sigma(weights):
    if np.ptp(weights) == 0.0:             # np.std of equal values may be round-off rather than 0
        raise ValueError("every weight of the layer has the same value: no two-bit step can be derived "
                         "(standard deviation 0)")
    return float(np.std(weights))


def _mse_shifts(weights, floor_shifts, layer_scale, round_, max_shift):
    flat = weights.reshape(weights.shape[0], -1)
    best_shift = floor_shifts.copy()
    best_error = None
    for extra in range(3):
        shifts = np.minimum(floor_shifts + extra, max_shift)
        scales = layer_scale * np.exp2(-shifts.astype(np.float64))
        values, _ = round_(flat, scales)
        error = np.sum((flat - values * scales[:, None]) ** 2, axis=1)
        if best_error is None:
            best_error = error
            continue
        better = error < best_error            # ties keep the smaller (paper's) shift
        best_shift = np.where(better, shifts, best_shift)
        best_error = np.where(better, error, best_error)
    return best_shift
