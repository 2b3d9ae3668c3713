"""Quantized layers and networks -> .tflite flatbuffers, written without TensorFlow; LiteRT reference runs.

A WESS layer is a TFLite per-channel layer whose channel scales are ``s_w * 2**-k_c`` (docs/arithmetic.md, section 2),
so the NPU's integer model can be written as an ordinary int8 .tflite file and run by any TFLite runtime.
:class:`ModelBuilder` emits the ops the golden model supports, each chosen so that LiteRT's reference kernel computes
exactly what ``golden/`` computes:

* conv / depthwise conv -> CONV_2D / DEPTHWISE_CONV_2D with per-channel weight scales and int32 biases of scale
  ``s_in * s_w * 2**-k_c``; a padding that is neither VALID nor TFLite's SAME becomes a PAD (int8 PAD fills with the
  zero point, which is what the golden conv's padded taps read) followed by a VALID conv;
* fully connected -> RESHAPE, 1x1 CONV_2D, RESHAPE (LiteRT's FULLY_CONNECTED reference requantizes in float);
* residual add -> ADD; average pooling -> AVERAGE_POOL_2D (VALID or SAME windows only: a PAD would change the
  divisor); max pooling -> MAX_POOL_2D (another padding: PADV2 with -128, then VALID);
* elementwise activation tables -> HARD_SWISH, LOGISTIC, TANH, LEAKY_RELU, RELU, RELU6 (the table must be the one
  the kernel computes from the file's float32 scales, golden.activation); concatenation -> CONCATENATION (inputs quantized as
  the output); squeeze-and-excitation multiply -> MUL (broadcasting a ``(N, 1, 1, C)`` gate);
* the clamp ``(qmin, qmax)`` -> the fused activation (NONE, RELU, RELU6) whose LiteRT clamp is exactly that
  (:func:`fused_activation`).

The file layout follows ../shared/reference/int8-arithmetic.md: prefixed ``tflite`` builder functions, identifier
``TFL3``, model version 3, both operator-code fields set, buffer 0 empty, a zero-point vector as long as every scale
vector. :func:`run_reference` runs a model with LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``).
"""

import dataclasses
import time

import flatbuffers
import numpy as np
import tflite

from golden import network as gnet
from golden.activation import activation_table
from golden.add import add_params
from golden.mul import mul_params
from golden.conv import conv_output_size, same_padding
from golden.requant import INT32_MAX, INT32_MIN, activation_bounds, quantize_multiplier

__all__ = ["ModelBuilder", "ACTIVATION_OPS", "fused_activation", "litert_activation_bounds", "export_network", "export_layer",
           "check_quantization", "run_reference", "benchmark", "format_benchmark"]

_INT8 = tflite.TensorType.INT8
_INT32 = tflite.TensorType.INT32

#: (builtin operator, version): the int8 versions of TFLite's op_version.cc; the reference resolver accepts them.
_OPCODES = {
    "CONV_2D": (tflite.BuiltinOperator.CONV_2D, 3),
    "DEPTHWISE_CONV_2D": (tflite.BuiltinOperator.DEPTHWISE_CONV_2D, 3),
    "ADD": (tflite.BuiltinOperator.ADD, 2),
    "AVERAGE_POOL_2D": (tflite.BuiltinOperator.AVERAGE_POOL_2D, 2),
    "RESHAPE": (tflite.BuiltinOperator.RESHAPE, 1),
    "PAD": (tflite.BuiltinOperator.PAD, 2),
    "PADV2": (tflite.BuiltinOperator.PADV2, 2),
    "MAX_POOL_2D": (tflite.BuiltinOperator.MAX_POOL_2D, 2),
    "HARD_SWISH": (tflite.BuiltinOperator.HARD_SWISH, 1),
    "LOGISTIC": (tflite.BuiltinOperator.LOGISTIC, 2),
    "TANH": (tflite.BuiltinOperator.TANH, 2),
    "LEAKY_RELU": (tflite.BuiltinOperator.LEAKY_RELU, 2),
    "RELU": (tflite.BuiltinOperator.RELU, 2),
    "RELU6": (tflite.BuiltinOperator.RELU6, 2),
    "CONCATENATION": (tflite.BuiltinOperator.CONCATENATION, 2),
    "MUL": (tflite.BuiltinOperator.MUL, 2),
}

#: golden.activation function -> the LiteRT op whose int8 kernel its table reproduces.
ACTIVATION_OPS = {"hard_swish": "HARD_SWISH", "logistic": "LOGISTIC", "tanh": "TANH", "leaky_relu": "LEAKY_RELU",
                  "relu": "RELU", "relu6": "RELU6"}


