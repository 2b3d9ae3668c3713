"""ONNX model -> float graph IR of MobileNet-class CNNs, with batch norm and activations folded in.

The IR is what the quantizer works on: a topologically ordered tuple of nodes whose outputs are exactly the tensors
the NPU stores (so each carries one int8 quantization). The model is first normalised (:mod:`.normalize`, one pass
per export form: ReduceMean over H and W becomes GlobalAveragePool, MatMul + Add becomes Gemm, Identity and Dropout
disappear, ...), so that every export of one network gives the same IR. Batch normalisation is folded into the
preceding convolution (in float64, then rounded to float32, as an exporter that folds it would store it), Relu /
Clip(0, 6) are fused into the node that produces their input, a constant added to a convolution or matrix product
becomes its bias. Weights keep ONNX's layout (conv ``(O, I/groups, KH, KW)``, fully connected ``(O, I)`` with inputs
in NCHW flatten order); the quantizer converts to the NPU's layouts.

Every node and attribute is checked after normalisation and before anything is built: an op or an attribute value
outside the supported set raises :class:`UnsupportedModelError` naming the op and the node, and saying what is
supported instead. :meth:`Graph.to_onnx` writes the IR back as a plain float ONNX model (Conv, Relu, Clip, Add,
pools, Flatten, Gemm) exposing every IR tensor as an output; the calibration runs it in onnxruntime, so that an
export with batch norm folded and one without give the same activation ranges.
"""

import dataclasses
import math
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .normalize import normalize

__all__ = [
    "UnsupportedModelError", "Conv", "FullyConnected", "Add", "Pool", "MaxPool", "Activation", "Concat", "Mul",
    "Flatten", "Graph",
    "load_graph", "fold_batch_norm", "SUPPORTED_OPS",
]


class UnsupportedModelError(ValueError):
    """The model file cannot be read, or holds an op, attribute or structure the quantizer does not support."""


#: Fused activations of Conv, Gemm, Add and Mul nodes; ``hard_sigmoid`` (Conv and Gemm only) is the clamp to [0, 1]
#: of a HardSigmoid whose affine part is folded into the weights (docs/arithmetic.md, section 9b).
ACTIVATIONS = (None, "relu", "relu6", "hard_sigmoid")

