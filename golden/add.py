"""Golden model of the residual Add of two int8 tensors (TFLite ADD, reference int8 kernel).

The inputs have their own scales and zero points, so each is rescaled to a common fixed-point scale before the sum,
and the sum is rescaled to the output (docs/arithmetic.md, "Residual Add"). :func:`add_params` is the float-to-fixed
step, done once per layer through :func:`golden.requant.quantize_multiplier`; :func:`add` is integers only.
"""

import dataclasses

import numpy as np

from .conv import _clamp_bounds, _int_array, _zero_point
from .requant import multiply_by_quantized_multiplier, quantize_multiplier

__all__ = ["AddParams", "add_params", "add"]

#: Left shift applied to both centred inputs before rescaling: headroom that keeps the rescaled inputs precise
#: (255 * 2**20 < 2**28 leaves the int32 sum room); TFLite uses 20 for 8-bit tensors.
LEFT_SHIFT = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class AddParams:
    """Fixed-point parameters of one int8 Add; every ``(multiplier, shift)`` has ``shift <= 0`` (a real below 1).

    Members
    -------
    zero_point1, zero_point2, output_zero_point : int
        Zero points of the two inputs and of the output (TFLite stores the inputs' as ``offset = -zero_point``).
    multiplier1, shift1, multiplier2, shift2 : int
        Rescaling of each input, from ``s_i / (2 * max(s1, s2))``.
    output_multiplier, output_shift : int
        Rescaling of the sum, from ``2 * max(s1, s2) / (2**left_shift * s_out)``.
    left_shift : int
        Headroom shift of the centred inputs (:data:`LEFT_SHIFT`).
    """

    zero_point1: int
    multiplier1: int
    shift1: int
    zero_point2: int
    multiplier2: int
    shift2: int
    output_zero_point: int
    output_multiplier: int
    output_shift: int
    left_shift: int = LEFT_SHIFT


def add_params(scale1, zero_point1, scale2, zero_point2, scale_out, zero_point_out):
    """Fixed-point parameters of an int8 Add, as TFLite's ADD Prepare computes them.

    The scales are first rounded to float32 (what a .tflite file stores); the real multipliers are then formed in
    double precision and split by :func:`golden.requant.quantize_multiplier`.

    Raises:
        ValueError: for a non-positive or non-finite scale, a zero point outside int8, or an output scale so small
            that the output multiplier is not below 1 (TFLite rejects such a model too).

    Examples:
        >>> add_params(1.0, 0, 1.0, 0, 1.0, 0).output_shift
        -18
    """
    scales = []
    for name, scale in (("scale1", scale1), ("scale2", scale2), ("scale_out", scale_out)):
        with np.errstate(over="ignore"):                   # a scale beyond float32 becomes inf, rejected below
            single = float(np.float32(scale))
        if not np.isfinite(single) or single <= 0:
            raise ValueError(f"{name} must be a positive finite float32, not {scale!r}")
        scales.append(single)
    s1, s2, s_out = scales
    twice_max = 2.0 * max(s1, s2)
    multiplier1, shift1 = _quantize_smaller_than_one(s1 / twice_max, "input 1")
    multiplier2, shift2 = _quantize_smaller_than_one(s2 / twice_max, "input 2")
    output_multiplier, output_shift = _quantize_smaller_than_one(twice_max / ((1 << LEFT_SHIFT) * s_out), "output")
    return AddParams(zero_point1=_zero_point(zero_point1, "zero_point1"), multiplier1=multiplier1, shift1=shift1,
                     zero_point2=_zero_point(zero_point2, "zero_point2"), multiplier2=multiplier2, shift2=shift2,
                     output_zero_point=_zero_point(zero_point_out, "zero_point_out"),
                     output_multiplier=output_multiplier, output_shift=output_shift)


def add(x1, x2, params, qmin=-128, qmax=127):
    """int8 Add: ``clamp(MBQM(MBQM(c1, m1, sh1) + MBQM(c2, m2, sh2), m_out, sh_out) + zp_out, qmin, qmax)``.

    ``c_i = (x_i - zp_i) * 2**left_shift``; MBQM is :func:`golden.requant.multiply_by_quantized_multiplier` with a
    shift ``<= 0``, i.e. TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp (SRDHM, then a rounding right shift).

    Args:
        x1, x2: int8 tensors of the same shape (or shapes that broadcast, as TFLite's broadcasting Add does).
        params: :class:`AddParams` from :func:`add_params`.
        qmin, qmax: clamp bounds of the fused activation (:func:`golden.requant.activation_bounds`).
    Returns:
        int64 array of int8 values.
    """
    if not isinstance(params, AddParams):
        raise TypeError(f"params must be an AddParams, not {params!r}")
    qmin, qmax = _clamp_bounds(qmin, qmax)
    x1 = _int_array(x1, "x1", -128, 127).astype(np.int64)
    x2 = _int_array(x2, "x2", -128, 127).astype(np.int64)
    scaled1 = multiply_by_quantized_multiplier((x1 - params.zero_point1) << params.left_shift,
                                               params.multiplier1, params.shift1)
    scaled2 = multiply_by_quantized_multiplier((x2 - params.zero_point2) << params.left_shift,
                                               params.multiplier2, params.shift2)
    raw = multiply_by_quantized_multiplier(scaled1 + scaled2, params.output_multiplier, params.output_shift)
    return np.clip(raw + params.output_zero_point, qmin, qmax)


def _quantize_smaller_than_one(real, name):
    # TFLite's QuantizeMultiplierSmallerThanOneExp: QuantizeMultiplier, insisting on a real below 1 (shift <= 0).
    multiplier, shift = quantize_multiplier(real)
    if real >= 1.0 or shift > 0:
        raise ValueError(f"the {name} multiplier {real!r} of this Add is not below 1: the output scale is too small")
    return multiplier, shift
