"""Golden model of a whole quantized network: its layers as frozen dataclasses, integer inference, save and load.

A :class:`Network` is what the quantizer produces and what the RTL and its testbenches consume: int8 weights, int32
biases, one ``(multiplier, shift)`` per layer plus a per-output-channel WESS shift ``k_c``, and one scale and zero
point per activation tensor. :func:`run` executes it on a batch with the golden ops (``golden.conv``, ``golden.pool``,
``golden.add``, ``golden.activation``, ``golden.concat``, ``golden.mul``) and :func:`golden.requant.requantize` — integers only, exactly docs/arithmetic.md.

Tensors are NHWC int8 (``(N, H, W, C)``, or ``(N, F)`` after a flatten); each tensor is named after the layer that
writes it, the image input is :data:`INPUT`. On disk a network is ``manifest.json`` (structure, scales, integer
parameters, hashes) beside ``network.npz`` (the arrays); docs/quantizer.md describes both.

Only the ``channel`` reference method (TFLite per-channel, not storable by the NPU) has per-channel ``multiplier``
and ``shift`` arrays; every NPU layer has scalars.
"""

import dataclasses
import hashlib
import io
import json
import os
from typing import ClassVar

import numpy as np

from .activation import FUNCTIONS, lookup
from .add import AddParams, add
from .concat import concatenate
from .config import NPUConfig
from .conv import conv2d, depthwise_conv2d, fully_connected
from .mul import MulParams, mul
from .pool import average_pool2d, global_average_pool, max_pool2d
from .requant import requantize, round_half_away_from_zero

__all__ = [
    "INPUT", "MANIFEST", "ARRAYS", "FORMAT_VERSION",
    "Tensor", "Conv2D", "DepthwiseConv2D", "FullyConnected", "Add", "AveragePool", "MaxPool", "Activation", "Concat",
    "Mul", "Flatten", "Network", "Trace", "layer_output",
    "run", "quantize_input", "dequantize", "save", "load", "array_sha256",
]