#: ONNX elementwise activation op -> golden.activation function (a table layer of its own).
TABLE_OPS = {"HardSwish": "hard_swish", "LeakyRelu": "leaky_relu", "Sigmoid": "logistic", "Tanh": "tanh"}


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Unary:
    """A node reading one tensor: ``name`` (of its ONNX node), ``input`` and ``output`` tensor names."""
    name: str
    input: str
    output: str

    @property
    def inputs(self):
        return (self.input,)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Conv(_Unary):
    """2-D convolution (regular, depthwise or grouped) with its folded bias and fused activation.

    ``weights`` float32 ``(O, I/groups, KH, KW)``, ``bias`` float32 ``(O,)``; ``padding`` is
    ``(top, bottom, left, right)``; ``activation`` one of :data:`ACTIVATIONS`.
    """
    weights: np.ndarray
    bias: np.ndarray
    stride: tuple
    padding: tuple
    groups: int
    activation: str = None

    @property
    def depthwise(self):
        """One input and one output channel per group (TFLite's DEPTHWISE_CONV_2D with multiplier 1)."""
        return self.groups > 1 and self.weights.shape[0] == self.groups and self.weights.shape[1] == 1


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class FullyConnected(_Unary):
    """``y = W x + b`` on a flat input: ``weights`` float32 ``(O, I)``, ``bias`` float32 ``(O,)``."""
    weights: np.ndarray
    bias: np.ndarray
    activation: str = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Add:
    """Elementwise sum of two tensors of the same shape (a residual connection), with fused activation."""
    name: str
    inputs: tuple
    output: str
    activation: str = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Pool(_Unary):
    """Average pooling; ``kernel is None`` means global. Padded taps are not counted (ONNX count_include_pad=0)."""
    kernel: tuple = None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class MaxPool(_Unary):
    """Max pooling; padded taps never win (so ``ceil_mode`` 1 is imported as more padding after the input)."""
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Activation(_Unary):
    """An elementwise activation with an int8 table of its own: ``function`` a value of :data:`TABLE_OPS`, or
    ``relu`` / ``relu6`` for a Relu or Clip that no layer before it can absorb; ``alpha`` LeakyReLU's slope (else
    ``None``)."""
    function: str
    alpha: float = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Concat:
    """Concatenation of NCHW tensors along channels."""
    name: str
    inputs: tuple
    output: str


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Mul:
    """Elementwise product of a tensor and one of its shape or a per-channel ``(C, 1, 1)`` gate (second input),
    with fused activation."""
    name: str
    inputs: tuple
    output: str
    activation: str = None


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Flatten(_Unary):
    """``[N, C, H, W] -> [N, C*H*W]`` (ONNX order); a no-op on the NPU when ``H = W = 1``."""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Graph:
    """The float IR of one model.

    Parameters
    ----------
    input : str
        Name of the image input tensor, NCHW float32.
    output : str
        Name of the logits tensor.
    nodes : tuple
        :class:`Conv`, :class:`FullyConnected`, :class:`Add`, :class:`Pool`, :class:`MaxPool`, :class:`Activation`,
        :class:`Concat`, :class:`Mul`, :class:`Flatten`, in topological order.
    shapes : dict
        Every tensor's shape without the batch axis: ``(C, H, W)`` or ``(F,)``.
    metadata : dict
        The model's ``metadata_props`` (the preprocessing contract, where the exporter wrote one).
    """
    input: str
    output: str
    nodes: tuple
    shapes: dict
    metadata: dict

    @property
    def tensors(self):
        """Names of every IR tensor that a node writes, in order."""
        return tuple(node.output for node in self.nodes)

    def producer(self, tensor):
        """The node writing ``tensor``, or ``None`` for the graph input."""
        for node in self.nodes:
            if node.output == tensor:
                return node
        return None

    def to_onnx(self, *, expose_all=True):
        """The IR as a float ONNX model (opset 17); with ``expose_all`` every IR tensor is a graph output."""
        nodes, initializers = [], []

        def constant(name, array):
            initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
            return name

        def activation(node, pre):
            if pre == node.output:
                return
            if node.activation == "relu":
                nodes.append(helper.make_node("Relu", [pre], [node.output]))
            else:
                top = 1.0 if node.activation == "hard_sigmoid" else 6.0
                nodes.append(helper.make_node("Clip", [pre, constant(f"{node.name}/clip_min", 0.0),
                                                       constant(f"{node.name}/clip_max", top)], [node.output]))

        for node in self.nodes:
            pre = node.output if getattr(node, "activation", None) is None else f"{node.output}/pre_activation"
            if isinstance(node, Conv):
                top, bottom, left, right = node.padding
                nodes.append(helper.make_node(
                    "Conv", [node.input, constant(f"{node.name}/W", node.weights), constant(f"{node.name}/B", node.bias)],
                    [pre], strides=list(node.stride), pads=[top, left, bottom, right], group=node.groups,
                    kernel_shape=list(node.weights.shape[2:])))
            elif isinstance(node, FullyConnected):
                nodes.append(helper.make_node(
                    "Gemm", [node.input, constant(f"{node.name}/W", node.weights), constant(f"{node.name}/B", node.bias)],
                    [pre], transB=1))
            elif isinstance(node, (Add, Mul)):
                nodes.append(helper.make_node(type(node).__name__, list(node.inputs), [pre]))
            elif isinstance(node, Concat):
                nodes.append(helper.make_node("Concat", list(node.inputs), [pre], axis=1))
            elif isinstance(node, Activation) and node.function == "relu":
                nodes.append(helper.make_node("Relu", [node.input], [node.output]))
            elif isinstance(node, Activation) and node.function == "relu6":
                nodes.append(helper.make_node("Clip", [node.input, constant(f"{node.name}/clip_min", 0.0),
                                                       constant(f"{node.name}/clip_max", 6.0)], [node.output]))
            elif isinstance(node, Activation):
                op = {function: op for op, function in TABLE_OPS.items()}[node.function]
                nodes.append(helper.make_node(op, [node.input], [pre],
                                              **({} if node.alpha is None else {"alpha": node.alpha})))
            elif isinstance(node, MaxPool):
                top, bottom, left, right = node.padding
                nodes.append(helper.make_node("MaxPool", [node.input], [pre], kernel_shape=list(node.kernel),
                                              strides=list(node.stride), pads=[top, left, bottom, right]))
            elif isinstance(node, Pool) and node.kernel is None:
                nodes.append(helper.make_node("GlobalAveragePool", [node.input], [pre]))
            elif isinstance(node, Pool):
                top, bottom, left, right = node.padding
                nodes.append(helper.make_node("AveragePool", [node.input], [pre], kernel_shape=list(node.kernel),
                                              strides=list(node.stride), pads=[top, left, bottom, right]))
            else:
                nodes.append(helper.make_node("Flatten", [node.input], [pre], axis=1))
            activation(node, pre)
        c, h, w = self.shapes[self.input]
        inputs = [helper.make_tensor_value_info(self.input, onnx.TensorProto.FLOAT, ["N", c, h, w])]
        names = self.tensors if expose_all else (self.output,)
        outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", *self.shapes[name]])
                   for name in names]
        graph = helper.make_graph(nodes, "ir", inputs, outputs, initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def fold_batch_norm(weights, bias, gamma, beta, mean, variance, epsilon):
    """Fold ``gamma * (y - mean) / sqrt(variance + epsilon) + beta`` into the conv producing ``y``.

    Computed in float64 and returned as float32: ``W' = W * a``, ``b' = (b - mean) * a + beta`` with
    ``a = gamma / sqrt(variance + epsilon)`` per output channel.
    """
    a = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + float(epsilon))
    folded_w = np.asarray(weights, np.float64) * a.reshape((-1,) + (1,) * (np.ndim(weights) - 1))
    folded_b = (np.asarray(bias, np.float64) - np.asarray(mean, np.float64)) * a + np.asarray(beta, np.float64)
    return folded_w.astype(np.float32), folded_b.astype(np.float32)


