"""Golden model of the residual Add of two int8 tensors (TFLite ADD, reference int8 kernel).

The inputs have their own scales and zero points, so each is rescaled to a common fixed-point scale before the sum,
and the sum is rescaled to the output (docs/arithmetic.md, "Residual Add"). :func:`add_params` is the float-to-fixed
step, done once per layer through :func:`golden.requant.quantize_multiplier`; :func:`add` is integers only, and in the
engine's form: :func:`rescaled_sum` (``hdl/add.py``) followed by the requantizer with channel shift 0. An add layer's
descriptor holds the :class:`AddParams` (:func:`add_descriptor_fields`, :func:`descriptor_params`).
"""

import dataclasses

import numpy as np

from .conv import _clamp_bounds, _int_array, _zero_point
from .requant import multiply_by_quantized_multiplier, quantize_multiplier, requantize

__all__ = ["AddParams", "add_params", "add", "rescaled_sum", "add_descriptor_fields", "descriptor_params"]

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
    qmin, qmax = _clamp_bounds(qmin, qmax)
    return requantize(rescaled_sum(x1, x2, params), params.output_multiplier, params.output_shift, 0,
                      params.output_zero_point, qmin, qmax)


def rescaled_sum(x1, x2, params):
    """``MBQM(c1, m1, sh1) + MBQM(c2, m2, sh2)``: the sum of the rescaled inputs that :func:`add` requantizes.

    What the engine's add unit hands the requantizer (``hdl/add.py``); ``|sum| < 2**29``, int32 with room to spare.
    Returns an int64 array.
    """
    if not isinstance(params, AddParams):
        raise TypeError(f"params must be an AddParams, not {params!r}")
    x1 = _int_array(x1, "x1", -128, 127).astype(np.int64)
    x2 = _int_array(x2, "x2", -128, 127).astype(np.int64)
    scaled1 = multiply_by_quantized_multiplier((x1 - params.zero_point1) << params.left_shift,
                                               params.multiplier1, params.shift1)
    scaled2 = multiply_by_quantized_multiplier((x2 - params.zero_point2) << params.left_shift,
                                               params.multiplier2, params.shift2)
    return scaled1 + scaled2


def add_descriptor_fields(params):
    """The layer descriptor fields of an add with ``params`` (``golden.descriptor.LayerDescriptor``).

    Input 1's zero point is ``input_zero_point``, the output rescaling ``multiplier`` / ``shift``; the engine's left
    shift is fixed at :data:`LEFT_SHIFT`. Inverse of :func:`descriptor_params`.

    Raises:
        ValueError: ``params.left_shift`` is not :data:`LEFT_SHIFT`.
    """
    if not isinstance(params, AddParams):
        raise TypeError(f"params must be an AddParams, not {params!r}")
    if params.left_shift != LEFT_SHIFT:
        raise ValueError(f"the engine's add shifts its inputs left by {LEFT_SHIFT}, not {params.left_shift}")
    return dict(input_zero_point=params.zero_point1, input2_zero_point=params.zero_point2,
                multiplier1=params.multiplier1, shift1=params.shift1, multiplier2=params.multiplier2,
                shift2=params.shift2, multiplier=params.output_multiplier, shift=params.output_shift,
                output_zero_point=params.output_zero_point)


def descriptor_params(descriptor):
    """The :class:`AddParams` an add layer's descriptor holds (inverse of :func:`add_descriptor_fields`)."""
    d = descriptor
    return AddParams(zero_point1=d.input_zero_point, multiplier1=d.multiplier1, shift1=d.shift1,
                     zero_point2=d.input2_zero_point, multiplier2=d.multiplier2, shift2=d.shift2,
                     output_zero_point=d.output_zero_point, output_multiplier=d.multiplier, output_shift=d.shift)


def _quantize_smaller_than_one(real, name):
    # TFLite's QuantizeMultiplierSmallerThanOneExp: QuantizeMultiplier, insisting on a real below 1 (shift <= 0).
    multiplier, shift = quantize_multiplier(real)
    if real >= 1.0 or shift > 0:
        raise ValueError(f"the {name} multiplier {real!r} of this Add is not below 1: the output scale is too small")
    return multiplier, shift
