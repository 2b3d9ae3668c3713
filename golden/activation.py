"""Golden model of int8 elementwise activations as 256-entry tables (TFLite HARD_SWISH, LOGISTIC, TANH, LEAKY_RELU,
RELU, RELU6).

With an int8 input and an int8 output any elementwise function is a table of 256 int8 values, one per input value:
the NPU looks the result up instead of computing it. :func:`activation_table` fills the table by running, for each of
the 256 inputs, exactly the arithmetic of LiteRT's reference int8 kernel for that function with the layer's float32
scales, so a table lookup is bit-identical to LiteRT (docs/arithmetic.md, "Elementwise activations"):

``hard_swish``
    HARD_SWISH's 16-bit fixed-point steps (``reference_ops::HardSwish``): two int16 multipliers from
    ``(s_in / 128) / s_out`` and ``(s_in / 128) / (3 / 32768)``, rounding and truncating high multiplies.
``leaky_relu``
    LEAKY_RELU (``reference_ops::QuantizeLeakyRelu``): ``MultiplyByQuantizedMultiplier`` with the identity multiplier
    ``s_in / s_out`` for inputs at or above the zero point and ``s_in * alpha / s_out`` below it, both real
    multipliers formed in float32 as the kernel's Prepare does.
``relu``, ``relu6``
    RELU and RELU6 where no layer can absorb them (after a table activation, a concatenation, a pool):
    ``MultiplyByQuantizedMultiplier`` with ``s_in / s_out`` (formed in float32 as the kernel's Prepare does), then
    the clamp of :func:`golden.requant.activation_bounds` (``QuantizedReluX``).
``logistic``, ``tanh``
    LiteRT's int8 reference kernels are themselves tables (``LUTPopulate``): ``q = clamp(round_half_away(f(s_in (i -
    zp_in)) * (1 / s_out)) + zp_out)`` with every step in float32. LOGISTIC's output must be quantized with scale
    1/256 and zero point -128 (:data:`FIXED_OUTPUT`); TANH's is fixed here at 1/128 and 0, the converters' choice.

The table is the float-to-fixed step of the layer, computed once like :func:`golden.requant.quantize_multiplier`;
:func:`lookup` is integers only.
"""

import math

import numpy as np

from .conv import _int_array, _zero_point
from .requant import activation_bounds, multiply_by_quantized_multiplier, quantize_multiplier, rounding_divide_by_pot

__all__ = ["FUNCTIONS", "FIXED_OUTPUT", "activation_table", "lookup", "hard_swish", "leaky_relu", "relu"]

#: The functions a table can hold.
FUNCTIONS = ("hard_swish", "leaky_relu", "logistic", "tanh", "relu", "relu6")

#: Output quantization ``(scale, zero_point)`` a function's kernel requires (LOGISTIC checks it; TANH by convention).
FIXED_OUTPUT = {"logistic": (1.0 / 256, -128), "tanh": (1.0 / 128, 0)}

_INT16_MIN, _INT16_MAX = -(1 << 15), (1 << 15) - 1
_INPUTS = np.arange(-128, 128, dtype=np.int64)


def activation_table(function, input_scale, input_zero_point, output_scale, output_zero_point, *, alpha=None):
    """The 256-entry table of ``function`` for the given quantization: entry ``i`` is the output for input ``i - 128``.

    Args:
        function: one of :data:`FUNCTIONS`.
        input_scale, input_zero_point, output_scale, output_zero_point: the tensors' quantization (scales are rounded
            to float32, as a .tflite file stores them).
        alpha: the negative slope of ``leaky_relu`` (rounded to float32, non-negative); ``None`` for the others.
    Returns:
        int64 array ``(256,)`` of int8 values.
    Raises:
        ValueError: for an unknown function, a bad scale, zero point or alpha, or a quantization the LiteRT kernel
            refuses (HARD_SWISH with ``s_in / 128 >= s_out``; LOGISTIC / TANH with another output quantization
            than :data:`FIXED_OUTPUT`).

    Examples:
        >>> t = activation_table("leaky_relu", 0.1, 0, 0.1, 0, alpha=0.5)
        >>> t[[128 - 4, 128, 128 + 4]].tolist()
        [-2, 0, 4]
    """
    if function not in FUNCTIONS:
        raise ValueError(f"function must be one of {', '.join(FUNCTIONS)}, not {function!r}")
    if (alpha is not None) != (function == "leaky_relu"):
        raise ValueError(f"alpha is given for leaky_relu and only for it, not {alpha!r} for {function}")
    s_in, s_out = _float32_scale(input_scale, "input_scale"), _float32_scale(output_scale, "output_scale")
    zp_in = _zero_point(input_zero_point, "input_zero_point")
    zp_out = _zero_point(output_zero_point, "output_zero_point")
    if function in FIXED_OUTPUT and (s_out, zp_out) != (np.float32(FIXED_OUTPUT[function][0]),
                                                        FIXED_OUTPUT[function][1]):
        raise ValueError(f"{function} needs the output scale {FIXED_OUTPUT[function][0]!r} and zero point "
                         f"{FIXED_OUTPUT[function][1]}, not {float(s_out)!r} and {zp_out}")
    if function == "hard_swish":
        return hard_swish(_INPUTS, s_in, zp_in, s_out, zp_out)
    if function == "leaky_relu":
        return leaky_relu(_INPUTS, s_in, zp_in, s_out, zp_out, alpha)
    if function in ("relu", "relu6"):
        return relu(_INPUTS, s_in, zp_in, s_out, zp_out, six=function == "relu6")
    return _lut_populate(function, s_in, zp_in, s_out, zp_out)


