"""Memory images of the convolution engine and its layer descriptor (docs/memory.md is the prose of this module).

Pure NumPy. The engine (``hdl/engine.py``) has three on-chip memories and one descriptor per layer:

* **activation memory**: ``lanes`` banks of ``config.act_depth`` words; a word holds ``lanes`` int8 channels of one
  pixel. Channel group ``g`` (channels ``g*lanes .. g*lanes + lanes - 1``) of pixel ``(y, x)`` of a tensor stored at
  ``base`` with row pitch ``P`` lives in bank ``(x + g) mod lanes`` at address
  ``base + y*P + g*ceil(W/lanes) + x // lanes``. The skew ``(x + g) mod lanes`` lets the depthwise mapping read
  ``lanes`` different words per cycle without bank conflicts.
* **weight memory**: ``config.weight_depth`` words of ``lanes x lanes`` int8 weights.
* **bias memory**: ``config.bias_depth`` words of ``lanes`` int32 biases plus their ``lanes`` WESS shifts k_c.
* **two-bit weight codes** (layers with a codebook, ``golden.network.Conv2D.codebook``): the weight words of those
  layers as ``lanes x lanes`` two-bit codes, plus a 4-entry int8 codebook per layer; :func:`decode_code_words` is the
  decoder that turns a code word into the int8 weight word.

Images are NumPy arrays (:class:`MemoryImages`); :func:`write_hex` / :func:`read_hex` convert words to and from
``$readmemh`` files, :func:`write_images` writes the ROM images of a whole :class:`golden.network.Network`.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from .config import NPUConfig
from .conv import conv_output_size

__all__ = [
    "KINDS", "LayerDescriptor", "descriptor_fields", "encode_descriptor", "decode_descriptor", "check_descriptor",
    "address_bits", "groups", "row_pitch", "activation_words", "activation_location", "weight_words",
    "MemoryImages", "store_activation", "load_activation", "store_weights", "store_bias",
    "layer_descriptor", "pack_words", "unpack_words", "write_hex", "read_hex", "write_images", "read_images",
    "CODE_BITS", "codebook_fields", "encode_codebook_entry", "decode_codebook_entry", "weight_codes",
    "decode_code_words", "read_weight_codes",
]

#: Layer kinds and their descriptor codes.
KINDS = {"conv": 0, "depthwise": 1, "fully_connected": 2, "average_pool": 3}

#: Bits of one two-bit weight code; a code word packs ``lanes**2`` codes, element ``(r, c)`` at bits
#: ``[2*(r*lanes + c) + 1 : 2*(r*lanes + c)]``.
CODE_BITS = 2

#: Largest padding before the input (top, left) a descriptor can hold.
MAX_PAD = 3

#: Largest window a global average pool may sum: the engine weighs each input by 64 (golden.engine.GAP_WEIGHT), and
#: 64 * 128 * count must stay below 2**31.
MAX_POOL_COUNT = (1 << 18) - 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerDescriptor:
    """Everything the engine needs to run one layer on its own.

    Members
    -------
    kind : str
        One of :data:`KINDS`. A fully connected layer is a convolution whose kernel covers its whole input (a 1x1
        input, or the ``(H, W)`` map a flatten came from); a global average pool's kernel is its whole input.
    in_height, in_width, in_channels, out_height, out_width, out_channels : int
        Tensor shapes (HWC, batch 1).
    kernel_height, kernel_width, stride_height, stride_width : int
        Window; strides are 1 or 2.
    pad_top, pad_left : int
        Padding before the input (0..3); the padding after it follows from the output size.
    in_base, in_row_pitch, out_base, out_row_pitch : int
        Activation memory placement of the input and output tensors (bank addresses, see module docstring).
    weight_base, bias_base : int
        First weight and bias word of the layer (unused by average pooling).
    input_zero_point, multiplier, shift, output_zero_point, qmin, qmax : int
        Requantization (docs/arithmetic.md, section 5); for average pooling from
        :func:`golden.engine.average_pool_params`.
    """

    kind: str
    in_height: int
    in_width: int
    in_channels: int
    out_height: int
    out_width: int
    out_channels: int
    kernel_height: int
    kernel_width: int
    stride_height: int = 1
    stride_width: int = 1
    pad_top: int = 0
    pad_left: int = 0
    in_base: int = 0
    in_row_pitch: int = 0
    out_base: int = 0
    out_row_pitch: int = 0
    weight_base: int = 0
    bias_base: int = 0
    input_zero_point: int = 0
    multiplier: int = 0
    shift: int = 0
    output_zero_point: int = 0
    qmin: int = -128
    qmax: int = 127

    @property
    def in_shape(self):
        return self.in_height, self.in_width, self.in_channels

    @property
    def out_shape(self):
        return self.out_height, self.out_width, self.out_channels

    @property
    def padding(self):
        """``(top, bottom, left, right)`` as the golden ops take it."""
        bottom = (self.out_height - 1) * self.stride_height + self.kernel_height - self.in_height - self.pad_top
        right = (self.out_width - 1) * self.stride_width + self.kernel_width - self.in_width - self.pad_left
        return self.pad_top, bottom, self.pad_left, right

    @property
    def macs(self):
        """Multiply-accumulates of the layer as usually counted (padded taps included; a pool counts one per input)."""
        if self.kind == "average_pool":
            return self.in_height * self.in_width * self.in_channels
        window = self.kernel_height * self.kernel_width
        per_output = window if self.kind == "depthwise" else window * self.in_channels
        return self.out_height * self.out_width * self.out_channels * per_output


def address_bits(depth):
    """Width of an address into a memory of ``depth`` words."""
    return max(1, (depth - 1).bit_length())


def descriptor_fields(config):
    """The descriptor's bit fields ``(name, width, signed)``, least significant first.

    ``hdl/engine.py`` builds its descriptor port from this list, so the RTL and :func:`encode_descriptor` share one
    definition.
    """
    dim, channels = config.dim_bits, config.channel_bits
    act = address_bits(config.act_depth)
    return (
        ("kind", 2, False),
        ("in_height", dim, False), ("in_width", dim, False), ("in_channels", channels, False),
        ("out_height", dim, False), ("out_width", dim, False), ("out_channels", channels, False),
        ("kernel_height", dim, False), ("kernel_width", dim, False),
        ("stride_height", 2, False), ("stride_width", 2, False), ("pad_top", 2, False), ("pad_left", 2, False),
        ("in_base", act, False), ("in_row_pitch", act, False), ("out_base", act, False), ("out_row_pitch", act, False),
        ("weight_base", address_bits(config.weight_depth), False), ("bias_base", address_bits(config.bias_depth), False),
        ("input_zero_point", 8, True), ("multiplier", config.multiplier_bits, False),
        ("shift", config.layer_shift_bits, True), ("output_zero_point", 8, True), ("qmin", 8, True), ("qmax", 8, True),
    )


def encode_descriptor(descriptor, config):
    """The descriptor as one integer (fields of :func:`descriptor_fields`, two's complement), after checking it."""
    check_descriptor(descriptor, config)
    fields = descriptor_fields(config)
    return _pack_fields(fields, {name: KINDS[descriptor.kind] if name == "kind" else getattr(descriptor, name)
                                 for name, _, _ in fields})


def decode_descriptor(value, config):
    """Inverse of :func:`encode_descriptor`."""
    fields = _unpack_fields(descriptor_fields(config), value)
    fields["kind"] = {code: kind for kind, code in KINDS.items()}[fields["kind"]]
    return LayerDescriptor(**fields)


def _pack_fields(fields, values):
    # Fields (name, width, signed), least significant first, two's complement.
    value, offset = 0, 0
    for name, width, _ in fields:
        value |= (int(values[name]) & ((1 << width) - 1)) << offset
        offset += width
    return value


def _unpack_fields(fields, value):
    out, offset = {}, 0
    for name, width, signed in fields:
        field = (value >> offset) & ((1 << width) - 1)
        if signed and field >> (width - 1):
            field -= 1 << width
        out[name] = field
        offset += width
    return out


def codebook_fields(config):
    """The fields of an engine layer's entry in ``codebooks.hex``, ``(name, width, signed)``, least significant first.

    ``code0`` .. ``code3``: the int8 weight that code 0..3 stands for (so the low 32 bits are the codebook, code ``i``
    at bits ``[8i + 7 : 8i]``); ``two_bit``: 1 when the layer's weights are codes in ``weight_codes.hex``;
    ``code_base``: its first code word (as wide as ``weight_base``). An int8 layer or a pool has the entry 0.
    """
    return tuple((f"code{i}", 8, True) for i in range(4)) + (
        ("two_bit", 1, False), ("code_base", address_bits(config.weight_depth), False))


def encode_codebook_entry(codebook, code_base, config):
    """The ``codebooks.hex`` word of a layer: ``codebook`` (4 ascending int8 values; ``None``: an int8 layer, 0).

    Raises:
        ValueError: a codebook that is not 4 ascending int8 values, or a ``code_base`` out of range.
    """
    if codebook is None:
        return 0
    codebook = np.asarray(codebook)
    if codebook.shape != (4,) or not np.issubdtype(codebook.dtype, np.integer) or codebook.min() < -128 \
            or codebook.max() > 127 or np.any(np.diff(codebook) <= 0):
        raise ValueError(f"codebook must be 4 ascending int8 values, not {codebook.tolist()!r}")
    fields = codebook_fields(config)
    if not 0 <= code_base < 1 << fields[-1][1]:
        raise ValueError(f"code_base must be an integer in [0, {(1 << fields[-1][1]) - 1}], not {code_base!r}")
    return _pack_fields(fields, dict({f"code{i}": v for i, v in enumerate(codebook)}, two_bit=1,
                                     code_base=code_base))


def decode_codebook_entry(value, config):
    """Inverse of :func:`encode_codebook_entry`: ``(codebook, code_base)``, ``(None, 0)`` for an int8 layer."""
    fields = _unpack_fields(codebook_fields(config), value)
    if not fields["two_bit"]:
        return None, 0
    return np.array([fields[f"code{i}"] for i in range(4)], dtype=np.int64), fields["code_base"]


def weight_codes(weights, codebook):
    """Two-bit codes (int64, 0..3) of integer weights: the position of each weight in the ascending ``codebook``.

    Raises:
        ValueError: a weight that is not in the codebook.
    """
    weights, codebook = np.asarray(weights), np.asarray(codebook)
    codes = np.minimum(np.searchsorted(codebook, weights), len(codebook) - 1)
    if not np.array_equal(codebook[codes], weights):
        raise ValueError(f"a weight is not in the codebook {codebook.tolist()}")
    return codes.astype(np.int64)


def decode_code_words(words, codebook, config):
    """The engine's two-bit decoder: packed code words -> int8 weight words ``(len(words), lanes, lanes)``.

    Element ``(r, c)`` of word ``n`` is ``codebook[(words[n] >> 2*(r*lanes + c)) & 3]`` (:data:`CODE_BITS`): the
    lane order of the int8 weight words, two bits per lane instead of eight.
    """
    codes = unpack_words(words, CODE_BITS, config.macs, signed=False)
    return np.asarray(codebook, dtype=np.int64)[codes].astype(np.int8).reshape(len(words), config.lanes, config.lanes)


def check_descriptor(descriptor, config):
    """Refuse a descriptor the engine cannot run as the golden model would.

    Raises:
        ValueError: naming the first field out of range or inconsistent (shapes, window, padding, memory regions).
    """
    if not isinstance(descriptor, LayerDescriptor):
        raise TypeError(f"descriptor must be a LayerDescriptor, not {descriptor!r}")
    if descriptor.kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {descriptor.kind!r}")
    for name, width, signed in descriptor_fields(config)[1:]:
        value = getattr(descriptor, name)
        low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if name in ("in_height", "in_width", "in_channels", "out_height", "out_width", "out_channels",
                    "kernel_height", "kernel_width"):
            low = 1
        if name in ("stride_height", "stride_width"):
            low, high = 1, 2
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], not {value!r}")
    d = descriptor
    if d.multiplier and not 1 << 30 <= d.multiplier:
        raise ValueError(f"multiplier must be 0 or in [2**30, 2**31), not {d.multiplier!r}")
    if d.qmin > d.qmax:
        raise ValueError(f"qmin {d.qmin} exceeds qmax {d.qmax}")
    for axis, size, kernel, stride, before, out in (
            ("height", d.in_height, d.kernel_height, d.stride_height, d.pad_top, d.out_height),
            ("width", d.in_width, d.kernel_width, d.stride_width, d.pad_left, d.out_width)):
        after = (out - 1) * stride + kernel - size - before
        if not 0 <= after < kernel or before >= kernel or conv_output_size(size, kernel, stride, before, after) != out:
            raise ValueError(f"out_{axis} {out} does not follow from in_{axis} {size}, kernel {kernel}, "
                             f"stride {stride} and padding {before}")
    if d.kind in ("depthwise", "average_pool") and d.in_channels != d.out_channels:
        raise ValueError(f"a {d.kind} layer keeps its channels: in_channels {d.in_channels} != "
                         f"out_channels {d.out_channels}")
    if d.kind in ("fully_connected", "average_pool"):
        if (d.kernel_height, d.kernel_width) != (d.in_height, d.in_width) or d.stride_height != 1 \
                or d.stride_width != 1:
            raise ValueError(f"a {d.kind} layer's kernel must be its whole input with stride 1")
    if d.kind == "average_pool":
        if d.in_height * d.in_width > MAX_POOL_COUNT:
            raise ValueError(f"average pool window {d.in_height}x{d.in_width} exceeds {MAX_POOL_COUNT} elements")
        if d.input_zero_point or d.output_zero_point:
            raise ValueError("an average pool runs with zero points 0 (input and output share their quantization)")
    in_words = d.in_height * d.in_row_pitch
    out_words = d.out_height * d.out_row_pitch
    for side, width, channels, pitch, base, words in (
            ("in", d.in_width, d.in_channels, d.in_row_pitch, d.in_base, in_words),
            ("out", d.out_width, d.out_channels, d.out_row_pitch, d.out_base, out_words)):
        if pitch < row_pitch(width, channels, config):
            raise ValueError(f"{side}_row_pitch {pitch} is below {row_pitch(width, channels, config)} words, the "
                             f"size of one row of {width} x {channels}")
        if base + words > config.act_depth:
            raise ValueError(f"the {side}put tensor ({words} words from {base}) exceeds act_depth "
                             f"{config.act_depth}")
    if d.in_base < d.out_base + out_words and d.out_base < d.in_base + in_words:
        raise ValueError("the input and output tensors overlap in the activation memory")
    if d.kind != "average_pool":
        if d.weight_base + weight_words(d, config) > config.weight_depth:
            raise ValueError(f"the weights ({weight_words(d, config)} words from {d.weight_base}) exceed "
                             f"weight_depth {config.weight_depth}")
        if d.bias_base + groups(d.out_channels, config) > config.bias_depth:
            raise ValueError(f"the biases ({groups(d.out_channels, config)} words from {d.bias_base}) exceed "
                             f"bias_depth {config.bias_depth}")