INPUT = "input"
MANIFEST = "manifest.json"
ARRAYS = "network.npz"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tensor:
    """An int8 activation tensor: ``shape`` without the batch axis (``(H, W, C)`` or ``(F,)``), real = s (q - zp)."""
    shape: tuple
    scale: float
    zero_point: int

    def __post_init__(self):
        if not (isinstance(self.scale, float) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"tensor scale must be a positive finite float, not {self.scale!r}")
        _check_int(self.zero_point, "zero_point", -128, 127)
        if not all(isinstance(d, int) and d > 0 for d in self.shape) or len(self.shape) not in (1, 3):
            raise ValueError(f"tensor shape must be (H, W, C) or (F,) of positive ints, not {self.shape!r}")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Unary:
    """A layer reading one tensor ``input`` and writing ``output``; ``source`` names the ONNX node it came from."""
    name: str
    input: str
    output: str
    source: str = ""

    @property
    def inputs(self):
        return (self.input,)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Weighted(_Unary):
    """Fields shared by the layers with weights (see :class:`Conv2D`)."""
    weights: np.ndarray
    bias: np.ndarray
    multiplier: object
    shift: object
    channel_shift: np.ndarray
    weight_scale: np.ndarray
    qmin: int = -128
    qmax: int = 127
    activation: str = None
    codebook: np.ndarray = None

    channel_axis: ClassVar[int] = 0

    @property
    def channels(self):
        return self.weights.shape[self.channel_axis]

    def __post_init__(self):
        channels = self.weights.shape[self.channel_axis]
        for name, low, high in (("weights", -127, 127), ("bias", -(1 << 31), (1 << 31) - 1),
                                ("channel_shift", 0, 31)):
            value = np.asarray(getattr(self, name))
            if not np.issubdtype(value.dtype, np.integer):
                raise TypeError(f"{self.name}: {name} must be an integer array, not {value.dtype}")
            if value.size and (value.min() < low or value.max() > high):
                raise ValueError(f"{self.name}: {name} must lie in [{low}, {high}]")
        for name in ("bias", "channel_shift", "weight_scale"):
            if np.shape(getattr(self, name)) != (channels,):
                raise ValueError(f"{self.name}: {name} must have shape ({channels},), not "
                                 f"{np.shape(getattr(self, name))}")
        for name, low, high in (("multiplier", 0, (1 << 31) - 1), ("shift", -31, 31)):
            value = np.asarray(getattr(self, name))
            if value.shape not in ((), (channels,)) or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"{self.name}: {name} must be an int or ({channels},) int array")
            if value.min() < low or value.max() > high:
                raise ValueError(f"{self.name}: {name} must lie in [{low}, {high}]")
        _check_int(self.qmin, "qmin", -128, 127)
        _check_int(self.qmax, "qmax", self.qmin, 127)
        if self.codebook is not None:
            codebook = np.asarray(self.codebook)
            if codebook.shape != (4,) or not np.issubdtype(codebook.dtype, np.integer) \
                    or codebook.min() < -127 or codebook.max() > 127 or np.any(np.diff(codebook) <= 0):
                raise ValueError(f"{self.name}: codebook must be 4 ascending integers in [-127, 127], not "
                                 f"{self.codebook!r}")
            if not np.all(np.isin(self.weights, codebook)):
                raise ValueError(f"{self.name}: a weight is not in the codebook {codebook.tolist()}")

    @property
    def per_channel(self):
        """True for the ``channel`` reference method (per-channel multiplier and shift)."""
        return np.ndim(self.multiplier) == 1


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Conv2D(_Weighted):
    """Regular (or grouped) 2-D convolution, weights OHWI ``(Cout, KH, KW, Cin/groups)``.

    Members (all layers with weights)
    ---------------------------------
    name, input, output : str
        The layer's name; the tensors it reads and writes (``output`` is ``name``).
    weights : numpy.ndarray
        int8 values (any integer dtype) in ``[-127, 127]``.
    bias : numpy.ndarray
        int32 ``(Cout,)``, in the accumulator scale ``s_in * weight_scale``.
    multiplier, shift : int
        The layer's fixed-point multiplier (:func:`golden.requant.quantize_multiplier`); arrays only for the
        ``channel`` reference method.
    channel_shift : numpy.ndarray
        The WESS shift ``k_c`` per output channel (zeros for layer-wise and per-channel methods).
    weight_scale : numpy.ndarray
        float64 ``(Cout,)``: each channel's effective weight scale ``s_w * 2**-k_c`` (for reports and dequantizing).
    stride, padding : tuple
        ``(sh, sw)`` and ``(top, bottom, left, right)``.
    groups : int
        1 for a regular convolution.
    qmin, qmax : int
        Clamp bounds of the fused activation; ``activation`` names it (``None``, ``"relu"``, ``"relu6"``, or
        ``"hard_sigmoid"``: a HardSigmoid folded into the weights, clamped like ``"relu"`` with the output range
        [0, 1]).
    source : str
        The ONNX node it came from.
    codebook : numpy.ndarray or None
        Two-bit weights (tools/quantizer/weights.py ``uq``, ``sptq``, ``msptq``): the 4 ascending integers every weight is one
        of, the weight of code 0..3 in the two-bit memory image (golden/layouts.py); ``None`` for int8 weights.
    """
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    groups: int = 1

    kind: ClassVar[str] = "conv"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class DepthwiseConv2D(_Weighted):
    """Depthwise 2-D convolution (multiplier 1), weights ``(KH, KW, C)``; other members as :class:`Conv2D`."""
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)

    kind: ClassVar[str] = "depthwise"
    channel_axis: ClassVar[int] = -1


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class FullyConnected(_Weighted):
    """Fully connected layer on a flat input, weights ``(Cout, Cin)``; other members as :class:`Conv2D`."""
    kind: ClassVar[str] = "fully_connected"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class _Binary:
    """A layer of two int8 inputs with fixed-point ``params`` and a fused activation's clamp ``[qmin, qmax]``."""
    name: str
    inputs: tuple
    output: str
    qmin: int = -128
    qmax: int = 127
    activation: str = None
    source: str = ""

    def __post_init__(self):
        if len(self.inputs) != 2:
            raise ValueError(f"{self.name}: {self.kind} has two inputs, not {self.inputs!r}")
        _check_int(self.qmin, "qmin", -128, 127)
        _check_int(self.qmax, "qmax", self.qmin, 127)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Add(_Binary):
    """Residual add of two int8 tensors (``golden.add``); ``params`` from :func:`golden.add.add_params`."""
    params: AddParams

    kind: ClassVar[str] = "add"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class AveragePool(_Unary):
    """Average pooling (``golden.pool``); ``kernel=None`` pools the whole feature map. Output quantization = input's."""
    kernel: tuple = None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)

    kind: ClassVar[str] = "average_pool"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class MaxPool(_Unary):
    """Max pooling (``golden.pool.max_pool2d``); padding never wins. Output quantization = input's."""
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)

    kind: ClassVar[str] = "max_pool"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Activation(_Unary):
    """An int8 elementwise activation as a 256-entry table (``golden.activation``): ``output = table[input + 128]``.

    ``function`` (one of :data:`golden.activation.FUNCTIONS`) and ``alpha`` (LeakyReLU's slope, else ``None``) say
    what the table holds, which LiteRT op the export writes and how it is checked; ``table`` is the int8 values.
    """
    function: str
    table: np.ndarray
    alpha: float = None

    kind: ClassVar[str] = "activation"

    def __post_init__(self):
        if self.function not in FUNCTIONS:
            raise ValueError(f"{self.name}: function must be one of {', '.join(FUNCTIONS)}, not {self.function!r}")
        table = np.asarray(self.table)
        if table.shape != (256,) or not np.issubdtype(table.dtype, np.integer) or table.min() < -128 \
                or table.max() > 127:
            raise ValueError(f"{self.name}: table must be 256 integers in [-128, 127]")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Concat:
    """Channel concatenation (``golden.concat``); every input is quantized as the output (LiteRT's int8 rule)."""
    name: str
    inputs: tuple
    output: str
    source: str = ""

    kind: ClassVar[str] = "concat"

    def __post_init__(self):
        if len(self.inputs) < 2:
            raise ValueError(f"{self.name}: a concatenation has two or more inputs, not {self.inputs!r}")


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Mul(_Binary):
    """Elementwise Mul (``golden.mul``), the second input broadcast over H and W when it is ``(1, 1, C)`` (a
    squeeze-and-excitation gate); ``params`` from :func:`golden.mul.mul_params`."""
    params: MulParams

    kind: ClassVar[str] = "mul"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Flatten(_Unary):
    """``(N, H, W, C) -> (N, H*W*C)`` in NHWC order; the quantization is the input's."""
    kind: ClassVar[str] = "flatten"


