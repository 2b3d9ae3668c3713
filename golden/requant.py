"""Golden model of the requantizer: int32 accumulator -> int8 activation (docs/arithmetic.md, sections 4-6).

Pure vectorised NumPy on int64. Every function mirrors one stage of ``hdl/requant.py`` and carries the same name.
:func:`quantize_multiplier` is the only place in the project where a float scale becomes fixed point.
"""

import math

import numpy as np

__all__ = [
    "INT32_MIN", "INT32_MAX",
    "quantize_multiplier", "round_half_away_from_zero",
    "saturate_int32", "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier", "requantize", "activation_bounds",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def quantize_multiplier(real_multiplier):
    """Split a non-negative real multiplier into ``(multiplier, shift)`` with ``real ~= multiplier * 2**(shift - 31)``.

    TFLite's QuantizeMultiplier, in double precision: ``q, e = frexp(real)``, ``multiplier = round(q * 2**31)``
    (half away from zero); a mantissa that rounds up to ``2**31`` becomes ``2**30`` with ``e + 1``; a multiplier too
    small to represent (``e < -31``) becomes ``(0, 0)``.

    Args:
        real_multiplier: ``s_in * s_w / s_out`` as a Python/NumPy float (computed in double precision).
    Returns:
        ``(multiplier, shift)``: ``multiplier`` is 0 or in ``[2**30, 2**31)``; ``shift`` is the signed exponent
        (positive = left shift), in ``[-31, 31]``.
    Raises:
        ValueError: for a negative, infinite or NaN multiplier, or one of ``2**31`` or more.

    Examples:
        >>> quantize_multiplier(0.5)
        (1073741824, 0)
        >>> quantize_multiplier(0.0)
        (0, 0)
    """
    real = float(real_multiplier)
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"real multiplier must be finite and non-negative, not {real!r}")
    if real == 0.0:
        return 0, 0
    q, e = math.frexp(real)
    multiplier = int(round_half_away_from_zero(q * (1 << 31)))
    if multiplier == 1 << 31:
        multiplier, e = 1 << 30, e + 1
    if e < -31:
        return 0, 0
    if e > 31:
        raise ValueError(f"real multiplier {real!r} is too large: its exponent {e} exceeds 31")
    return multiplier, e


def round_half_away_from_zero(x):
    """Round to the nearest integer, ties away from zero (C's ``std::round``); never NumPy's half-to-even."""
    x = np.asarray(x, dtype=np.float64)
    result = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return result if result.ndim else float(result)


def saturate_int32(x):
    """Clamp int64 values to the int32 range: the requantizer's left shift saturates (docs/arithmetic.md, section 5)."""
    return np.clip(np.asarray(x, dtype=np.int64), INT32_MIN, INT32_MAX)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul: the high 32 bits of ``2*a*b``, rounded.

    ``a == b == INT32_MIN`` saturates to ``INT32_MAX``; otherwise ``p = a*b`` (exact in int64),
    ``nudge = 2**30 if p >= 0 else 1 - 2**30`` and the result is ``(p + nudge) / 2**31`` truncated toward zero.
    Algebraically this is ``floor((p + 2**30) / 2**31)``, which is what the RTL computes.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    product = a * b
    nudged = product + np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    quotient = np.abs(nudged) >> 31                       # truncation toward zero, done on magnitudes
    result = np.where(nudged < 0, -quotient, quotient)
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, result)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero.

    ``mask = 2**e - 1``, ``remainder = x & mask``, ``threshold = (mask >> 1) + (x < 0)``;
    result ``(x >> e) + (remainder > threshold)``. Defined here for ``0 <= exponent <= 62``; for an int32 ``x`` other
    than INT32_MIN an exponent of 32 or more gives 0.
    """
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    if np.any((exponent < 0) | (exponent > 62)):
        raise ValueError("exponent must be in [0, 62]")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite's MultiplyByQuantizedMultiplier with gemmlowp double rounding, in the hardware's form.

    ``RDBPOT(SRDHM(sat32(x * 2**max(shift, 0)), multiplier), max(-shift, 0))`` (docs/arithmetic.md, section 5): where
    TFLite's ``x * (1 << left)`` would overflow int32 (undefined behaviour in C++), the left-shifted value saturates to
    INT32_MIN / INT32_MAX; the quantizer refuses networks that could reach it. With
    ``0 <= multiplier < 2**31`` SRDHM is ``floor((x*M + 2**30) / 2**31)`` and RDBPOT(h, r) is
    ``(h + 2**(r-1) - (h < 0)) >> r`` for ``r > 0`` (0 for ``r >= 32``): what ``hdl/requant.py`` computes, and
    ``tests/golden/test_requant.py`` checks it against the literal definitions above.
    """
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise ValueError("accumulators must lie in int32 range")
    multiplier = np.asarray(multiplier, dtype=np.int64)
    if np.any((multiplier < 0) | (multiplier > INT32_MAX)):
        raise ValueError("multiplier must lie in [0, 2**31)")
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.minimum(np.maximum(-shift, 0), 32)
    shifted = saturate_int32(x << left) if np.any(left) else x          # |x << left| < 2**62: exact in int64
    high = (shifted * multiplier + (1 << 30)) >> 31
    half = (np.int64(1) << right) >> 1
    return (high + half - ((high < 0) & (right > 0))) >> right


def requantize(acc, multiplier, shift, channel_shift, zero_point, qmin, qmax):
    """The WESS requantizer: one per-layer ``(multiplier, shift)``, a per-channel shift ``k_c``, zero point, clamp.

    ``clamp(MBQM(acc, multiplier, shift - channel_shift) + zero_point, qmin, qmax)``. The channel shift only lengthens
    the final rounding right shift, so this is bit-identical to a TFLite per-channel layer whose channel multipliers
    are ``(multiplier, shift - k_c)``.

    Args:
        acc: int32 accumulators (any shape; ``channel_shift`` broadcasts against it, channels last in NHWC).
        multiplier, shift: the layer's fixed-point multiplier from :func:`quantize_multiplier`.
        channel_shift: per-output-channel WESS shift ``k_c >= 0``.
        zero_point: output zero point.
        qmin, qmax: clamp bounds (see :func:`activation_bounds`).
    Returns:
        int64 array of the int8 results, same shape as ``acc``.
    """
    effective_shift = np.asarray(shift, dtype=np.int64) - np.asarray(channel_shift, dtype=np.int64)
    return np.clip(multiply_by_quantized_multiplier(acc, multiplier, effective_shift) + zero_point, qmin, qmax)


def activation_bounds(activation, scale, zero_point, qmin=-128, qmax=127):
    """Clamp bounds ``(qmin, qmax)`` of a fused activation, exactly as TFLite computes them.

    TFLite's ``CalculateActivationRangeQuantized`` quantizes 0 and 6 with the output's float32 scale:
    ``zero_point + round_half_away(6 / scale)`` where the division is a **float32** one (a double division can round
    differently near a half-integer, e.g. ``scale = float32(6 / 2.5)``).

    Args:
        activation: ``None`` (no activation), ``"relu"`` or ``"relu6"``.
        scale, zero_point: the output tensor's quantization.
    """
    if activation is None:
        return qmin, qmax
    low = max(qmin, zero_point)
    if activation == "relu":
        return low, qmax
    if activation == "relu6":
        six = np.float32(6.0) / np.float32(scale)
        return low, min(qmax, zero_point + int(round_half_away_from_zero(six)))
    raise ValueError(f"activation must be None, 'relu' or 'relu6', not {activation!r}")