def groups(channels, config):
    """Channel groups (activation words per pixel): ``ceil(channels / lanes)``."""
    return -(-channels // config.lanes)


def row_pitch(width, channels, config):
    """Words per bank that one image row occupies: ``groups * ceil(width / lanes)``."""
    return groups(channels, config) * -(-width // config.lanes)


def activation_words(shape, config):
    """Words per bank a tensor ``(H, W, C)`` occupies with the minimal row pitch."""
    height, width, channels = shape
    return height * row_pitch(width, channels, config)


def activation_location(y, x, group, *, base, pitch, width, config):
    """``(bank, address)`` of the word holding channel group ``group`` of pixel ``(y, x)`` (broadcasting arrays)."""
    y, x, group = (np.asarray(v, dtype=np.int64) for v in (y, x, group))
    bank = (x + group) % config.lanes
    address = base + y * pitch + group * -(-width // config.lanes) + x // config.lanes
    return bank, address


def weight_words(descriptor, config):
    """Weight memory words of a layer: ``Gout*KH*KW*Gin`` (conv, fully connected) or ``ceil(C/lanes**2)*KH*KW``."""
    window = descriptor.kernel_height * descriptor.kernel_width
    if descriptor.kind == "average_pool":
        return 0
    if descriptor.kind == "depthwise":
        return -(-descriptor.out_channels // config.macs) * window
    return groups(descriptor.out_channels, config) * window * groups(descriptor.in_channels, config)


@dataclasses.dataclass(eq=False)
class MemoryImages:
    """The contents of the engine's memories.

    Members
    -------
    activation : numpy.ndarray
        int8 ``(lanes, act_depth, lanes)``: bank, address, channel lane.
    weights : numpy.ndarray
        int8 ``(weight_depth, lanes, lanes)``: address, row, column (see :func:`store_weights`).
    bias, channel_shift : numpy.ndarray
        int64 ``(bias_depth, lanes)``: int32 bias and WESS shift k_c of each lane.
    """

    activation: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    channel_shift: np.ndarray

    @classmethod
    def empty(cls, config):
        """All-zero images of ``config``'s memory sizes."""
        lanes = config.lanes
        return cls(activation=np.zeros((lanes, config.act_depth, lanes), dtype=np.int8),
                   weights=np.zeros((config.weight_depth, lanes, lanes), dtype=np.int8),
                   bias=np.zeros((config.bias_depth, lanes), dtype=np.int64),
                   channel_shift=np.zeros((config.bias_depth, lanes), dtype=np.int64))


def store_activation(activation, x, *, base, config, pitch=None):
    """Write an int8 tensor ``(H, W, C)`` into an activation image at ``base``; padding lanes are written as 0.

    Returns:
        The row pitch used (default: :func:`row_pitch`).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must be (H, W, C), not of shape {x.shape}")
    height, width, channels = x.shape
    pitch = row_pitch(width, channels, config) if pitch is None else pitch
    lanes, count = config.lanes, groups(channels, config)
    padded = np.zeros((height, width, count * lanes), dtype=np.int8)
    padded[..., :channels] = x
    y, xx, g = np.meshgrid(np.arange(height), np.arange(width), np.arange(count), indexing="ij")
    bank, address = activation_location(y, xx, g, base=base, pitch=pitch, width=width, config=config)
    if address.size and (address.min() < 0 or address.max() >= activation.shape[1]):
        raise ValueError(f"a tensor {x.shape} at {base} does not fit {activation.shape[1]} words per bank")
    activation[bank, address] = padded.reshape(height, width, count, lanes)
    return pitch


def load_activation(activation, shape, *, base, config, pitch=None):
    """Read a tensor ``(H, W, C)`` back from an activation image (inverse of :func:`store_activation`)."""
    height, width, channels = shape
    pitch = row_pitch(width, channels, config) if pitch is None else pitch
    count = groups(channels, config)
    y, xx, g = np.meshgrid(np.arange(height), np.arange(width), np.arange(count), indexing="ij")
    bank, address = activation_location(y, xx, g, base=base, pitch=pitch, width=width, config=config)
    words = activation[bank, address].reshape(height, width, count * config.lanes)
    return words[..., :channels].astype(np.int64)


def store_weights(weights_image, kind, weights, *, base, config):
    """Write a layer's int8 weights into a weight image; returns the number of words.

    * ``conv`` (OHWI ``(Cout, KH, KW, Cin)``) and ``fully_connected`` (``(Cout, Cin)``, or OHWI for a flattened
      input): word ``((go*KH + ky)*KW + kx)*Gin + gi`` holds ``w[go*L + r, ky, kx, gi*L + c]`` at row ``r``,
      column ``c``.
    * ``depthwise`` (``(KH, KW, C)``): word ``b*KH*KW + ky*KW + kx`` holds ``w[ky, kx, b*L*L + r*L + c]`` at row ``r``,
      column ``c`` (a block of ``L*L`` channels per word: row ``r`` serves channel group ``b*L + r``).

    Missing channels (counts not multiple of ``L``) are zeros.
    """
    lanes = config.lanes
    weights = np.asarray(weights)
    if kind == "fully_connected" and weights.ndim == 2:
        weights = weights[:, None, None, :]
    if kind in ("conv", "fully_connected"):
        cout, kh, kw, cin = weights.shape
        gout, gin = groups(cout, config), groups(cin, config)
        padded = np.zeros((gout * lanes, kh, kw, gin * lanes), dtype=np.int8)
        padded[:cout, :, :, :cin] = weights
        words = padded.reshape(gout, lanes, kh, kw, gin, lanes).transpose(0, 2, 3, 4, 1, 5)
    elif kind == "depthwise":
        kh, kw, channels = weights.shape
        blocks = -(-channels // config.macs)
        padded = np.zeros((kh, kw, blocks * config.macs), dtype=np.int8)
        padded[..., :channels] = weights
        words = padded.reshape(kh, kw, blocks, lanes, lanes).transpose(2, 0, 1, 3, 4)
    else:
        raise ValueError(f"kind must be conv, fully_connected or depthwise, not {kind!r}")
    words = words.reshape(-1, lanes, lanes)
    if base + len(words) > len(weights_image):
        raise ValueError(f"{len(words)} weight words at {base} exceed the {len(weights_image)}-word weight memory")
    weights_image[base:base + len(words)] = words
    return len(words)


def store_bias(bias_image, shift_image, bias, channel_shift, *, base, config):
    """Write int32 biases and WESS shifts k_c: word ``base + g`` holds channels ``g*L .. g*L + L - 1``."""
    lanes = config.lanes
    bias, channel_shift = np.asarray(bias, dtype=np.int64), np.asarray(channel_shift, dtype=np.int64)
    count = groups(len(bias), config)
    if base + count > len(bias_image):
        raise ValueError(f"{count} bias words at {base} exceed the {len(bias_image)}-word bias memory")
    if channel_shift.size and (channel_shift.min() < 0 or channel_shift.max() > config.max_channel_shift):
        raise ValueError(f"channel shifts must lie in [0, {config.max_channel_shift}]")
    for image, values in ((bias_image, bias), (shift_image, channel_shift)):
        padded = np.zeros(count * lanes, dtype=np.int64)
        padded[:len(values)] = values
        image[base:base + count] = padded.reshape(count, lanes)
    return count


def layer_descriptor(kind, in_shape, out_channels, *, config, kernel=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0),
                     in_base=0, out_base=0, weight_base=0, bias_base=0, input_zero_point=0, multiplier=0, shift=0,
                     output_zero_point=0, qmin=-128, qmax=127):
    """A checked :class:`LayerDescriptor` with the output shape and minimal row pitches derived.

    ``padding`` is ``(top, bottom, left, right)`` as in ``golden.conv``.
    """
    height, width, channels = in_shape
    top, bottom, left, right = padding
    out_height = conv_output_size(height, kernel[0], stride[0], top, bottom)
    out_width = conv_output_size(width, kernel[1], stride[1], left, right)
    descriptor = LayerDescriptor(
        kind=kind, in_height=height, in_width=width, in_channels=channels,
        out_height=out_height, out_width=out_width, out_channels=out_channels,
        kernel_height=kernel[0], kernel_width=kernel[1], stride_height=stride[0], stride_width=stride[1],
        pad_top=top, pad_left=left, in_base=in_base, in_row_pitch=row_pitch(width, channels, config),
        out_base=out_base, out_row_pitch=row_pitch(out_width, out_channels, config),
        weight_base=weight_base, bias_base=bias_base, input_zero_point=input_zero_point, multiplier=multiplier,
        shift=shift, output_zero_point=output_zero_point, qmin=qmin, qmax=qmax)
    check_descriptor(descriptor, config)
    return descriptor


def pack_words(values, width):
    """Pack rows of integers (lane 0 in the least significant bits, two's complement) into Python ints."""
    values = np.asarray(values, dtype=np.int64)
    values = values.reshape(len(values), -1) & ((1 << width) - 1)
    shifts = [lane * width for lane in range(values.shape[1])]
    return [sum(int(v) << s for v, s in zip(row, shifts)) for row in values.tolist()]


def unpack_words(words, width, lanes, *, signed=True):
    """Inverse of :func:`pack_words`: an int64 array ``(len(words), lanes)``."""
    mask = (1 << width) - 1
    out = np.array([[(word >> (lane * width)) & mask for lane in range(lanes)] for word in words], dtype=np.int64)
    if signed:
        out = np.where(out >> (width - 1) == 1, out - (1 << width), out)
    return out.reshape(len(words), lanes)


def write_hex(path, words, width):
    """Write words as a ``$readmemh`` file: one word per line, ``ceil(width/4)`` lowercase hex digits, word 0 first."""
    digits = -(-width // 4)
    Path(path).write_text("".join(f"{word:0{digits}x}\n" for word in words))


def read_hex(path):
    """Words of a ``$readmemh`` file written by :func:`write_hex`."""
    return [int(line, 16) for line in Path(path).read_text().split()]


def write_images(network, directory):
    """Write the engine's ROM images of a quantized network into ``directory``; return a JSON-able summary.

    Every layer the engine runs (conv, depthwise, fully connected — after a flatten too —, global average pool) gets
    its weights and biases placed one after another and a descriptor; activation tensors get regions of the
    activation memory (first fit, freed after their last reader). Files: ``weights.hex`` (``lanes**2 * 8``-bit words),
    ``bias.hex`` (``lanes * (32 + shift_bits)``-bit words: biases, then shifts), ``descriptors.hex`` (one
    :func:`encode_descriptor` word per engine layer) and ``memory.json`` (the summary). A network with two-bit layers
    (a ``codebook``) also gets ``weight_codes.hex`` (``lanes**2 * 2``-bit code words of those layers, one layer after
    another) and ``codebooks.hex`` (one :func:`encode_codebook_entry` word per engine layer); ``weights.hex`` still
    holds every layer as int8. Layers the engine does not
    run (residual adds, other pools) are listed under ``host_layers``; memories larger than the configuration are
    reported with ``fits: false`` rather than refused, so that a network too large for the on-chip memories still
    gets its images.

    Args:
        network: a :class:`golden.network.Network`.
        directory: an existing folder.
    Returns:
        dict: ``config``, ``files``, ``layers`` (descriptor fields, ``codebook`` and ``code_base`` by layer),
        ``tensors`` (placement), ``host_layers``, ``words_needed`` (``weight_codes`` too), ``weight_memory_bits``
        (``int8``: every layer as int8; ``int8_layers``, ``codes``, ``codebooks``: what an engine decoding the codes
        stores) and ``fits``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} does not exist")
    config = network.config
    plan = _plan(network, config)
    big = dataclasses.replace(config, act_depth=max(config.act_depth, plan["words"]["activation"]),
                              weight_depth=max(config.weight_depth, plan["words"]["weights"]),
                              bias_depth=max(config.bias_depth, plan["words"]["bias"]))
    images = MemoryImages(activation=np.zeros((config.lanes, 1, config.lanes), dtype=np.int8),
                          weights=np.zeros((plan["words"]["weights"], config.lanes, config.lanes), dtype=np.int8),
                          bias=np.zeros((plan["words"]["bias"], config.lanes), dtype=np.int64),
                          channel_shift=np.zeros((plan["words"]["bias"], config.lanes), dtype=np.int64))
    codes = np.zeros((plan["words"]["weight_codes"], config.lanes, config.lanes), dtype=np.int8)
    descriptors, entries = [], []
    for entry in plan["layers"]:
        layer, descriptor = entry["layer"], entry["descriptor"]
        if descriptor.kind != "average_pool":
            weights = layer.weights
            if entry.get("flattened"):
                weights = np.asarray(weights).reshape(layer.weights.shape[0], *descriptor.in_shape)
            store_weights(images.weights, descriptor.kind, weights, base=descriptor.weight_base, config=config)
            store_bias(images.bias, images.channel_shift, layer.bias, layer.channel_shift,
                       base=descriptor.bias_base, config=config)
            if entry["codebook"] is not None:
                # Padding elements get code 0 (they decode to codebook[0], not 0: docs/memory.md section 2).
                store_weights(codes, descriptor.kind, weight_codes(weights, entry["codebook"]),
                              base=entry["code_base"], config=config)
        descriptors.append(encode_descriptor(descriptor, big))
        entries.append(encode_codebook_entry(entry["codebook"], entry["code_base"], big))
    lanes = config.lanes
    bias_words = [b | (s << (lanes * 32)) for b, s in zip(pack_words(images.bias, 32),
                                                           pack_words(images.channel_shift, config.shift_bits))]
    files = {"weights.hex": (pack_words(images.weights.reshape(len(images.weights), -1), 8), config.macs * 8),
             "bias.hex": (bias_words, lanes * (32 + config.shift_bits)),
             "descriptors.hex": (descriptors, sum(width for _, width, _ in descriptor_fields(big)))}
    two_bit = [entry for entry in plan["layers"] if entry["codebook"] is not None]
    if two_bit:
        files["weight_codes.hex"] = (pack_words(codes.reshape(len(codes), -1), CODE_BITS), config.macs * CODE_BITS)
        files["codebooks.hex"] = (entries, sum(width for _, width, _ in codebook_fields(big)))
    int8_words = plan["words"]["weights"] - plan["words"]["weight_codes"]
    summary = {
        "config": json.loads(config.to_json()),
        "descriptor_config": json.loads(big.to_json()),
        "files": {name: {"words": len(words), "width": width} for name, (words, width) in files.items()},
        "layers": [{"name": entry["layer"].name, **dataclasses.asdict(entry["descriptor"]),
                    "codebook": None if entry["codebook"] is None else entry["codebook"].tolist(),
                    "code_base": entry["code_base"]} for entry in plan["layers"]],
        "tensors": plan["tensors"],
        "host_layers": plan["host_layers"],
        "words_needed": plan["words"],
        "weight_memory_bits": {"int8": plan["words"]["weights"] * config.macs * 8,
                               "int8_layers": int8_words * config.macs * 8,
                               "codes": plan["words"]["weight_codes"] * config.macs * CODE_BITS,
                               "codebooks": len(two_bit) * 32},
        "fits": plan["words"]["activation"] <= config.act_depth and plan["words"]["weights"] <= config.weight_depth
        and plan["words"]["bias"] <= config.bias_depth,
    }
    written = []
    try:
        for name, (words, width) in files.items():
            write_hex(directory / name, words, width)
            written.append(directory / name)
        (directory / "memory.json").write_text(json.dumps(summary, indent=1) + "\n")
    except OSError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return summary


def _plan(network, config):
    # Placement of every engine layer's weights, biases and tensors; descriptors are checked against a configuration
    # whose depths are at least what the network needs (the summary says whether the real configuration suffices).
    from .engine import average_pool_params

    shapes = {name: tensor.shape for name, tensor in network.tensors.items()}
    aliases = {}
    entries, host_layers = [], []
    weight_base = bias_base = code_base = 0
    for layer in network.layers:
        kind = layer.kind
        if kind == "flatten":
            aliases[layer.output] = aliases.get(layer.input, layer.input)
            continue
        source = aliases.get(layer.inputs[0], layer.inputs[0])
        in_shape = shapes[source]
        in_shape = (1, 1, in_shape[0]) if len(in_shape) == 1 else tuple(in_shape)
        entry = dict(layer=layer, input=source, flattened=source != layer.inputs[0], code_base=0,
                     codebook=None if getattr(layer, "codebook", None) is None else np.asarray(layer.codebook))
        if kind == "conv" and layer.groups == 1:
            entry.update(kind="conv", kernel=layer.weights.shape[1:3], stride=layer.stride, padding=layer.padding,
                         out_channels=layer.weights.shape[0])
        elif kind == "depthwise":
            entry.update(kind="depthwise", kernel=layer.weights.shape[:2], stride=layer.stride, padding=layer.padding,
                         out_channels=layer.weights.shape[2])
        elif kind == "fully_connected":
            entry.update(kind="fully_connected", kernel=in_shape[:2], stride=(1, 1), padding=(0, 0, 0, 0),
                         out_channels=layer.weights.shape[0])
        elif kind == "average_pool" and (layer.kernel is None or tuple(layer.kernel) == in_shape[:2]) \
                and tuple(layer.padding) == (0, 0, 0, 0):
            entry.update(kind="average_pool", kernel=in_shape[:2], stride=(1, 1), padding=(0, 0, 0, 0),
                         out_channels=in_shape[2])
        else:
            host_layers.append({"name": layer.name, "kind": kind})
            continue
        entry["in_shape"] = in_shape
        if entry["kind"] == "average_pool":
            count = in_shape[0] * in_shape[1]
            multiplier, shift = average_pool_params(count)
            entry["params"] = dict(input_zero_point=0, output_zero_point=0, multiplier=multiplier, shift=shift,
                                   qmin=-128, qmax=127)
        else:
            if np.ndim(layer.multiplier):
                raise ValueError(f"layer {layer.name!r} has per-channel multipliers, which the engine does not store")
            entry["params"] = dict(input_zero_point=network.tensors[source].zero_point,
                                   output_zero_point=network.tensors[layer.output].zero_point,
                                   multiplier=int(layer.multiplier), shift=int(layer.shift),
                                   qmin=int(layer.qmin), qmax=int(layer.qmax))
            entry["weight_base"], entry["bias_base"] = weight_base, bias_base
            probe = LayerDescriptor(kind=entry["kind"], in_height=in_shape[0], in_width=in_shape[1],
                                    in_channels=in_shape[2], out_height=1, out_width=1,
                                    out_channels=entry["out_channels"], kernel_height=entry["kernel"][0],
                                    kernel_width=entry["kernel"][1])
            weight_base += weight_words(probe, config)
            bias_base += groups(entry["out_channels"], config)
            if entry["codebook"] is not None:
                entry["code_base"] = code_base
                code_base += weight_words(probe, config)
        entries.append(entry)

    # Activation regions: first fit over [0, inf), a tensor freed after the last engine layer that reads it.
    tensors, live = {}, {}
    last_read = {}
    for index, entry in enumerate(entries):
        last_read[entry["input"]] = index

    def allocate(name, shape):
        shape = (1, 1, shape[0]) if len(shape) == 1 else tuple(shape)
        words = activation_words(shape, config)
        base = 0
        for start, end in sorted(live.values()):
            if base + words <= start:
                break
            base = max(base, end)
        live[name] = (base, base + words)
        tensors[name] = {"base": base, "row_pitch": row_pitch(shape[1], shape[2], config), "shape": list(shape),
                         "words": words}

    for index, entry in enumerate(entries):
        if entry["input"] not in tensors:
            allocate(entry["input"], shapes[entry["input"]])
        allocate(entry["layer"].output, shapes[entry["layer"].output])
        for name in [name for name in live if last_read.get(name, -1) <= index and name != entry["layer"].output]:
            del live[name]
    words = {"activation": max((t["base"] + t["words"] for t in tensors.values()), default=0),
             "weights": weight_base, "bias": bias_base, "weight_codes": code_base}
    big = dataclasses.replace(config, act_depth=max(config.act_depth, words["activation"]),
                              weight_depth=max(config.weight_depth, words["weights"]),
                              bias_depth=max(config.bias_depth, words["bias"]))
    for entry in entries:
        source, output = tensors[entry["input"]], tensors[entry["layer"].output]
        entry["descriptor"] = layer_descriptor(
            entry["kind"], entry["in_shape"], entry["out_channels"], config=big, kernel=tuple(entry["kernel"]),
            stride=tuple(entry["stride"]), padding=tuple(entry["padding"]), in_base=source["base"],
            out_base=output["base"], weight_base=entry.get("weight_base", 0), bias_base=entry.get("bias_base", 0),
            **entry["params"])
    return {"layers": entries, "tensors": tensors, "host_layers": host_layers, "words": words}



def read_images(directory):
    """Read what :func:`write_images` wrote: ``(config, images, descriptors, summary)``.

    ``config`` is the configuration the descriptors were encoded for (``descriptor_config``: the network's, with
    memory depths raised to what the network needs); ``images`` holds the weight and bias ROMs at that size and an
    empty activation memory; ``descriptors`` are the engine layers' :class:`LayerDescriptor` s in order.
    """
    directory = Path(directory)
    summary = json.loads((directory / "memory.json").read_text())
    config = NPUConfig(**summary["descriptor_config"])
    lanes = config.lanes
    images = MemoryImages.empty(config)
    weights = unpack_words(read_hex(directory / "weights.hex"), 8, config.macs)
    images.weights[:len(weights)] = weights.reshape(-1, lanes, lanes)
    words = read_hex(directory / "bias.hex")
    offset = lanes * 32
    images.bias[:len(words)] = unpack_words([w & ((1 << offset) - 1) for w in words], 32, lanes)
    images.channel_shift[:len(words)] = unpack_words([w >> offset for w in words], config.shift_bits, lanes,
                                                     signed=False)
    descriptors = [decode_descriptor(word, config) for word in read_hex(directory / "descriptors.hex")]
    return config, images, descriptors, summary


def read_weight_codes(directory):
    """Read the two-bit files :func:`write_images` wrote: ``(config, words, entries)``.

    ``words`` are the packed code words of ``weight_codes.hex`` (decode with :func:`decode_code_words`), ``entries``
    the ``(codebook, code_base)`` of every engine layer in descriptor order (``(None, 0)`` for int8 layers and pools).

    Raises:
        FileNotFoundError: the network has no two-bit layer (no ``weight_codes.hex``).
    """
    directory = Path(directory)
    config = NPUConfig(**json.loads((directory / "memory.json").read_text())["descriptor_config"])
    words = read_hex(directory / "weight_codes.hex")
    entries = [decode_codebook_entry(word, config) for word in read_hex(directory / "codebooks.hex")]
    return config, words, entries