_LAYERS = {cls.kind: cls for cls in (Conv2D, DepthwiseConv2D, FullyConnected, Add, AveragePool, MaxPool, Activation,
                                     Concat, Mul, Flatten)}


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Network:
    """A quantized network.

    Parameters
    ----------
    layers : tuple
        Layers in execution order; each reads tensors written before it.
    tensors : dict
        :class:`Tensor` of every tensor, keyed by name (:data:`INPUT` and each layer's output).
    output : str
        The tensor holding the logits.
    config : NPUConfig
        The hardware instance the network is built for (its ``shift_bits`` bound every ``k_c``).
    preprocessing : dict
        The input contract (docs/quantizer.md): how float images become the int8 :data:`INPUT` tensor.

    Raises
    ------
    ValueError
        If a layer reads an unknown tensor, a tensor is missing or its shape disagrees with a layer, or a shift
        exceeds ``config``.
    """
    layers: tuple
    tensors: dict
    output: str
    config: NPUConfig
    preprocessing: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if INPUT not in self.tensors:
            raise ValueError(f"the network needs an {INPUT!r} tensor")
        written = {INPUT}
        for layer in self.layers:
            for name in layer.inputs:
                if name not in written:
                    raise ValueError(f"layer {layer.name!r} reads {name!r} before it is written")
            if layer.output in written or layer.output not in self.tensors:
                raise ValueError(f"layer {layer.name!r} writes {layer.output!r}, which is already written or has "
                                 f"no tensor entry")
            written.add(layer.output)
            if isinstance(layer, _Weighted) and layer.channel_shift.max(initial=0) > self.config.max_channel_shift:
                raise ValueError(f"layer {layer.name!r}: a channel shift exceeds {self.config.max_channel_shift} "
                                 f"({self.config.shift_bits} shift bits)")
        if self.output not in written:
            raise ValueError(f"output {self.output!r} is not written by any layer")

    def layer(self, name):
        """The layer called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class Trace:
    """What :func:`run` keeps with ``keep=True``: every tensor, and each weighted layer's largest ``|acc|``."""
    tensors: dict
    accumulator_max: dict