def litert_activation_bounds(activation, scale, zero_point):
    """The int8 clamp LiteRT derives from a fused activation (``CalculateActivationRangeQuantized``).

    ``Quantize(f) = zero_point + round_half_away(f / scale)`` with ``f / scale`` a **float32** division, because LiteRT
    holds the scale as a float: RELU clamps below at ``Quantize(0)``, RELU6 also above at ``Quantize(6)``.

    Args:
        activation: ``"NONE"``, ``"RELU"`` or ``"RELU6"``.
        scale, zero_point: the output tensor's quantization (the scale is rounded to float32 as the file stores it).
    Returns:
        ``(qmin, qmax)``.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be 'NONE', 'RELU' or 'RELU6', not {activation!r}")
    return activation_bounds(_ACTIVATIONS[activation], scale, int(zero_point))


_ACTIVATIONS = {"NONE": None, "RELU": "relu", "RELU6": "relu6"}


def fused_activation(qmin, qmax, scale, zero_point):
    """The TFLite fused activation whose LiteRT clamp is exactly ``[qmin, qmax]``.

    Args:
        qmin, qmax: the layer's clamp bounds (e.g. from :func:`golden.requant.activation_bounds`).
        scale, zero_point: the output tensor's quantization.
    Returns:
        The :class:`tflite.ActivationFunctionType` value (NONE is preferred when several match).
    Raises:
        ValueError: if no fused activation produces that clamp; the message names LiteRT's bounds for each.
    """
    bounds = {name: litert_activation_bounds(name, scale, zero_point) for name in ("NONE", "RELU", "RELU6")}
    for name, clamp in bounds.items():
        if clamp == (qmin, qmax):
            return getattr(tflite.ActivationFunctionType, name)
    raise ValueError(f"no TFLite fused activation clamps to [{qmin}, {qmax}] at output scale {float(scale)!r} and "
                     f"zero point {zero_point}: LiteRT's bounds are {bounds}")


@dataclasses.dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple
    type: int
    buffer: int
    scale: tuple            # float32 values, one per channel (or one)
    zero_point: tuple
    quantized_dimension: int = 0


@dataclasses.dataclass(frozen=True)
class _Operator:
    opcode: str
    inputs: tuple
    outputs: tuple
    options_table: str      # the builtin options table, e.g. "Conv2DOptions"; None for an op without options
    options: tuple          # (field adder, value) pairs, or () for a table without fields


class ModelBuilder:
    """One single-subgraph int8 .tflite model, built op by op; :meth:`build` returns the flatbuffer bytes.

    Activation tensors are referred to by the integer handle the methods return; their names must be unique (they
    name the tensors LiteRT reports). Every method validates its arguments against the tensors it consumes and
    computes the output shape.

    Parameters
    ----------
    description : str
        Stored in the model's ``description`` field.
    """

    def __init__(self, *, description="wess-npu int8 export"):
        if not isinstance(description, str):
            raise TypeError(f"description must be a string, not {description!r}")
        self._description = description
        self._tensors = []
        self._buffers = [b""]          # buffer 0: the empty buffer every non-constant tensor points to
        self._operators = []
        self._inputs = []

    # --- tensors -----------------------------------------------------------------------------------------------

    def input(self, name, shape, *, scale, zero_point):
        """Declare a subgraph input: an int8 NHWC (or ``(N, C)``) activation tensor with one scale and zero point."""
        handle = self._activation(name, shape, scale, zero_point)
        self._inputs.append(handle)
        return handle

    def shape(self, x):
        """The shape of tensor ``x``."""
        return self._tensor(x).shape

    def quantization(self, x):
        """``(scale, zero_point)`` of activation tensor ``x`` (the scale as the file stores it, float32)."""
        tensor = self._tensor(x)
        return tensor.scale[0], tensor.zero_point[0]

    # --- ops ---------------------------------------------------------------------------------------------------

    def conv2d(self, x, weights, bias, *, weight_scale, channel_shift=None, stride=(1, 1), padding=(0, 0, 0, 0),
               output_scale, output_zero_point, qmin=-128, qmax=127, name):
        """A WESS convolution: int8 weights ``(Cout, KH, KW, Cin / groups)`` with channel scales ``s_w * 2**-k_c``.

        Args:
            x: input tensor handle ``(N, H, W, Cin)``.
            weights: int8 values in ``[-127, 127]``, OHWI; ``Cin / groups`` input channels for a grouped conv.
            bias: int32 ``(Cout,)`` or ``None``.
            weight_scale: the layer scale ``s_w``, or one scale per output channel (rounded to float32).
            channel_shift: ``k_c`` per output channel, integers in ``[0, 31]`` (default all 0).
            stride: ``(sh, sw)``; padding: ``(top, bottom, left, right)``.
            output_scale, output_zero_point: the output tensor's quantization.
            qmin, qmax: clamp bounds; must be a fused activation's (:func:`fused_activation`).
            name: output tensor name.
        Returns:
            The output tensor handle.
        """
        return self._convolution("CONV_2D", x, weights, bias, weight_scale, channel_shift, stride, padding,
                                 output_scale, output_zero_point, qmin, qmax, name)

    def depthwise_conv2d(self, x, weights, bias, *, weight_scale, channel_shift=None, stride=(1, 1),
                         padding=(0, 0, 0, 0), output_scale, output_zero_point, qmin=-128, qmax=127, name):
        """A WESS depthwise convolution (multiplier 1): int8 weights ``(KH, KW, C)``; otherwise as :meth:`conv2d`."""
        return self._convolution("DEPTHWISE_CONV_2D", x, weights, bias, weight_scale, channel_shift, stride, padding,
                                 output_scale, output_zero_point, qmin, qmax, name)

    def fully_connected(self, x, weights, bias, *, weight_scale, channel_shift=None, output_scale, output_zero_point,
                        qmin=-128, qmax=127, name):
        """A WESS fully connected layer on ``(N, Cin)``: RESHAPE to ``(N, 1, 1, Cin)``, 1x1 CONV_2D, RESHAPE back.

        Args:
            weights: int8 ``(Cout, Cin)``; the other arguments as for :meth:`conv2d`.
        Returns:
            The output tensor handle, ``(N, Cout)``.
        """
        shape = self._tensor(x).shape
        if len(shape) != 2:
            raise ValueError(f"fully connected input must be (N, Cin), not of shape {shape}")
        weights = np.asarray(weights)
        if weights.ndim != 2:
            raise ValueError(f"fully connected weights must be (Cout, Cin), not of shape {weights.shape}")
        image = self.reshape(x, (shape[0], 1, 1, shape[1]), name=f"{name}/image")
        conv = self.conv2d(image, weights[:, None, None, :], bias, weight_scale=weight_scale,
                           channel_shift=channel_shift, output_scale=output_scale,
                           output_zero_point=output_zero_point, qmin=qmin, qmax=qmax, name=f"{name}/conv")
        return self.reshape(conv, (shape[0], weights.shape[0]), name=name)

    def add(self, x1, x2, *, output_scale, output_zero_point, qmin=-128, qmax=127, name):
        """Residual ADD of two int8 tensors of one shape (golden.add.add)."""
        shape = self._tensor(x1).shape
        if self._tensor(x2).shape != shape:
            raise ValueError(f"add inputs must have one shape, not {shape} and {self._tensor(x2).shape}")
        out = self._activation(name, shape, output_scale, output_zero_point)
        activation = fused_activation(qmin, qmax, *self.quantization(out))
        self._operators.append(_Operator("ADD", (x1, x2), (out,), "AddOptions",
                                         ((tflite.AddOptionsAddFusedActivationFunction, activation),)))
        return out

    def average_pool2d(self, x, kernel, *, stride=(1, 1), padding=(0, 0, 0, 0), qmin=-128, qmax=127, name):
        """AVERAGE_POOL_2D (golden.pool.average_pool2d); the output shares the input's scale and zero point.

        Raises:
            ValueError: if ``padding`` is neither VALID nor TFLite's SAME for this shape (LiteRT does not count padded
                taps, so an explicit PAD would change the divisor).
        """
        n, h, w, c = self._nhwc(x)
        kernel, stride, padding = _pair(kernel, "kernel"), _pair(stride, "stride"), _padding(padding)
        mode = self._padding_mode((h, w), kernel, stride, padding)
        if mode is None:
            raise ValueError(f"average pooling padding {padding} is neither VALID nor SAME for input {h}x{w}, "
                             f"kernel {kernel}, stride {stride}")
        return self._pool("AVERAGE_POOL_2D", x, kernel, stride, padding, mode, qmin, qmax, name)

    def max_pool2d(self, x, kernel, *, stride=(1, 1), padding=(0, 0, 0, 0), qmin=-128, qmax=127, name):
        """MAX_POOL_2D (golden.pool.max_pool2d); the output shares the input's scale and zero point.

        A padding that is neither VALID nor SAME becomes a PADV2 filling with -128 (which never beats a value inside
        the window) followed by a VALID pool.
        """
        n, h, w, c = self._nhwc(x)
        kernel, stride, padding = _pair(kernel, "kernel"), _pair(stride, "stride"), _padding(padding)
        mode = self._padding_mode((h, w), kernel, stride, padding)
        if mode is None:
            x = self.pad(x, padding, value=-128, name=f"{name}/pad")
            padding, mode = (0, 0, 0, 0), tflite.Padding.VALID
        return self._pool("MAX_POOL_2D", x, kernel, stride, padding, mode, qmin, qmax, name)

    def activation(self, x, function, *, output_scale, output_zero_point, alpha=None, name):
        """An elementwise int8 activation (golden.activation): HARD_SWISH, LOGISTIC, TANH, LEAKY_RELU (``alpha``),
        RELU or RELU6.

        Args:
            function: a key of :data:`ACTIVATION_OPS`.
            output_scale, output_zero_point: the output's quantization (LOGISTIC's kernel requires 1/256 and -128).
        """
        if function not in ACTIVATION_OPS:
            raise ValueError(f"function must be one of {', '.join(ACTIVATION_OPS)}, not {function!r}")
        if (alpha is not None) != (function == "leaky_relu"):
            raise ValueError(f"alpha is given for leaky_relu and only for it, not {alpha!r} for {function}")
        out = self._activation(name, self._tensor(x).shape, output_scale, output_zero_point)
        if function == "leaky_relu":
            options = ("LeakyReluOptions", ((tflite.LeakyReluOptionsAddAlpha, float(np.float32(alpha))),))
        elif function == "hard_swish":
            options = ("HardSwishOptions", ())
        else:
            options = (None, ())
        self._operators.append(_Operator(ACTIVATION_OPS[function], (x,), (out,), *options))
        return out

    def concatenation(self, inputs, *, name):
        """CONCATENATION of NHWC tensors along channels (golden.concat); every input must be quantized as the first,
        which the output takes (LiteRT's int8 kernel copies values and refuses other quantizations)."""
        inputs = tuple(inputs)
        if len(inputs) < 2:
            raise ValueError(f"a concatenation joins two or more tensors, not {len(inputs)}")
        shapes = [self._nhwc(x) for x in inputs]
        if any(shape[:3] != shapes[0][:3] for shape in shapes):
            raise ValueError(f"concatenation inputs must share N, H, W, not {shapes}")
        if any(self.quantization(x) != self.quantization(inputs[0]) for x in inputs):
            raise ValueError(f"concatenation inputs must share one scale and zero point, not "
                             f"{[self.quantization(x) for x in inputs]}")
        out = self._activation(name, (*shapes[0][:3], sum(shape[3] for shape in shapes)),
                               *self.quantization(inputs[0]))
        self._operators.append(_Operator("CONCATENATION", inputs, (out,), "ConcatenationOptions", (
            (tflite.ConcatenationOptionsAddAxis, 3),
            (tflite.ConcatenationOptionsAddFusedActivationFunction, tflite.ActivationFunctionType.NONE))))
        return out

    def mul(self, x1, x2, *, output_scale, output_zero_point, qmin=-128, qmax=127, name):
        """MUL of two int8 tensors (golden.mul); ``x2`` may be ``(N, 1, 1, C)`` against ``x1``'s ``(N, H, W, C)``."""
        shape, other = self._tensor(x1).shape, self._tensor(x2).shape
        if len(other) != len(shape) or any(b not in (1, a) for a, b in zip(shape, other)):
            raise ValueError(f"the second mul input {other} must broadcast to the first {shape}")
        out = self._activation(name, shape, output_scale, output_zero_point)
        activation = fused_activation(qmin, qmax, *self.quantization(out))
        self._operators.append(_Operator("MUL", (x1, x2), (out,), "MulOptions",
                                         ((tflite.MulOptionsAddFusedActivationFunction, activation),)))
        return out

    def reshape(self, x, shape, *, name):
        """RESHAPE (same element order, same quantization); the new shape travels as an int32 constant input."""
        source = self._tensor(x)
        shape = tuple(_positive(s, "shape") for s in shape)
        if np.prod(shape) != np.prod(source.shape):
            raise ValueError(f"cannot reshape {source.shape} to {shape}")
        new_shape = self._constant(f"{name}/shape", np.asarray(shape, dtype="<i4"), _INT32)
        out = self._activation(name, shape, *self.quantization(x))
        self._operators.append(_Operator("RESHAPE", (x, new_shape), (out,), "ReshapeOptions", ()))
        return out

    def pad(self, x, padding, *, value=None, name):
        """PAD of the spatial axes by ``(top, bottom, left, right)``; int8 PAD fills with the zero point, PADV2 (with
        an int8 ``value``) with that value, a constant quantized as ``x`` as LiteRT requires."""
        n, h, w, c = self._nhwc(x)
        top, bottom, left, right = _padding(padding)
        paddings = np.asarray([[0, 0], [top, bottom], [left, right], [0, 0]], dtype="<i4")
        inputs = (x, self._constant(f"{name}/paddings", paddings, _INT32))
        if value is not None:
            scale, zero_point = self.quantization(x)
            inputs += (self._constant(f"{name}/value", _integers([value], "pad value", -128, 127).astype(np.int8),
                                      _INT8, scale=(scale,), zero_point=(zero_point,)),)
        out = self._activation(name, (n, h + top + bottom, w + left + right, c), *self.quantization(x))
        self._operators.append(_Operator("PAD" if value is None else "PADV2", inputs, (out,),
                                         "PadOptions" if value is None else "PadV2Options", ()))
        return out

    # --- output ------------------------------------------------------------------------------------------------

    def build(self, outputs):
        """Serialise the model with the given output tensors; returns the .tflite bytes.

        Raises:
            ValueError: if there is no input, no output, or an output handle is unknown.
        """
        outputs = tuple(outputs)
        if not self._inputs or not outputs:
            raise ValueError("a model needs at least one input and one output")
        for handle in outputs:
            self._tensor(handle)
        builder = flatbuffers.Builder(1 << 16)
        buffers = [self._write_buffer(builder, data) for data in self._buffers]
        tensors = [self._write_tensor(builder, tensor) for tensor in self._tensors]
        opcodes = list(dict.fromkeys(op.opcode for op in self._operators))
        operators = [self._write_operator(builder, op, opcodes.index(op.opcode)) for op in self._operators]
        codes = [self._write_opcode(builder, *_OPCODES[name]) for name in opcodes]

        subgraph_name = builder.CreateString("main")
        vectors = [_offsets(builder, tflite.SubGraphStartTensorsVector, tensors),
                   _int32s(builder, self._inputs), _int32s(builder, outputs),
                   _offsets(builder, tflite.SubGraphStartOperatorsVector, operators)]
        tflite.SubGraphStart(builder)
        for add, vector in zip((tflite.SubGraphAddTensors, tflite.SubGraphAddInputs, tflite.SubGraphAddOutputs,
                                tflite.SubGraphAddOperators), vectors):
            add(builder, vector)
        tflite.SubGraphAddName(builder, subgraph_name)
        subgraph = tflite.SubGraphEnd(builder)

        description = builder.CreateString(self._description)
        codes = _offsets(builder, tflite.ModelStartOperatorCodesVector, codes)
        subgraphs = _offsets(builder, tflite.ModelStartSubgraphsVector, [subgraph])
        buffers = _offsets(builder, tflite.ModelStartBuffersVector, buffers)
        tflite.ModelStart(builder)
        tflite.ModelAddVersion(builder, 3)
        tflite.ModelAddOperatorCodes(builder, codes)
        tflite.ModelAddSubgraphs(builder, subgraphs)
        tflite.ModelAddDescription(builder, description)
        tflite.ModelAddBuffers(builder, buffers)
        builder.Finish(tflite.ModelEnd(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    # --- internals ---------------------------------------------------------------------------------------------

    def _convolution(self, opcode, x, weights, bias, weight_scale, channel_shift, stride, padding,
                     output_scale, output_zero_point, qmin, qmax, name):
        n, h, w, cin = self._nhwc(x)
        depthwise = opcode == "DEPTHWISE_CONV_2D"
        weights = _integers(weights, "weights", -127, 127)
        if depthwise:
            if weights.ndim != 3 or weights.shape[2] != cin:
                raise ValueError(f"depthwise weights must be (KH, KW, {cin}), not of shape {weights.shape}")
            weights = weights[None]                              # TFLite's (1, KH, KW, C)
            cout, kernel = cin, weights.shape[1:3]
        else:                                                    # grouped when Cin is a multiple of the weights'
            groups = cin // weights.shape[3] if weights.ndim == 4 and weights.shape[3] else 0
            if weights.ndim != 4 or groups * weights.shape[3] != cin or weights.shape[0] % groups:
                raise ValueError(f"conv weights must be (Cout, KH, KW, {cin} / groups), not of shape {weights.shape}")
            cout, kernel = weights.shape[0], weights.shape[1:3]
        bias = np.zeros(cout, dtype=np.int64) if bias is None else _integers(bias, "bias", INT32_MIN, INT32_MAX)
        if bias.shape != (cout,):
            raise ValueError(f"bias must have shape ({cout},), not {bias.shape}")
        channel_shift = np.zeros(cout, np.int64) if channel_shift is None else \
            _integers(channel_shift, "channel_shift", 0, 31)
        if channel_shift.shape != (cout,):
            raise ValueError(f"channel_shift must have shape ({cout},), not {channel_shift.shape}")
        weight_scale = np.asarray(weight_scale, dtype=np.float64)
        if weight_scale.shape not in ((), (cout,)):
            raise ValueError(f"weight_scale must be one scale or ({cout},) scales, not of shape {weight_scale.shape}")
        stride, padding = _pair(stride, "stride"), _padding(padding)

        mode = self._padding_mode((h, w), kernel, stride, padding)
        if mode is None:                    # explicit padding: PAD with the zero point, then VALID
            x = self.pad(x, padding, name=f"{name}/pad")
            n, h, w, cin = self._nhwc(x)
            padding, mode = (0, 0, 0, 0), tflite.Padding.VALID
        top, bottom, left, right = padding
        out_shape = (n, conv_output_size(h, kernel[0], stride[0], top, bottom),
                     conv_output_size(w, kernel[1], stride[1], left, right), cout)

        input_scale = float(self.quantization(x)[0])
        # s_w * 2**-k_c is exact in float32 (a power-of-two scaling), so every channel's double multiplier is the
        # layer's times 2**-k_c and LiteRT derives the layer's mantissa with shift e - k_c for each channel.
        channel_scale = np.ldexp(weight_scale.astype(np.float32), -channel_shift.astype(np.int32)) \
            * np.ones(cout, np.float32)
        if not np.all(np.isfinite(channel_scale) & (channel_scale >= np.finfo(np.float32).tiny)):
            raise ValueError(f"weight scales * 2**-k_c must be positive normal float32 values, not "
                             f"{channel_scale.tolist()}")
        bias_scale = (input_scale * channel_scale.astype(np.float64)).astype(np.float32)
        weights_handle = self._constant(f"{name}/weights", weights.astype(np.int8), _INT8, scale=channel_scale,
                                        zero_point=np.zeros(cout, np.int64), quantized_dimension=3 if depthwise else 0)
        bias_handle = self._constant(f"{name}/bias", bias.astype("<i4"), _INT32, scale=bias_scale,
                                     zero_point=np.zeros(cout, np.int64))
        out = self._activation(name, out_shape, output_scale, output_zero_point)
        activation = fused_activation(qmin, qmax, *self.quantization(out))
        if depthwise:
            options = ("DepthwiseConv2DOptions", (
                (tflite.DepthwiseConv2DOptionsAddPadding, mode), (tflite.DepthwiseConv2DOptionsAddStrideW, stride[1]),
                (tflite.DepthwiseConv2DOptionsAddStrideH, stride[0]),
                (tflite.DepthwiseConv2DOptionsAddDepthMultiplier, 1),
                (tflite.DepthwiseConv2DOptionsAddFusedActivationFunction, activation),
                (tflite.DepthwiseConv2DOptionsAddDilationWFactor, 1),
                (tflite.DepthwiseConv2DOptionsAddDilationHFactor, 1)))
        else:
            options = ("Conv2DOptions", (
                (tflite.Conv2DOptionsAddPadding, mode), (tflite.Conv2DOptionsAddStrideW, stride[1]),
                (tflite.Conv2DOptionsAddStrideH, stride[0]),
                (tflite.Conv2DOptionsAddFusedActivationFunction, activation),
                (tflite.Conv2DOptionsAddDilationWFactor, 1), (tflite.Conv2DOptionsAddDilationHFactor, 1)))
        self._operators.append(_Operator(opcode, (x, weights_handle, bias_handle), (out,), *options))
        return out

    def _pool(self, opcode, x, kernel, stride, padding, mode, qmin, qmax, name):
        n, h, w, c = self._nhwc(x)
        top, bottom, left, right = padding
        out_shape = (n, conv_output_size(h, kernel[0], stride[0], top, bottom),
                     conv_output_size(w, kernel[1], stride[1], left, right), c)
        out = self._activation(name, out_shape, *self.quantization(x))
        activation = fused_activation(qmin, qmax, *self.quantization(out))
        self._operators.append(_Operator(opcode, (x,), (out,), "Pool2DOptions", (
            (tflite.Pool2DOptionsAddPadding, mode), (tflite.Pool2DOptionsAddStrideH, stride[0]),
            (tflite.Pool2DOptionsAddStrideW, stride[1]), (tflite.Pool2DOptionsAddFilterHeight, kernel[0]),
            (tflite.Pool2DOptionsAddFilterWidth, kernel[1]),
            (tflite.Pool2DOptionsAddFusedActivationFunction, activation))))
        return out

    @staticmethod
    def _padding_mode(size, kernel, stride, padding):
        # TFLite's Padding for an explicit (top, bottom, left, right), or None if it is neither.
        if padding == (0, 0, 0, 0):
            return tflite.Padding.VALID
        same = same_padding(size[0], kernel[0], stride[0]) + same_padding(size[1], kernel[1], stride[1])
        return tflite.Padding.SAME if padding == same else None

    def _activation(self, name, shape, scale, zero_point):
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, not {name!r}")
        if any(tensor.name == name for tensor in self._tensors):
            raise ValueError(f"a tensor is already named {name!r}")
        shape = tuple(_positive(s, "shape") for s in shape)
        if not isinstance(zero_point, (int, np.integer)) or isinstance(zero_point, bool) \
                or not -128 <= zero_point <= 127:
            raise ValueError(f"zero point of {name!r} must be an integer in [-128, 127], not {zero_point!r}")
        self._tensors.append(_Tensor(name, shape, _INT8, 0, (_scale(scale, f"scale of {name!r}"),),
                                     (int(zero_point),)))
        return len(self._tensors) - 1

    def _constant(self, name, data, type_, *, scale=None, zero_point=None, quantized_dimension=0):
        self._buffers.append(np.ascontiguousarray(data).tobytes())
        quantization = () if scale is None else tuple(np.float32(s) for s in scale)
        zero_points = () if zero_point is None else tuple(int(z) for z in zero_point)
        self._tensors.append(_Tensor(name, tuple(data.shape), type_, len(self._buffers) - 1, quantization,
                                     zero_points, quantized_dimension))
        return len(self._tensors) - 1

    def _tensor(self, handle):
        if not isinstance(handle, (int, np.integer)) or not 0 <= handle < len(self._tensors) \
                or self._tensors[handle].buffer != 0:
            raise ValueError(f"{handle!r} is not an activation tensor of this model")
        return self._tensors[handle]

    def _nhwc(self, x):
        shape = self._tensor(x).shape
        if len(shape) != 4:
            raise ValueError(f"tensor {self._tensor(x).name!r} must be NHWC, not of shape {shape}")
        return shape

    @staticmethod
    def _write_buffer(builder, data):
        vector = None
        if data:
            builder.StartVector(1, len(data), 16)            # 16-byte aligned constants
            builder.head -= len(data)
            builder.Bytes[builder.head:builder.head + len(data)] = data
            vector = builder.EndVector()
        tflite.BufferStart(builder)
        if vector is not None:
            tflite.BufferAddData(builder, vector)
        return tflite.BufferEnd(builder)

    @staticmethod
    def _write_tensor(builder, tensor):
        name = builder.CreateString(tensor.name)
        shape = _int32s(builder, tensor.shape)
        quantization = None
        if tensor.scale:
            scale = builder.CreateNumpyVector(np.asarray(tensor.scale, dtype=np.float32))
            zero_point = builder.CreateNumpyVector(np.asarray(tensor.zero_point, dtype=np.int64))
            tflite.QuantizationParametersStart(builder)
            tflite.QuantizationParametersAddScale(builder, scale)
            tflite.QuantizationParametersAddZeroPoint(builder, zero_point)
            tflite.QuantizationParametersAddQuantizedDimension(builder, tensor.quantized_dimension)
            quantization = tflite.QuantizationParametersEnd(builder)
        tflite.TensorStart(builder)
        tflite.TensorAddShape(builder, shape)
        tflite.TensorAddType(builder, tensor.type)
        tflite.TensorAddBuffer(builder, tensor.buffer)
        tflite.TensorAddName(builder, name)
        if quantization is not None:
            tflite.TensorAddQuantization(builder, quantization)
        return tflite.TensorEnd(builder)

    @staticmethod
    def _write_operator(builder, operator, opcode_index):
        inputs, outputs = _int32s(builder, operator.inputs), _int32s(builder, operator.outputs)
        table = operator.options_table
        if table is not None:
            getattr(tflite, f"{table}Start")(builder)
            for add, value in operator.options:
                add(builder, value)
            options = getattr(tflite, f"{table}End")(builder)
        tflite.OperatorStart(builder)
        tflite.OperatorAddOpcodeIndex(builder, opcode_index)
        tflite.OperatorAddInputs(builder, inputs)
        tflite.OperatorAddOutputs(builder, outputs)
        if table is not None:                                # LOGISTIC, TANH: no options table
            tflite.OperatorAddBuiltinOptionsType(builder, getattr(tflite.BuiltinOptions, table))
            tflite.OperatorAddBuiltinOptions(builder, options)
        return tflite.OperatorEnd(builder)

    @staticmethod
    def _write_opcode(builder, code, version):
        tflite.OperatorCodeStart(builder)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(builder, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(builder, code)
        tflite.OperatorCodeAddVersion(builder, version)
        return tflite.OperatorCodeEnd(builder)


def export_network(network, *, batch=1):
    """The whole quantized network as .tflite bytes: input ``"input"``, one int8 output, tensors named as the layers.

    Args:
        network: a :class:`golden.network.Network`.
        batch: the batch size the model is built for (LiteRT shapes are static).
    Raises:
        ValueError: if a layer cannot be expressed bit-exactly (see :func:`export_layer`).
    """
    builder = ModelBuilder(description="wess-npu quantized network")
    info = network.tensors[gnet.INPUT]
    handles = {gnet.INPUT: builder.input(gnet.INPUT, (_batch(batch), *info.shape), scale=info.scale,
                                         zero_point=info.zero_point)}
    for layer in network.layers:
        handles[layer.output] = _emit(builder, network, layer, handles)
    return builder.build([handles[network.output]])


def export_layer(network, name, *, batch=1):
    """One layer of ``network`` alone as .tflite bytes; its inputs are the model's inputs, in ``layer.inputs`` order
    without repeats.

    Raises:
        KeyError: for an unknown layer.
        ValueError: if LiteRT would compute something else from the file than the golden model from the layer: a
            multiplier LiteRT derives differently from the float32 scales, Add parameters ``add_params`` does not
            reproduce, a clamp no fused activation gives, a pooling output quantized unlike its input.
    """
    layer = network.layer(name)
    builder = ModelBuilder(description=f"wess-npu layer {name}")
    handles = {}
    for tensor in dict.fromkeys(layer.inputs):
        info = network.tensors[tensor]
        handles[tensor] = builder.input(tensor, (_batch(batch), *info.shape), scale=info.scale,
                                        zero_point=info.zero_point)
    return builder.build([_emit(builder, network, layer, handles)])


def _emit(builder, network, layer, handles):
    # Add `layer` of `network` to `builder`, reading the tensors in `handles`; returns its output handle.
    out = network.tensors[layer.output]
    label = f"layer {layer.name!r}"
    if isinstance(layer, gnet.Flatten):
        shape = builder.shape(handles[layer.input])
        return builder.reshape(handles[layer.input], (shape[0], int(np.prod(shape[1:]))), name=layer.output)
    if isinstance(layer, (gnet.Add, gnet.Mul)):
        derive, method = (add_params, builder.add) if isinstance(layer, gnet.Add) else (mul_params, builder.mul)
        inputs = [network.tensors[t] for t in layer.inputs]
        params = derive(inputs[0].scale, inputs[0].zero_point, inputs[1].scale, inputs[1].zero_point,
                        out.scale, out.zero_point)
        if params != layer.params:
            raise ValueError(f"{label}: LiteRT derives {params} from the float32 scales, the layer has {layer.params}")
        return method(*(handles[t] for t in layer.inputs), output_scale=out.scale, output_zero_point=out.zero_point,
                      qmin=layer.qmin, qmax=layer.qmax, name=layer.output)
    if isinstance(layer, (gnet.AveragePool, gnet.MaxPool, gnet.Concat)):
        for name in layer.inputs:
            source = network.tensors[name]
            if (np.float32(source.scale), source.zero_point) != (np.float32(out.scale), out.zero_point):
                raise ValueError(f"{label}: LiteRT's int8 {layer.kind} needs its output quantized as its inputs")
    if isinstance(layer, gnet.AveragePool):
        kernel = network.tensors[layer.input].shape[:2] if layer.kernel is None else layer.kernel
        padding = (0, 0, 0, 0) if layer.kernel is None else layer.padding
        stride = (1, 1) if layer.kernel is None else layer.stride
        return builder.average_pool2d(handles[layer.input], kernel, stride=stride, padding=padding,
                                      name=layer.output)
    if isinstance(layer, gnet.MaxPool):
        return builder.max_pool2d(handles[layer.input], layer.kernel, stride=layer.stride, padding=layer.padding,
                                  name=layer.output)
    if isinstance(layer, gnet.Concat):
        return builder.concatenation([handles[name] for name in layer.inputs], name=layer.output)
    if isinstance(layer, gnet.Activation):
        source = network.tensors[layer.input]
        table = activation_table(layer.function, source.scale, source.zero_point, out.scale, out.zero_point,
                                 alpha=layer.alpha)
        if not np.array_equal(table, layer.table):
            raise ValueError(f"{label}: LiteRT's {ACTIVATION_OPS[layer.function]} computes another table from the "
                             f"float32 scales than the layer holds")
        return builder.activation(handles[layer.input], layer.function, output_scale=out.scale,
                                  output_zero_point=out.zero_point, alpha=layer.alpha, name=layer.output)
    source = network.tensors[layer.input]
    _check_multipliers(layer, source.scale, out.scale, label)
    # The file holds s_w and k_c as the NPU does: the builder writes channel scales s_w * 2**-k_c (exact).
    common = dict(weight_scale=np.ldexp(layer.weight_scale, layer.channel_shift), channel_shift=layer.channel_shift,
                  output_scale=out.scale, output_zero_point=out.zero_point, qmin=layer.qmin, qmax=layer.qmax,
                  name=layer.output)
    if isinstance(layer, gnet.FullyConnected):
        return builder.fully_connected(handles[layer.input], layer.weights, layer.bias, **common)
    method = builder.depthwise_conv2d if isinstance(layer, gnet.DepthwiseConv2D) else builder.conv2d
    return method(handles[layer.input], layer.weights, layer.bias, stride=layer.stride, padding=layer.padding,
                  **common)


def _check_multipliers(layer, input_scale, output_scale, label):
    # LiteRT derives each channel's (multiplier, shift) from float32(s_in) * float32(s_c) / float32(s_out); the golden
    # model uses the layer's (multiplier, shift - k_c). Both compute the zero point when the shift is below -31.
    channels = layer.channels
    multiplier = np.broadcast_to(np.asarray(layer.multiplier, dtype=np.int64), (channels,))
    shift = np.broadcast_to(np.asarray(layer.shift, dtype=np.int64), (channels,)) - layer.channel_shift
    s_in, s_out = float(np.float32(input_scale)), float(np.float32(output_scale))
    for c in range(channels):
        derived = quantize_multiplier(s_in * float(np.float32(layer.weight_scale[c])) / s_out)
        wanted = (int(multiplier[c]), int(shift[c]))
        if derived != wanted and not (derived == (0, 0) and (wanted[0] == 0 or wanted[1] < -31)):
            raise ValueError(f"{label}, channel {c}: LiteRT derives (multiplier, shift) = {derived} from the float32 "
                             f"scales, the golden model uses {wanted}")


def check_quantization(model, network):
    """Every tensor's quantization parameters in the .tflite ``model`` against ``network``: the list of problems.

    LiteRT's int8 kernels read only part of a file's metadata (the conv kernels never read the bias scale), so running
    the model cannot catch a wrong field; another converter or runtime would read it. Checked, from the network alone:

    * activation tensors: one scale and one zero point, those of the network tensor of that name (the scale rounded
      to float32), and unchanged through RESHAPE, PAD and AVERAGE_POOL_2D;
    * CONV_2D / DEPTHWISE_CONV_2D (a fully connected layer's 1x1 CONV_2D too): input and output quantized as the
      layer's tensors; int8 weights with channel scales ``s_w * 2**-k_c`` (WESS: one layer scale ``s_w = weight_scale_c
      * 2**k_c`` for every channel), zero points 0, quantized dimension 0 (OHWI) or 3 (depthwise ``(1, KH, KW, C)``);
      int32 bias with scales ``s_in * s_w * 2**-k_c`` (the float32 rounding of the exact product), zero points 0,
      dimension 0;
    * the int32 shape and padding constants: no quantization;
    * every tensor of the model is covered by one of these rules.

    Args:
        model: .tflite bytes from :func:`export_network` or :func:`export_layer` of ``network``.
        network: the :class:`golden.network.Network`.
    Returns:
        One line per problem; empty when every tensor is right.
    """
    root = tflite.Model.GetRootAs(bytes(model), 0)
    graph = root.Subgraphs(0)
    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    names = [tensor.Name().decode() for tensor in tensors]
    opcodes = {code: name for name, (code, _) in _OPCODES.items()}
    layers = {}
    for layer in network.layers:
        layers[layer.output] = layer
        if isinstance(layer, gnet.FullyConnected):
            layers[f"{layer.output}/conv"] = layer           # the 1x1 CONV_2D of ModelBuilder.fully_connected
    problems, checked = [], set()

    def expect(index, type_, scale, zero_point, dimension=0):
        # Compare tensor `index` with the expected quantization (scale None: no quantization at all).
        checked.add(index)
        label = f"tensor {names[index]!r}"
        if tensors[index].Type() != type_:
            problems.append(f"{label}: type {tensors[index].Type()}, expected {type_}")
        got = _read_quantization(tensors[index])
        if scale is None:
            if got is not None:
                problems.append(f"{label}: has quantization parameters, expected none")
            return
        if got is None:
            problems.append(f"{label}: has no quantization parameters")
            return
        for field, value, want in (("scale", got[0], np.asarray(scale, np.float32).reshape(-1)),
                                   ("zero point", got[1], np.asarray(zero_point, np.int64).reshape(-1))):
            if value.shape != want.shape:
                problems.append(f"{label}: {len(value)} {field}s, expected {len(want)}")
            elif not np.array_equal(value, want):
                c = int(np.flatnonzero(value != want)[0])
                problems.append(f"{label}: {field} of channel {c} is {value[c]:.9g}, expected {want[c]:.9g}")
        if got[2] != dimension:
            problems.append(f"{label}: quantized dimension {got[2]}, expected {dimension}")

    def activation(index, name):
        info = network.tensors[name]
        expect(index, _INT8, np.float32(info.scale), info.zero_point)

    for index, name in enumerate(names):
        if name in network.tensors:
            activation(index, name)
    for i in range(graph.OperatorsLength()):
        operator = graph.Operators(i)
        opcode = opcodes.get(root.OperatorCodes(operator.OpcodeIndex()).BuiltinCode())
        inputs, (output, *_) = operator.InputsAsNumpy().tolist(), operator.OutputsAsNumpy().tolist()
        if opcode in ("RESHAPE", "PAD", "PADV2", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
            source = _read_quantization(tensors[inputs[0]])
            if source is None or len(source[0]) != 1:
                problems.append(f"tensor {names[inputs[0]]!r}: expected one scale and zero point")
            else:
                expect(output, _INT8, source[0], source[1])
                if opcode == "PADV2":                        # the fill value: int8, quantized as the input
                    expect(inputs[2], _INT8, source[0], source[1])
            for constant in inputs[1:2]:
                expect(constant, _INT32, None, None)
        elif opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            layer = layers.get(names[output])
            if layer is None:
                problems.append(f"{opcode} writing {names[output]!r}: no layer of the network writes it")
                continue
            activation(inputs[0], layer.input)
            activation(output, layer.output)
            k = np.asarray(layer.channel_shift, np.int64)
            s_w = np.ldexp(np.asarray(layer.weight_scale, np.float64), k)
            if not layer.per_channel:                        # WESS: one layer scale, the one most channels give
                values, counts = np.unique(s_w, return_counts=True)
                if len(values) > 1:
                    problems.append(f"layer {layer.name!r}: the weight scales are not one scale s_w times 2**-k_c")
                s_w = np.full(layer.channels, values[np.argmax(counts)])
            channel_scale = np.float32(s_w).astype(np.float64) * np.exp2(-k)
            s_in = float(np.float32(network.tensors[layer.input].scale))
            zeros = np.zeros(layer.channels, np.int64)
            expect(inputs[1], _INT8, channel_scale, zeros, 3 if opcode == "DEPTHWISE_CONV_2D" else 0)
            expect(inputs[2], _INT32, s_in * channel_scale, zeros)
        elif opcode not in ("ADD", "MUL", "CONCATENATION", *ACTIVATION_OPS.values()):
            # the others read and write only the network's tensors, checked above
            problems.append(f"operator {i}: unexpected builtin code "
                            f"{root.OperatorCodes(operator.OpcodeIndex()).BuiltinCode()}")
    problems += [f"tensor {names[i]!r}: no rule checks its quantization" for i in range(len(tensors))
                 if i not in checked]
    return list(dict.fromkeys(problems))


def _read_quantization(tensor):
    # (scales float32, zero points int64, quantized dimension) of a tensor, or None if it has no scales.
    quantization = tensor.Quantization()
    if quantization is None or quantization.ScaleLength() == 0:
        return None
    zero_point = quantization.ZeroPointAsNumpy() if quantization.ZeroPointLength() else np.zeros(0, np.int64)
    return (quantization.ScaleAsNumpy().astype(np.float32), np.asarray(zero_point, np.int64),
            quantization.QuantizedDimension())


def _batch(batch):
    return _positive(batch, "batch")


def run_reference(model, inputs, *, keep=False):
    """Run a .tflite model with LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``).

    Args:
        model: the .tflite bytes.
        inputs: one int8-valued array per subgraph input, in order, each of the input's shape.
        keep: also return every tensor the model computed, by name (``experimental_preserve_all_tensors``).
    Returns:
        The list of output arrays (int8), and with ``keep`` a second value: ``{tensor name: array}``.
    Raises:
        ImportError: if ai-edge-litert is not installed.
        ValueError: for a wrong number of inputs or an input of the wrong shape or range.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=bytes(model), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=keep)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    inputs = list(inputs)
    if len(inputs) != len(details):
        raise ValueError(f"the model has {len(details)} inputs, not {len(inputs)}")
    for detail, value in zip(details, inputs):
        value = _integers(value, f"input {detail['name']!r}", -128, 127)
        if value.shape != tuple(detail["shape"]):
            raise ValueError(f"input {detail['name']!r} must have shape {tuple(detail['shape'])}, not {value.shape}")
        interpreter.set_tensor(detail["index"], value.astype(np.int8))
    interpreter.invoke()
    outputs = [interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()]
    if not keep:
        return outputs
    tensors = {detail["name"]: interpreter.get_tensor(detail["index"]) for detail in interpreter.get_tensor_details()}
    return outputs, tensors


def benchmark(network, x):
    """Run ``network`` on the int8 NHWC batch ``x`` in the golden model and in LiteRT REF; compare and time both.

    Every tensor a layer writes is compared element by element (LiteRT's preserved intermediate tensors against the
    golden trace), and every tensor's quantization parameters are checked (:func:`check_quantization`). Timings are wall-clock seconds of one run each without kept tensors: the golden model
    (:func:`golden.network.run`), LiteRT (interpreter construction, allocation, invoke on the whole batch), and the
    export itself.

    Returns:
        dict with ``images``, ``layers``, ``elements``, ``mismatches``, ``mismatching_layers`` (names),
        ``tensors`` (of the model), ``quantization_problems`` (lines), ``golden_s``, ``litert_s``, ``export_s``.
    """
    x = np.asarray(x)
    started = time.perf_counter()
    model = export_network(network, batch=len(x))
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    golden = gnet.run(network, x)
    golden_s = time.perf_counter() - started
    started = time.perf_counter()
    (litert,) = run_reference(model, [x])
    litert_s = time.perf_counter() - started

    _, trace = gnet.run(network, x, keep=True)
    _, tensors = run_reference(model, [x], keep=True)
    elements = mismatches = 0
    mismatching = []
    for layer in network.layers:
        expected, actual = trace.tensors[layer.output], tensors[layer.output]
        wrong = int(np.count_nonzero(actual != expected)) if actual.shape == expected.shape else expected.size
        elements += expected.size
        mismatches += wrong
        if wrong:
            mismatching.append(layer.name)
    if not np.array_equal(golden, litert):
        mismatching.append("output")
    return dict(images=len(x), layers=len(network.layers), elements=elements, mismatches=mismatches,
                mismatching_layers=mismatching, tensors=tflite.Model.GetRootAs(model, 0).Subgraphs(0).TensorsLength(),
                quantization_problems=check_quantization(model, network), golden_s=golden_s, litert_s=litert_s,
                export_s=export_s)


def format_benchmark(result):
    """One line for a report: what was compared, the mismatches and both timings."""
    per_image = 1000.0 / result["images"]
    return (f"LiteRT BUILTIN_REF vs golden: {result['images']} images, {result['layers']} layers, "
            f"{result['elements']} elements compared, {result['mismatches']} mismatching; "
            f"quantization of {result['tensors']} tensors checked, {len(result['quantization_problems'])} problems; "
            f"golden {result['golden_s']:.3f} s ({result['golden_s'] * per_image:.2f} ms/image), "
            f"LiteRT REF {result['litert_s']:.3f} s ({result['litert_s'] * per_image:.2f} ms/image), "
            f"export {result['export_s'] * 1000:.1f} ms")


def _int32s(builder, values):
    return builder.CreateNumpyVector(np.asarray(values, dtype=np.int32).reshape(-1))


def _offsets(builder, start, offsets):
    start(builder, len(offsets))
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _integers(value, name, low, high):
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not of dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(f"{name} values must lie in [{low}, {high}], found [{array.min()}, {array.max()}]")
    return array


def _scale(value, name):
    single = np.float32(value)
    if not np.isfinite(single) or single <= 0:
        raise ValueError(f"{name} must be a positive finite float32, not {value!r}")
    return single


def _padding(padding):
    if not isinstance(padding, (tuple, list)) or len(padding) != 4 \
            or any(not isinstance(p, (int, np.integer)) or isinstance(p, bool) or p < 0 for p in padding):
        raise ValueError(f"padding must be (top, bottom, left, right) of non-negative integers, not {padding!r}")
    return tuple(int(p) for p in padding)


def _pair(value, name):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of positive integers, not {value!r}")
    return tuple(_positive(v, name) for v in value)


def _positive(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must contain positive integers, not {value!r}")
    return int(value)