# op -> {attribute: check(value) -> error text or None}. An attribute not listed is unsupported.
def _equal(expected):
    return lambda value: None if value == expected else f"must be {expected!r}"


def _all_ones(value):
    return None if all(v == 1 for v in value) else "must be all 1 (no dilation)"


def _one_of(*allowed):
    return lambda value: None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}"


def _any(value):
    return None


_AUTO_PAD = _one_of("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")

SUPPORTED_OPS = {
    "Conv": {"auto_pad": _AUTO_PAD, "dilations": _all_ones, "group": _any, "kernel_shape": _any, "pads": _any,
             "strides": _any},
    "BatchNormalization": {"epsilon": _any, "momentum": _any, "training_mode": _equal(0), "spatial": _equal(1)},
    "Relu": {},
    "Clip": {"min": _any, "max": _any},
    "Add": {},
    "GlobalAveragePool": {},
    "AveragePool": {"auto_pad": _AUTO_PAD, "ceil_mode": _equal(0), "count_include_pad": _equal(0),
                    "dilations": _all_ones, "kernel_shape": _any, "pads": _any, "strides": _any},
    "Flatten": {"axis": _equal(1)},
    "MaxPool": {"auto_pad": _AUTO_PAD, "ceil_mode": _one_of(0, 1), "dilations": _all_ones, "kernel_shape": _any,
                "pads": _any, "storage_order": _equal(0), "strides": _any},
    "Concat": {"axis": _one_of(1, -3)},
    "Mul": {},
    "HardSwish": {},
    "HardSigmoid": {"alpha": _any, "beta": _any},
    "LeakyRelu": {"alpha": _any},
    "Sigmoid": {},
    "Tanh": {},
    "Gemm": {"alpha": _any, "beta": _any, "transA": _equal(0), "transB": _any},
}

# What to do about an op that no normalisation pass turned into a supported one.
_HINTS = {
    "ReduceMean": "only a mean over H and W (axes 2 and 3) of an NCHW tensor, a global average pool, is supported",
    "Squeeze": "only squeezing H and W of an [N, C, 1, 1] tensor, a flatten, is supported",
    "Reshape": "only a flatten to [N, C*H*W] with a constant shape is supported",
    "MatMul": "only a flat [N, K] tensor times a constant 2-D matrix, a fully connected layer, is supported",
    "Dropout": "only inference-mode Dropout whose mask is unused is supported: export the model in eval mode",
    "Constant": "only numeric Constant values are supported",
}
_SUPPORTED = ("the quantizer imports Conv, BatchNormalization, Relu, Clip (ReLU/ReLU6), Add, GlobalAveragePool, "
              "AveragePool, MaxPool, Concat (channels), Mul (same shape or a per-channel gate), HardSwish, "
              "HardSigmoid (after a Conv or Gemm), LeakyRelu, Sigmoid, Tanh, ReduceMean over H and W, "
              "Flatten/Reshape/Squeeze to [N, C*H*W], Gemm, MatMul (+ Add), Identity and Dropout: replace it in the "
              "model (docs/quantizer.md lists the supported layers)")