def run(network, x, *, keep=False):
    """Integer inference of ``network`` on a batch.

    Args:
        network: a :class:`Network`.
        x: int8 input ``(N, H, W, C)`` (see :func:`quantize_input`).
        keep: also return a :class:`Trace` of every intermediate tensor.
    Returns:
        int8 output as an ``np.int8`` array, or ``(output, trace)`` with ``keep``.
    """
    x = np.asarray(x)
    expected = network.tensors[INPUT].shape
    if x.ndim != len(expected) + 1 or x.shape[1:] != tuple(expected):
        raise ValueError(f"input must be (N, {', '.join(map(str, expected))}), not {x.shape}")
    values = {INPUT: x}
    accumulator_max = {}
    last_read = {name: index for index, layer in enumerate(network.layers) for name in layer.inputs}
    for index, layer in enumerate(network.layers):
        values[layer.output] = layer_output(network, layer, values, accumulator_max if keep else None)
        if not keep:
            # Drop what no later layer reads, so that a batch of large feature maps does not pile up in memory.
            for name in layer.inputs:
                if last_read[name] == index and name != network.output:
                    values.pop(name, None)
    output = values[network.output]
    return (output, Trace(values, accumulator_max)) if keep else output


def layer_output(network, layer, values, accumulator_max=None):
    """The int8 output of one ``layer`` of ``network`` on ``values`` (tensors by name, batch first), as :func:`run`
    computes it; a runner executes the engine's host layers with it.

    ``accumulator_max``, a dict, receives a weighted layer's largest accumulator magnitude.
    """
    if isinstance(layer, _Weighted):
        zero_point = network.tensors[layer.input].zero_point
        acc = _accumulate(layer, values[layer.input], zero_point)
        if accumulator_max is not None:
            accumulator_max[layer.name] = int(np.abs(acc).max(initial=0))
        result = _blocked(requantize, (acc,), layer.multiplier, layer.shift, layer.channel_shift,
                          network.tensors[layer.output].zero_point, layer.qmin, layer.qmax)
    elif isinstance(layer, Add):
        result = _blocked(add, (values[layer.inputs[0]], values[layer.inputs[1]]), layer.params, layer.qmin,
                          layer.qmax)
    elif isinstance(layer, AveragePool):
        source = values[layer.input]
        if layer.kernel is None:
            result = global_average_pool(source)
        else:
            result = average_pool2d(source, layer.kernel, stride=layer.stride, padding=layer.padding)
    elif isinstance(layer, MaxPool):
        result = max_pool2d(values[layer.input], layer.kernel, stride=layer.stride, padding=layer.padding)
    elif isinstance(layer, Activation):
        result = lookup(values[layer.input], layer.table)
    elif isinstance(layer, Concat):
        result = concatenate([values[name] for name in layer.inputs])
    elif isinstance(layer, Mul):
        result = mul(values[layer.inputs[0]], values[layer.inputs[1]], layer.params, layer.qmin, layer.qmax)
    else:
        source = values[layer.input]
        result = source.reshape(source.shape[0], -1)
    return np.asarray(result).astype(np.int8, copy=False)


