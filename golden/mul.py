"""Golden model of the elementwise Mul of two int8 tensors (TFLite MUL, int8 reference kernel), with broadcasting.

Squeeze-and-excitation multiplies a feature map ``(N, H, W, C)`` by a per-channel gate ``(N, 1, 1, C)``; TFLite's MUL
broadcasts the gate over H and W. The product of the two centred inputs is requantized by one multiplier
``s1 * s2 / s_out`` (docs/arithmetic.md, "Elementwise Mul"); :func:`mul_params` is the float-to-fixed step,
:func:`mul` integers only.
"""

import dataclasses

import numpy as np

from .conv import _clamp_bounds, _int_array, _zero_point
from .requant import multiply_by_quantized_multiplier, quantize_multiplier

__all__ = ["MulParams", "mul_params", "mul"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MulParams:
    """Fixed-point parameters of one int8 Mul.

    Members
    -------
    zero_point1, zero_point2, output_zero_point : int
        Zero points of the two inputs and of the output.
    multiplier, shift : int
        :func:`golden.requant.quantize_multiplier` of ``s1 * s2 / s_out``.
    """

    zero_point1: int
    zero_point2: int
    output_zero_point: int
    multiplier: int
    shift: int


def mul_params(scale1, zero_point1, scale2, zero_point2, scale_out, zero_point_out):
    """Fixed-point parameters of an int8 Mul, as TFLite's MUL Prepare computes them.

    The real multiplier ``s1 * s2 / s_out`` is formed in float32 (the kernel multiplies and divides the tensors'
    float scales), then split in double precision by :func:`golden.requant.quantize_multiplier`.

    Raises:
        ValueError: for a non-positive or non-finite scale, a zero point outside int8, or a multiplier of 2**31 or
            more.

    Examples:
        >>> mul_params(0.5, 0, 0.25, 0, 0.125, 3)
        MulParams(zero_point1=0, zero_point2=0, output_zero_point=3, multiplier=1073741824, shift=1)
    """
    scales = []
    for name, scale in (("scale1", scale1), ("scale2", scale2), ("scale_out", scale_out)):
        with np.errstate(over="ignore"):
            single = np.float32(scale)
        if not np.isfinite(single) or single <= 0:
            raise ValueError(f"{name} must be a positive finite float32, not {scale!r}")
        scales.append(single)
    s1, s2, s_out = scales
    multiplier, shift = quantize_multiplier(float(s1 * s2 / s_out))
    return MulParams(zero_point1=_zero_point(zero_point1, "zero_point1"),
                     zero_point2=_zero_point(zero_point2, "zero_point2"),
                     output_zero_point=_zero_point(zero_point_out, "zero_point_out"), multiplier=multiplier,
                     shift=shift)


def mul(x1, x2, params, qmin=-128, qmax=127):
    """int8 Mul: ``clamp(MBQM((x1 - zp1) * (x2 - zp2), M, shift) + zp_out, qmin, qmax)``, broadcasting as NumPy.

    Args:
        x1, x2: int8 tensors whose shapes broadcast (e.g. ``(N, H, W, C)`` and ``(N, 1, 1, C)``).
        params: :class:`MulParams` from :func:`mul_params`.
        qmin, qmax: clamp bounds of the fused activation.
    Returns:
        int64 array of int8 values, of the broadcast shape.
    """
    if not isinstance(params, MulParams):
        raise TypeError(f"params must be a MulParams, not {params!r}")
    qmin, qmax = _clamp_bounds(qmin, qmax)
    x1 = _int_array(x1, "x1", -128, 127).astype(np.int64)
    x2 = _int_array(x2, "x2", -128, 127).astype(np.int64)
    product = (x1 - params.zero_point1) * (x2 - params.zero_point2)      # |.| <= 255**2: int32
    raw = multiply_by_quantized_multiplier(product, params.multiplier, params.shift)
    return np.clip(raw + params.output_zero_point, qmin, qmax)