def load_graph(model):
    """Import an ONNX model (a path or a ``ModelProto``) as a :class:`Graph`.

    Raises
    ------
    UnsupportedModelError
        If the file is missing or not ONNX, an op or attribute is unsupported (checked for every node before any
        other work), a weight is NaN or infinite, or the structure cannot be mapped (e.g. a BatchNormalization that
        does not follow a Conv).
    """
    if not isinstance(model, onnx.ModelProto):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise UnsupportedModelError(f"model file {path!r} does not exist")
        try:
            model = onnx.load(path)
        except Exception as error:  # protobuf raises its own DecodeError, onnx an assortment of others
            raise UnsupportedModelError(f"model file {path!r} is not an ONNX model ({type(error).__name__})") from None
        if not model.graph.node:
            raise UnsupportedModelError(f"model file {path!r} is not an ONNX model (it has no graph nodes)")
    model = normalize(model)
    _check_ops(model.graph)
    return _Importer(model).run()


def _check_ops(graph):
    for node in graph.node:
        label = f"node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(f"unsupported op {node.domain}.{node.op_type} ({label}): {_SUPPORTED}")
        if node.op_type not in SUPPORTED_OPS:
            raise UnsupportedModelError(f"unsupported op {node.op_type} ({label}): "
                                        f"{_HINTS.get(node.op_type, _SUPPORTED)}")
        checks = SUPPORTED_OPS[node.op_type]
        for attribute in node.attribute:
            if attribute.name not in checks:
                raise UnsupportedModelError(f"unsupported attribute {attribute.name!r} of {node.op_type} ({label})")
            value = helper.get_attribute_value(attribute)
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, list):
                value = tuple(value)
            problem = checks[attribute.name](value)
            if problem:
                raise UnsupportedModelError(f"unsupported {node.op_type} attribute {attribute.name}={value!r} "
                                            f"({label}): {problem}")


def _combined(activation, kind):
    """The fused activation of a layer with ``activation`` (``None``, ``relu``, ``relu6``) followed by ReLU or
    ReLU6 (``kind``)."""
    return "relu6" if "relu6" in (activation, kind) else "relu"


def _attributes(node):
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