def lookup(x, table):
    """``table[x + 128]``: the activation of every int8 element of ``x`` (int64 result, the shape of ``x``)."""
    x = _int_array(x, "x", -128, 127).astype(np.int64)
    table = _int_array(table, "table", -128, 127).astype(np.int64)
    if table.shape != (256,):
        raise ValueError(f"an activation table has 256 entries, not shape {table.shape}")
    return table[x + 128]


def hard_swish(x, input_scale, input_zero_point, output_scale, output_zero_point):
    """TFLite's int8 HARD_SWISH on ``x``: ``x * relu6(x + 3) / 6`` in the reference kernel's int16 fixed point.

    Per element, with ``v = (x - zp_in) * 2**7`` (the "hires" input, scale ``s_in / 128``):
    ``pre = SRDHM16(v, M_out)``; ``r = SRDHM16(v << max(e_r - 1, 0), M_r)`` (saturating shifts), ``<< 1`` if
    ``e_r > 0``, ``RDBPOT(r, -e_r)`` if ``e_r < 0``; ``r = (r + 2**15) >> 1`` (the relu-ish factor in [0, 1]);
    ``y = RDBPOT(trunc(r * pre / 2**15), -e_out) + zp_out``, clamped to int8. ``(M, e)`` are
    ``QuantizeMultiplier`` of the float32 reals, with the mantissa rounded to 16 bits.
    """
    s_in, s_out = _float32_scale(input_scale, "input_scale"), _float32_scale(output_scale, "output_scale")
    hires_scale = np.float32(1.0 / 128) * s_in
    out_multiplier, out_exponent = _int16_multiplier(hires_scale / s_out)
    if out_exponent > 0:
        raise ValueError(f"HARD_SWISH needs s_in / 128 < s_out (LiteRT refuses the layer), not s_in {float(s_in)!r} "
                         f"and s_out {float(s_out)!r}")
    relu_multiplier, relu_exponent = _int16_multiplier(hires_scale / (np.float32(3.0) / np.float32(32768.0)))
    x = _int_array(x, "x", -128, 127).astype(np.int64)
    hires = (x - _zero_point(input_zero_point, "input_zero_point")) * (1 << 7)
    preshift = _srdhm16(hires, out_multiplier)
    reluish = hires
    if relu_exponent > 0:
        reluish = _saturating_left_shift16(reluish, relu_exponent - 1)
    reluish = _srdhm16(reluish, relu_multiplier)
    if relu_exponent > 0:
        reluish = _saturating_left_shift16(reluish, 1)
    if relu_exponent < 0:
        reluish = rounding_divide_by_pot(reluish, -relu_exponent)
    reluish = (reluish + (1 << 15)) >> 1
    product = reluish * preshift                       # SaturatingDoublingHighMul: truncating division by 2**15
    high = np.where(product < 0, -(np.abs(product) >> 15), product >> 15)
    high = np.where((reluish == _INT16_MIN) & (preshift == _INT16_MIN), _INT16_MAX, high)
    output = rounding_divide_by_pot(high, -out_exponent) + _zero_point(output_zero_point, "output_zero_point")
    return np.clip(output, -128, 127)