def _blocked(function, tensors, *args, block=1 << 16):
    """``function(*tensors, *args)`` as int8, computed on blocks of about ``block`` elements.

    For the elementwise stages (requantize, add): whole-batch int64 temporaries of tens of MB cost more in memory
    traffic and page faults than the arithmetic; blocks that stay in cache are several times faster. Per-channel
    arguments broadcast along the last (channel) axis, which every block keeps whole.
    """
    shape = tensors[0].shape
    flat = [t.reshape(-1, shape[-1]) for t in tensors]
    out = np.empty(flat[0].shape, dtype=np.int8)
    rows = max(1, block // shape[-1])
    for start in range(0, flat[0].shape[0], rows):
        out[start:start + rows] = function(*(t[start:start + rows] for t in flat), *args)
    return out.reshape(shape)


def _accumulate(layer, x, zero_point):
    if isinstance(layer, FullyConnected):
        return fully_connected(x, layer.weights, layer.bias, input_zero_point=zero_point)
    if isinstance(layer, DepthwiseConv2D):
        return depthwise_conv2d(x, layer.weights, layer.bias, stride=layer.stride, padding=layer.padding,
                                input_zero_point=zero_point)
    if layer.groups == 1:
        return conv2d(x, layer.weights, layer.bias, stride=layer.stride, padding=layer.padding,
                      input_zero_point=zero_point)
    # A grouped conv is `groups` independent convs on slices of the channels.
    per_in, per_out = x.shape[3] // layer.groups, layer.weights.shape[0] // layer.groups
    return np.concatenate([
        conv2d(x[..., g * per_in:(g + 1) * per_in], layer.weights[g * per_out:(g + 1) * per_out],
               layer.bias[g * per_out:(g + 1) * per_out], stride=layer.stride, padding=layer.padding,
               input_zero_point=zero_point)
        for g in range(layer.groups)], axis=3)


def quantize_input(network, images):
    """Float images in the model's layout (NCHW, already normalised) -> the int8 NHWC input tensor.

    ``q = clamp(round_half_away(x / s) + zp, -128, 127)`` with the input tensor's scale and zero point, computed in
    float64; the one float-to-int step of inference (docs/quantizer.md, "Preprocessing contract").
    """
    images = np.asarray(images, dtype=np.float64)
    tensor = network.tensors[INPUT]
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)
    if images.shape[1:] != tuple(tensor.shape):
        raise ValueError(f"images must be (N, C, H, W) matching the input {tensor.shape} (HWC), "
                         f"not {images.shape}")
    q = round_half_away_from_zero(images / tensor.scale) + tensor.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(network, values, tensor=None):
    """Real values ``s * (q - zp)`` (float64) of an int8 tensor of ``network`` (default: the output)."""
    info = network.tensors[network.output if tensor is None else tensor]
    return (np.asarray(values, dtype=np.float64) - info.zero_point) * info.scale


# -- save / load ---------------------------------------------------------------------------------------------------

_ARRAY_DTYPES = {"weights": np.int8, "bias": np.int32, "channel_shift": np.uint8, "multiplier": np.int32,
                 "shift": np.int8, "weight_scale": np.float64, "codebook": np.int8}