class _Importer:
    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.constants = {}
        for tensor in self.graph.initializer:
            self.constants[tensor.name] = self._finite(numpy_helper.to_array(tensor), f"initializer {tensor.name!r}")
        self.consumers = {}
        used = [name for node in self.graph.node for name in node.input if name]
        for name in used + [output.name for output in self.graph.output]:
            self.consumers[name] = self.consumers.get(name, 0) + 1
        self.alias = {}        # ONNX tensor name -> IR tensor name
        self.nodes = []        # IR nodes being built (replaced in place when something is folded in)
        self.shapes = {}

    @staticmethod
    def _finite(array, what):
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise UnsupportedModelError(f"{what} holds NaN or infinite values")
        return array

    def run(self):
        inputs = [value for value in self.graph.input if value.name not in self.constants]
        if len(inputs) != 1:
            raise UnsupportedModelError(f"the model must have exactly one input, not {len(inputs)}")
        if len(self.graph.output) != 1:
            raise UnsupportedModelError(f"the model must have exactly one output, not {len(self.graph.output)}")
        image = inputs[0]
        dims = image.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        if len(shape) != 4 or None in shape[1:] or 0 in shape[1:]:
            raise UnsupportedModelError(f"input {image.name!r} must be NCHW with fixed C, H, W, not {shape!r}")
        self.shapes[image.name] = shape[1:]
        self.alias[image.name] = image.name
        for node in self.graph.node:
            getattr(self, "_" + node.op_type)(node, f"node {node.name or node.output[0]!r}")
        output = self.graph.output[0].name
        if output not in self.alias or output in self.constants:
            raise UnsupportedModelError(f"output {output!r} is not computed from the input")
        final = self.alias[output]
        if final == image.name:
            raise UnsupportedModelError("the model computes nothing: its output is its input")
        metadata = {prop.key: prop.value for prop in self.model.metadata_props}
        return Graph(input=image.name, output=final, nodes=tuple(self.nodes), shapes=dict(self.shapes),
                     metadata=metadata)

    # -- helpers -------------------------------------------------------------------------------------------------

    def _tensor(self, name, label):
        if name not in self.alias:
            raise UnsupportedModelError(f"{label}: input {name!r} is not computed from the model input")
        return self.alias[name]

    def _constant(self, name, label, what):
        if name not in self.constants:
            raise UnsupportedModelError(f"{label}: {what} {name!r} must be a constant (initializer or Constant)")
        return self.constants[name]

    def _only_output(self, node, label):
        used = [name for name in node.output[1:] if name and self.consumers.get(name)]
        if used:
            raise UnsupportedModelError(f"{label}: {node.op_type} output {used[0]!r} is used; only the first is supported")
        return node.output[0]

    def _fusable(self, tensor, label, op):
        """The index and IR node producing ``tensor`` when only ``op`` consumes it (so it can absorb ``op``)."""
        for index, node in enumerate(self.nodes):
            if node.output == tensor:
                if self.consumers.get(tensor, 0) != 1:
                    raise UnsupportedModelError(f"{label}: {op} input {tensor!r} is also used elsewhere; "
                                                f"it cannot be folded into {node.name!r}")
                return index, node
        return None, None

    def _emit(self, node, onnx_output, shape):
        self.nodes.append(node)
        self.alias[onnx_output] = node.output
        self.shapes[node.output] = shape

    def _replace(self, index, node, onnx_output):
        old = self.nodes[index]
        self.nodes[index] = node
        shape = self.shapes.pop(old.output)
        self.shapes[node.output] = shape
        self.alias[onnx_output] = node.output

    @staticmethod
    def _pads(attributes, in_hw, kernel, stride, label):
        auto_pad = attributes.get("auto_pad", "NOTSET")
        if auto_pad == "VALID":
            return (0, 0, 0, 0)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, s in zip(in_hw, kernel, stride):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                small, large = total // 2, total - total // 2
                pads.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
            return (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
        pads = tuple(attributes.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4 or min(pads) < 0:
            raise UnsupportedModelError(f"{label}: pads {pads!r} must be four non-negative values (2-D)")
        top, left, bottom, right = pads
        return (top, bottom, left, right)

    @staticmethod
    def _ceil_padding(in_hw, kernel, stride, padding):
        """``ceil_mode`` 1 as padding: each axis gets the output ``ceil((size + pads - k) / s) + 1``, less one where
        that last window would start past the input and its padding before (PyTorch's and onnxruntime's rule), and
        the padding after grows to the end of the last window. Exact for a max pool, whose padded taps never win."""
        padding = list(padding)
        for axis, (size, k, s) in enumerate(zip(in_hw, kernel, stride)):
            before, after = padding[2 * axis], padding[2 * axis + 1]
            out = -(-(size + before + after - k) // s) + 1
            if (out - 1) * s >= size + before:
                out -= 1
            padding[2 * axis + 1] = max(after, (out - 1) * s + k - size - before)
        return tuple(padding)

    @staticmethod
    def _out_size(size, kernel, stride, before, after, label):
        padded = size + before + after
        if kernel > padded:
            raise UnsupportedModelError(f"{label}: kernel {kernel} is larger than the padded input {padded}")
        return (padded - kernel) // stride + 1

    def _sole_producer(self, tensor):
        """The index and IR node producing ``tensor`` where nothing else reads it, else ``(None, None)``."""
        if self.consumers.get(tensor, 0) == 1:
            for index, node in enumerate(self.nodes):
                if node.output == tensor:
                    return index, node
        return None, None

    def _activation(self, node, label, kind):
        source = self._tensor(node.input[0], label)
        index, producer = self._sole_producer(source)
        if isinstance(producer, MaxPool):
            # relu(max_pool(x)) = max_pool(relu(x)) exactly (ReLU is monotone, a window always holds a real tap), as
            # PyTorch's MNIST example writes it: the ReLU goes to the max pool's producer.
            inner, conv = self._sole_producer(producer.input)
            if isinstance(conv, (Conv, FullyConnected, Add, Mul)) and conv.activation != "hard_sigmoid":
                self.nodes[inner] = dataclasses.replace(conv, activation=_combined(conv.activation, kind))
                self._replace(index, dataclasses.replace(producer, output=node.output[0]), node.output[0])
                return
        if producer is None or not isinstance(producer, (Conv, FullyConnected, Add, Mul)) \
                or producer.activation == "hard_sigmoid":
            # Nothing to fuse into (a table activation, a concatenation, a pool, the input, a tensor with other
            # readers): a table layer of its own (golden.activation.relu, LiteRT's RELU / RELU6).
            self._emit(Activation(name=node.name or node.output[0], input=source, output=node.output[0],
                                  function=kind), node.output[0], self.shapes[source])
            return
        self._replace(index, dataclasses.replace(producer, output=node.output[0],
                                                 activation=_combined(producer.activation, kind)), node.output[0])

    # -- ops --------------------------------------------------------------------------------------------------------

    def _Conv(self, node, label):
        attributes = _attributes(node)
        source = self._tensor(node.input[0], label)
        weights = self._constant(node.input[1], label, "weight").astype(np.float32)
        if weights.ndim != 4:
            raise UnsupportedModelError(f"{label}: only 2-D convolutions are supported, weights are {weights.shape}")
        out_channels, group_in, kh, kw = weights.shape
        if "kernel_shape" in attributes and tuple(attributes["kernel_shape"]) != (kh, kw):
            raise UnsupportedModelError(f"{label}: kernel_shape {attributes['kernel_shape']} disagrees with "
                                        f"the weights {weights.shape}")
        bias = (self._constant(node.input[2], label, "bias").astype(np.float32)
                if len(node.input) > 2 and node.input[2] else np.zeros(out_channels, np.float32))
        if bias.shape != (out_channels,):
            raise UnsupportedModelError(f"{label}: bias shape {bias.shape} must be ({out_channels},)")
        shape = self.shapes[source]
        if len(shape) != 3:
            raise UnsupportedModelError(f"{label}: Conv input {source!r} must be NCHW, not of shape {shape}")
        groups = attributes.get("group", 1)
        channels, h, w = shape
        if groups < 1 or channels % groups or out_channels % groups or channels // groups != group_in:
            raise UnsupportedModelError(f"{label}: group={groups} does not fit {channels} input channels and "
                                        f"weights {weights.shape}")
        stride = tuple(attributes.get("strides", (1, 1)))
        if len(stride) != 2 or min(stride) < 1:
            raise UnsupportedModelError(f"{label}: strides {stride!r} must be two positive values")
        padding = self._pads(attributes, (h, w), (kh, kw), stride, label)
        ho = self._out_size(h, kh, stride[0], padding[0], padding[1], label)
        wo = self._out_size(w, kw, stride[1], padding[2], padding[3], label)
        conv = Conv(name=node.name or node.output[0], input=source, output=node.output[0], weights=weights,
                    bias=bias, stride=stride, padding=padding, groups=groups)
        self._emit(conv, node.output[0], (out_channels, ho, wo))

    def _BatchNormalization(self, node, label):
        attributes = _attributes(node)
        self._only_output(node, label)
        source = self._tensor(node.input[0], label)
        index, conv = self._fusable(source, label, "BatchNormalization")
        if not isinstance(conv, Conv) or conv.activation is not None:
            raise UnsupportedModelError(f"{label}: BatchNormalization must directly follow a Conv to be folded")
        gamma, beta, mean, variance = (self._constant(name, label, what) for name, what in
                                       zip(node.input[1:5], ("scale", "B", "mean", "var")))
        for array, what in ((gamma, "scale"), (beta, "B"), (mean, "mean"), (variance, "var")):
            if array.shape != conv.bias.shape:
                raise UnsupportedModelError(f"{label}: BatchNormalization {what} has shape {array.shape}, "
                                            f"the Conv has {conv.bias.shape[0]} channels")
        epsilon = attributes.get("epsilon", 1e-5)
        weights, bias = fold_batch_norm(conv.weights, conv.bias, gamma, beta, mean, variance, epsilon)
        if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(bias))):
            raise UnsupportedModelError(f"{label}: folding BatchNormalization gives NaN or infinite weights")
        self._replace(index, dataclasses.replace(conv, output=node.output[0], weights=weights, bias=bias),
                      node.output[0])

    def _Relu(self, node, label):
        self._activation(node, label, "relu")

    def _Clip(self, node, label):
        attributes = _attributes(node)
        low, high = attributes.get("min"), attributes.get("max")
        for position, name in ((1, "min"), (2, "max")):
            if len(node.input) > position and node.input[position]:
                value = self._constant(node.input[position], label, f"Clip {name}")
                if value.size != 1:
                    raise UnsupportedModelError(f"{label}: Clip {name} must be a scalar")
                if name == "min":
                    low = float(value.reshape(()))
                else:
                    high = float(value.reshape(()))
        if low != 0.0 or high not in (6.0, None, math.inf):
            raise UnsupportedModelError(f"unsupported Clip bounds min={low}, max={high} ({label}): only ReLU "
                                        f"(min 0) and ReLU6 (min 0, max 6) are supported")
        self._activation(node, label, "relu6" if high == 6.0 else "relu")

    def _Add(self, node, label):
        constant = [name for name in node.input if name in self.constants]
        if not constant:
            a, b = (self._tensor(name, label) for name in node.input)
            if self.shapes[a] != self.shapes[b]:
                raise UnsupportedModelError(f"{label}: Add of shapes {self.shapes[a]} and {self.shapes[b]} "
                                            f"(broadcasting is unsupported)")
            self._emit(Add(name=node.name or node.output[0], inputs=(a, b), output=node.output[0]),
                       node.output[0], self.shapes[a])
            return
        if len(constant) == 2:
            raise UnsupportedModelError(f"{label}: Add of two constants is unsupported")
        other = node.input[1] if node.input[0] in constant else node.input[0]
        source = self._tensor(other, label)
        index, producer = self._fusable(source, label, "Add")
        if not isinstance(producer, (Conv, FullyConnected)) or producer.activation is not None:
            raise UnsupportedModelError(f"{label}: adding a constant is supported only as the bias of a Conv or "
                                        f"Gemm/MatMul")
        value = self.constants[constant[0]].astype(np.float64)
        channels = producer.bias.shape[0]
        axis = -1 if isinstance(producer, FullyConnected) else -3     # the channel axis of the output (NCHW / NF)
        shape = (1,) * max(0, -axis - value.ndim) + value.shape
        per_channel = all(size == 1 for position, size in enumerate(shape) if position != len(shape) + axis)
        if value.size != 1 and not (per_channel and shape[axis] == channels):
            raise UnsupportedModelError(f"{label}: constant of shape {value.shape} is not a per-channel bias")
        squeezed = np.broadcast_to(value.reshape(-1), (channels,))
        bias = (producer.bias.astype(np.float64) + squeezed).astype(np.float32)
        self._replace(index, dataclasses.replace(producer, output=node.output[0], bias=bias), node.output[0])

    def _pool(self, node, label, kernel=None, stride=(1, 1), padding=(0, 0, 0, 0)):
        source = self._tensor(node.input[0], label)
        shape = self.shapes[source]
        if len(shape) != 3:
            raise UnsupportedModelError(f"{label}: {node.op_type} input must be NCHW, not of shape {shape}")
        channels, h, w = shape
        if kernel is None:
            out = (channels, 1, 1)
        else:
            out = (channels, self._out_size(h, kernel[0], stride[0], padding[0], padding[1], label),
                   self._out_size(w, kernel[1], stride[1], padding[2], padding[3], label))
        self._emit(Pool(name=node.name or node.output[0], input=source, output=node.output[0], kernel=kernel,
                        stride=stride, padding=padding), node.output[0], out)

    def _GlobalAveragePool(self, node, label):
        self._pool(node, label)

    def _AveragePool(self, node, label):
        attributes = _attributes(node)
        kernel = tuple(attributes["kernel_shape"])
        stride = tuple(attributes.get("strides", (1, 1)))
        if len(kernel) != 2 or len(stride) != 2:
            raise UnsupportedModelError(f"{label}: only 2-D AveragePool is supported")
        shape = self.shapes[self._tensor(node.input[0], label)]
        padding = self._pads(attributes, shape[1:], kernel, stride, label)
        if any(p >= k for p, k in zip(padding, (kernel[0], kernel[0], kernel[1], kernel[1]))):
            raise UnsupportedModelError(f"{label}: AveragePool padding {padding} must be smaller than the kernel")
        self._pool(node, label, kernel, stride, padding)

    def _MaxPool(self, node, label):
        self._only_output(node, label)
        attributes = _attributes(node)
        kernel = tuple(attributes["kernel_shape"])
        stride = tuple(attributes.get("strides", (1, 1)))
        source = self._tensor(node.input[0], label)
        shape = self.shapes[source]
        if len(kernel) != 2 or len(stride) != 2 or len(shape) != 3:
            raise UnsupportedModelError(f"{label}: only 2-D MaxPool of an NCHW tensor is supported")
        padding = self._pads(attributes, shape[1:], kernel, stride, label)
        if attributes.get("ceil_mode", 0):
            padding = self._ceil_padding(shape[1:], kernel, stride, padding)
        if any(p >= k for p, k in zip(padding, (kernel[0], kernel[0], kernel[1], kernel[1]))):
            raise UnsupportedModelError(f"{label}: MaxPool padding {padding} must be smaller than the kernel")
        out = (shape[0], self._out_size(shape[1], kernel[0], stride[0], padding[0], padding[1], label),
               self._out_size(shape[2], kernel[1], stride[1], padding[2], padding[3], label))
        self._emit(MaxPool(name=node.name or node.output[0], input=source, output=node.output[0], kernel=kernel,
                           stride=stride, padding=padding), node.output[0], out)

    def _table(self, node, label, alpha=None):
        source = self._tensor(node.input[0], label)
        self._emit(Activation(name=node.name or node.output[0], input=source, output=node.output[0],
                              function=TABLE_OPS[node.op_type], alpha=alpha), node.output[0], self.shapes[source])

    def _HardSwish(self, node, label):
        self._table(node, label)

    def _Sigmoid(self, node, label):
        self._table(node, label)

    def _Tanh(self, node, label):
        self._table(node, label)

    def _LeakyRelu(self, node, label):
        alpha = float(_attributes(node).get("alpha", 0.01))
        if not alpha >= 0:
            raise UnsupportedModelError(f"{label}: LeakyRelu alpha {alpha} must be non-negative")
        self._table(node, label, alpha)

    def _HardSigmoid(self, node, label):
        attributes = _attributes(node)
        alpha, beta = float(attributes.get("alpha", 0.2)), float(attributes.get("beta", 0.5))
        source = self._tensor(node.input[0], label)
        index, producer = self._fusable(source, label, "HardSigmoid")
        if not isinstance(producer, (Conv, FullyConnected)) or producer.activation is not None or not alpha > 0:
            raise UnsupportedModelError(f"{label}: HardSigmoid is supported with alpha > 0 directly after a Conv or "
                                        f"Gemm/MatMul, into which it is folded (a squeeze-and-excitation gate)")
        weights = (producer.weights.astype(np.float64) * alpha).astype(np.float32)
        bias = (producer.bias.astype(np.float64) * alpha + beta).astype(np.float32)
        self._replace(index, dataclasses.replace(producer, output=node.output[0], weights=weights, bias=bias,
                                                 activation="hard_sigmoid"), node.output[0])

    def _Concat(self, node, label):
        sources = [self._tensor(name, label) for name in node.input]
        shapes = [self.shapes[name] for name in sources]
        if len(sources) < 2 or any(len(shape) != 3 or shape[1:] != shapes[0][1:] for shape in shapes):
            raise UnsupportedModelError(f"{label}: Concat joins two or more NCHW tensors of one H and W along "
                                        f"channels, not {shapes}")
        self._emit(Concat(name=node.name or node.output[0], inputs=tuple(sources), output=node.output[0]),
                   node.output[0], (sum(shape[0] for shape in shapes), *shapes[0][1:]))

    def _Mul(self, node, label):
        if any(name in self.constants for name in node.input):
            raise UnsupportedModelError(f"{label}: Mul by a constant is unsupported (fold it into the preceding "
                                        f"layer's weights)")
        a, b = (self._tensor(name, label) for name in node.input)
        if self.shapes[a] != self.shapes[b] and self.shapes[a] == (self.shapes[b][0], 1, 1):
            a, b = b, a                                      # the per-channel gate second
        shape, gate = self.shapes[a], self.shapes[b]
        if gate != shape and not (len(shape) == 3 and gate == (shape[0], 1, 1)):
            raise UnsupportedModelError(f"{label}: Mul of shapes {shape} and {gate}: only one shape or a "
                                        f"per-channel (C, 1, 1) gate is supported")
        self._emit(Mul(name=node.name or node.output[0], inputs=(a, b), output=node.output[0]), node.output[0],
                   shape)

    def _Flatten(self, node, label):
        source = self._tensor(node.input[0], label)
        shape = self.shapes[source]
        if len(shape) == 1:
            self.alias[node.output[0]] = source
            return
        self._emit(Flatten(name=node.name or node.output[0], input=source, output=node.output[0]), node.output[0],
                   (int(np.prod(shape)),))

    def _fully_connected(self, node, label, weights, bias):
        source = self._tensor(node.input[0], label)
        shape = self.shapes[source]
        if len(shape) != 1:
            raise UnsupportedModelError(f"{label}: {node.op_type} input {source!r} must be flat, not of shape "
                                        f"{shape} (add a Flatten)")
        if weights.shape[1] != shape[0]:
            raise UnsupportedModelError(f"{label}: weights {weights.shape} do not fit {shape[0]} inputs")
        fc = FullyConnected(name=node.name or node.output[0], input=source, output=node.output[0],
                            weights=weights.astype(np.float32), bias=bias.astype(np.float32))
        self._emit(fc, node.output[0], (weights.shape[0],))

    def _Gemm(self, node, label):
        attributes = _attributes(node)
        weights = self._constant(node.input[1], label, "B").astype(np.float64)
        if weights.ndim != 2:
            raise UnsupportedModelError(f"{label}: Gemm B must be 2-D, not of shape {weights.shape}")
        if not attributes.get("transB", 0):
            weights = weights.T
        weights = weights * attributes.get("alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            bias = self._constant(node.input[2], label, "C").astype(np.float64) * attributes.get("beta", 1.0)
            if bias.size not in (1, weights.shape[0]):
                raise UnsupportedModelError(f"{label}: Gemm C of shape {bias.shape} is not a per-output bias")
            bias = np.broadcast_to(bias.reshape(-1), (weights.shape[0],))
        else:
            bias = np.zeros(weights.shape[0])
        self._fully_connected(node, label, weights, bias)