def leaky_relu(x, input_scale, input_zero_point, output_scale, output_zero_point, alpha):
    """TFLite's int8 LEAKY_RELU on ``x``: ``MBQM(x - zp_in, M_identity or M_alpha) + zp_out``, clamped to int8.

    The real multipliers are formed as the kernel's Prepare forms them, in float32: ``s_in / s_out`` and
    ``(s_in * alpha) / s_out``; :func:`golden.requant.quantize_multiplier` splits them.
    """
    s_in, s_out = _float32_scale(input_scale, "input_scale"), _float32_scale(output_scale, "output_scale")
    with np.errstate(over="ignore", invalid="ignore"):
        slope = np.float32(alpha)
    if not (np.isfinite(slope) and slope >= 0):
        raise ValueError(f"alpha must be a finite non-negative float32, not {alpha!r}")
    identity = quantize_multiplier(float(s_in / s_out))
    negative = quantize_multiplier(float(s_in * slope / s_out))
    x = _int_array(x, "x", -128, 127).astype(np.int64)
    centred = x - _zero_point(input_zero_point, "input_zero_point")
    scaled = np.where(centred >= 0, multiply_by_quantized_multiplier(centred, *identity),
                      multiply_by_quantized_multiplier(centred, *negative))
    return np.clip(scaled + _zero_point(output_zero_point, "output_zero_point"), -128, 127)


def relu(x, input_scale, input_zero_point, output_scale, output_zero_point, *, six=False):
    """TFLite's int8 RELU (RELU6 with ``six``) on ``x``: ``MBQM(x - zp_in, M) + zp_out`` clamped to
    ``activation_bounds`` of the output (``QuantizedReluX``); ``M`` from the float32 quotient ``s_in / s_out``."""
    s_in, s_out = _float32_scale(input_scale, "input_scale"), _float32_scale(output_scale, "output_scale")
    zp_out = _zero_point(output_zero_point, "output_zero_point")
    x = _int_array(x, "x", -128, 127).astype(np.int64)
    scaled = multiply_by_quantized_multiplier(x - _zero_point(input_zero_point, "input_zero_point"),
                                              *quantize_multiplier(float(s_in / s_out)))
    low, high = activation_bounds("relu6" if six else "relu", s_out, zp_out)
    return np.clip(scaled + zp_out, low, high)


def _lut_populate(function, s_in, zp_in, s_out, zp_out):
    # LiteRT's LUTPopulate<int8_t>, every step in float32; expf and tanhf as the correctly rounded float32 of the
    # double-precision function.
    inverse = np.float32(1.0) / s_out
    table = np.empty(256, dtype=np.int64)
    for index, value in enumerate(_INPUTS):
        real = s_in * np.float32(value - zp_in)
        if function == "logistic":
            with np.errstate(over="ignore"):                 # expf overflows to inf: the output is 0
                transformed = np.float32(1.0) / (np.float32(1.0) + np.float32(np.exp(-np.float64(real))))
        else:
            transformed = np.float32(math.tanh(float(real)))
        rescaled = np.float32(transformed * inverse)
        rounded = math.copysign(math.floor(abs(float(rescaled)) + 0.5), float(rescaled))   # roundf: half away
        table[index] = min(max(int(rounded) + zp_out, -128), 127)
    return table


def _float32_scale(scale, name):
    with np.errstate(over="ignore"):
        single = np.float32(scale)
    if not (np.isfinite(single) and single > 0):
        raise ValueError(f"{name} must be a positive finite float32, not {scale!r}")
    return single


def _int16_multiplier(real):
    # QuantizeMultiplier of a float32 real, then DownScaleInt32ToInt16Multiplier: the mantissa rounded to Q0.15.
    multiplier, exponent = quantize_multiplier(float(np.float32(real)))
    if multiplier >= (1 << 31) - 1 - (1 << 15):
        return _INT16_MAX, exponent
    return (multiplier + (1 << 15)) >> 16, exponent


def _srdhm16(a, b):
    # gemmlowp SaturatingRoundingDoublingHighMul on int16: (a*b + nudge) / 2**15, truncated toward zero.
    a = np.asarray(a, dtype=np.int64)
    product = a * b
    nudged = product + np.where(product >= 0, 1 << 14, 1 - (1 << 14))
    high = np.where(nudged < 0, -(np.abs(nudged) >> 15), nudged >> 15)
    return np.where((a == _INT16_MIN) & (b == _INT16_MIN), _INT16_MAX, high)


def _saturating_left_shift16(value, amount):
    return np.clip(np.asarray(value, dtype=np.int64) << amount, _INT16_MIN, _INT16_MAX)