def array_sha256(array):
    """sha256 of an array's bytes as stored (C order, little-endian), hex."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return hashlib.sha256(array.tobytes()).hexdigest()


def save(network, directory, *, extra=None, files=()):
    """Write ``manifest.json`` and ``network.npz`` into the existing folder ``directory``.

    ``extra`` (a JSON-able dict) is stored under the manifest's ``"quantizer"`` key; ``files`` names other files
    already in ``directory`` (e.g. the RTL memory images) to list with their sha256 beside ``network.npz``. Returns
    the manifest dict.
    """
    arrays, layers = {}, []
    for layer in network.layers:
        entry = {"name": layer.name, "kind": layer.kind, "source": layer.source, "inputs": list(layer.inputs),
                 "output": layer.output}
        if isinstance(layer, _Weighted):
            per_channel = layer.per_channel
            entry.update(activation=layer.activation, qmin=layer.qmin, qmax=layer.qmax,
                         multiplier=None if per_channel else int(layer.multiplier),
                         shift=None if per_channel else int(layer.shift),
                         channel_shift=[int(k) for k in layer.channel_shift])
            if not isinstance(layer, FullyConnected):
                entry.update(stride=list(layer.stride), padding=list(layer.padding))
            if isinstance(layer, Conv2D):
                entry["groups"] = layer.groups
            names = ["weights", "bias", "channel_shift", "weight_scale"] + (["multiplier", "shift"] if per_channel
                                                                             else [])
            if layer.codebook is not None:
                entry["codebook"] = [int(v) for v in layer.codebook]
                names.append("codebook")
            entry["arrays"] = {}
            for name in names:
                array = np.asarray(getattr(layer, name)).astype(_ARRAY_DTYPES[name])
                key = f"{layer.name}.{name}"
                arrays[key] = array
                entry["arrays"][name] = {"key": key, "dtype": str(array.dtype), "shape": list(array.shape),
                                         "sha256": array_sha256(array)}
        elif isinstance(layer, _Binary):
            entry.update(activation=layer.activation, qmin=layer.qmin, qmax=layer.qmax,
                         params=dataclasses.asdict(layer.params))
        elif isinstance(layer, AveragePool):
            entry.update(kernel=None if layer.kernel is None else list(layer.kernel), stride=list(layer.stride),
                         padding=list(layer.padding))
        elif isinstance(layer, MaxPool):
            entry.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=list(layer.padding))
        elif isinstance(layer, Activation):
            entry.update(function=layer.function, alpha=layer.alpha, table=[int(v) for v in layer.table])
        layers.append(entry)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    with open(os.path.join(directory, ARRAYS), "wb") as f:
        f.write(blob)
    manifest = {
        "format_version": FORMAT_VERSION,
        "npu_config": json.loads(network.config.to_json()),
        "preprocessing": network.preprocessing,
        "input": INPUT,
        "output": network.output,
        "tensors": {name: {"shape": list(t.shape), "scale": t.scale, "zero_point": t.zero_point}
                    for name, t in network.tensors.items()},
        "layers": layers,
        "files": {ARRAYS: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
    }
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            content = f.read()
        manifest["files"][name] = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    if extra is not None:
        manifest["quantizer"] = extra
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def load(directory):
    """Read a network written by :func:`save`, checking the file and array hashes.

    Raises:
        ValueError: if a file is missing or malformed, or a hash does not match.
    """
    try:
        with open(os.path.join(directory, MANIFEST)) as f:
            manifest = json.load(f)
        with open(os.path.join(directory, ARRAYS), "rb") as f:
            blob = f.read()
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read a network from {directory!r}: {error}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"manifest format_version must be {FORMAT_VERSION}, not {manifest.get('format_version')!r}")
    if hashlib.sha256(blob).hexdigest() != manifest["files"][ARRAYS]["sha256"]:
        raise ValueError(f"{ARRAYS} does not match the sha256 in {MANIFEST}")
    with np.load(io.BytesIO(blob)) as npz:
        arrays = {key: npz[key] for key in npz.files}
    layers = []
    for entry in manifest["layers"]:
        cls = _LAYERS[entry["kind"]]
        common = {"name": entry["name"], "output": entry["output"], "source": entry["source"]}
        if issubclass(cls, _Weighted):
            values = {}
            for name, info in entry["arrays"].items():
                array = arrays[info["key"]]
                if array_sha256(array) != info["sha256"]:
                    raise ValueError(f"array {info['key']!r} does not match its sha256 in {MANIFEST}")
                values[name] = array.astype(np.float64 if name == "weight_scale" else np.int64)
            fields = dict(common, input=entry["inputs"][0], activation=entry["activation"], qmin=entry["qmin"],
                          qmax=entry["qmax"], weights=values["weights"], bias=values["bias"],
                          channel_shift=values["channel_shift"], weight_scale=values["weight_scale"],
                          multiplier=values.get("multiplier", entry["multiplier"]),
                          shift=values.get("shift", entry["shift"]), codebook=values.get("codebook"))
            if cls is not FullyConnected:
                fields.update(stride=tuple(entry["stride"]), padding=tuple(entry["padding"]))
            if cls is Conv2D:
                fields["groups"] = entry["groups"]
            layers.append(cls(**fields))
        elif issubclass(cls, _Binary):
            params = (AddParams if cls is Add else MulParams)(**entry["params"])
            layers.append(cls(**common, inputs=tuple(entry["inputs"]), params=params, qmin=entry["qmin"],
                              qmax=entry["qmax"], activation=entry["activation"]))
        elif cls is AveragePool:
            layers.append(AveragePool(**common, input=entry["inputs"][0],
                                      kernel=None if entry["kernel"] is None else tuple(entry["kernel"]),
                                      stride=tuple(entry["stride"]), padding=tuple(entry["padding"])))
        elif cls is MaxPool:
            layers.append(MaxPool(**common, input=entry["inputs"][0], kernel=tuple(entry["kernel"]),
                                  stride=tuple(entry["stride"]), padding=tuple(entry["padding"])))
        elif cls is Activation:
            layers.append(Activation(**common, input=entry["inputs"][0], function=entry["function"],
                                     alpha=entry["alpha"], table=np.asarray(entry["table"], dtype=np.int64)))
        elif cls is Concat:
            layers.append(Concat(**common, inputs=tuple(entry["inputs"])))
        else:
            layers.append(Flatten(**common, input=entry["inputs"][0]))
    tensors = {name: Tensor(shape=tuple(t["shape"]), scale=float(t["scale"]), zero_point=int(t["zero_point"]))
               for name, t in manifest["tensors"].items()}
    return Network(layers=tuple(layers), tensors=tensors, output=manifest["output"],
                   config=NPUConfig(**manifest["npu_config"]), preprocessing=manifest["preprocessing"])


def _check_int(value, name, low, high):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], not {value!r}")
