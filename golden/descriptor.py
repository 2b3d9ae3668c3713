"""The layer descriptor: the engine's instruction format (docs/memory.md section 4).

One :class:`LayerDescriptor` describes one layer completely; ``hdl/engine.py`` runs it from ``start`` to ``done``, and
a network is a list of them (``descriptors.hex``). Its bit fields have one source, :func:`descriptor_fields`:
:func:`encode_descriptor` packs them and ``hdl.sequencer.descriptor_layout`` builds the RTL port from them.
:func:`check_descriptor` refuses what the engine would not compute as the golden model does.
"""

import dataclasses

import numpy as np

from .conv import conv_output_size
from .layouts import (CODE_BITS, CODE_WORDS_PER_WORD, UNWEIGHTED, address_bits, groups, pack_fields, row_pitch,
                      unpack_fields, weight_words)
from .pool import MAX_POOL_COUNT, MAX_POOL_PARAMS

__all__ = ["KINDS", "UNWEIGHTED", "PER_ROW", "WEIGHT_FORMATS", "MAX_PAD", "LayerDescriptor", "descriptor_fields",
           "encode_descriptor", "decode_descriptor", "check_descriptor", "layer_descriptor", "unbounded_config", "weight_address_bits", "CODE_WORDS_PER_WORD"]

#: Layer kinds and their descriptor codes.
KINDS = {"conv": 0, "depthwise": 1, "fully_connected": 2, "average_pool": 3, "add": 4, "max_pool": 5}

#: Kinds walked one output pixel per MAC row (``golden.sequencer``): depthwise and its weightless twin, max pooling.
PER_ROW = ("depthwise", "max_pool")

#: Weight formats of a layer with weights: int8 words, or two-bit codes decoded by the layer's codebook (an engine
#: with ``weight_code_bits == 2``; docs/memory.md section 2a).
WEIGHT_FORMATS = {"int8": 0, "two_bit": 1}

#: Largest padding before the input (top, left) a descriptor can hold.
MAX_PAD = 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerDescriptor:
    """Everything the engine needs to run one layer on its own.

    Members
    -------
    kind : str
        One of :data:`KINDS`. A fully connected layer is a convolution whose kernel covers its whole input (a 1x1
        input, or the ``(H, W)`` map a flatten came from); a global average pool's kernel is its whole input. A
        ``max_pool`` walks its windows as a depthwise layer does (padding never wins) and passes the window maximum
        through the requantizer unchanged (:data:`golden.pool.MAX_POOL_PARAMS`).
    in_height, in_width, in_channels, out_height, out_width, out_channels : int
        Tensor shapes (HWC, batch 1).
    kernel_height, kernel_width, stride_height, stride_width : int
        Window; strides are 1 or 2.
    pad_top, pad_left : int
        Padding before the input (0..3); the padding after it follows from the output size.
    in_base, in_row_pitch, out_base, out_row_pitch : int
        Activation memory placement of the input and output tensors (bank addresses, ``golden.layouts``).
    weight_base, bias_base : int
        First weight and bias word of the layer (unused by average pooling).
    input_zero_point, multiplier, shift, output_zero_point, qmin, qmax : int
        Requantization (docs/arithmetic.md, section 5); for average pooling from
        :func:`golden.pool.average_pool_params`. For a residual ``add``: the zero point of the first input, and the
        rescaling of the sum to the output (``golden.add.AddParams`` ``output_multiplier`` / ``output_shift``).
    in2_base, in2_row_pitch, input2_zero_point, multiplier1, shift1, multiplier2, shift2 : int
        Only for ``add`` (``golden.add``): the second input's placement and zero point, and each input's rescaling
        (``AddParams.multiplier1`` ...). The add's output is ``in_base``'s tensor plus ``in2_base``'s, element by
        element; its window fields are 1x1, stride 1, no padding.
    weight_format : int
        :data:`WEIGHT_FORMATS` code: 0 for int8 weights; 1 for two-bit codes (an engine with
        ``weight_code_bits == 2``), whose ``weight_base`` then counts code words (docs/memory.md section 2a).
    codebook0, codebook1, codebook2, codebook3 : int
        With two-bit codes: the int8 weight each code stands for (ascending); 0 otherwise.
    out_skew : int
        The output's words go to bank ``(x + g + out_skew) mod lanes`` (``golden.layouts.activation_location``): with
        ``out_base = B + g0 * ceil(out_width / lanes)`` and ``out_skew = g0 mod lanes`` the layer writes channel groups
        ``g0 ..`` of the tensor at ``B`` (row pitch ``out_row_pitch``): its slice of a concatenation
        (``golden.placement``). 0 otherwise.
    table, table_base : int
        ``table`` 1: every requantized output ``q`` becomes ``T[q + 128]`` of the 256-entry int8 table ``T`` number
        ``table_base`` of the table memory (an elementwise activation fused after the layer, ``golden.activation``;
        docs/memory.md section 3a); ``table`` 0 and ``table_base`` 0 otherwise.
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
    in2_base: int = 0
    in2_row_pitch: int = 0
    input2_zero_point: int = 0
    multiplier1: int = 0
    shift1: int = 0
    multiplier2: int = 0
    shift2: int = 0
    weight_format: int = 0
    codebook0: int = 0
    codebook1: int = 0
    codebook2: int = 0
    codebook3: int = 0
    table: int = 0
    table_base: int = 0
    out_skew: int = 0

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
        """Multiply-accumulates of the layer as usually counted (padded taps included; a pool counts one per input, a
        max pool one comparison per tap)."""
        if self.kind == "average_pool":
            return self.in_height * self.in_width * self.in_channels
        if self.kind == "add":
            return 0
        window = self.kernel_height * self.kernel_width
        per_output = window if self.kind in PER_ROW else window * self.in_channels
        return self.out_height * self.out_width * self.out_channels * per_output


def descriptor_fields(config):
    """The descriptor's bit fields ``(name, width, signed)``, least significant first.

    ``hdl/engine.py`` builds its descriptor port from this list, so the RTL and :func:`encode_descriptor` share one
    definition.
    """
    dim, channels = config.dim_bits, config.channel_bits
    act = address_bits(config.act_depth)
    return (
        ("kind", 3, False),
        ("in_height", dim, False), ("in_width", dim, False), ("in_channels", channels, False),
        ("out_height", dim, False), ("out_width", dim, False), ("out_channels", channels, False),
        ("kernel_height", dim, False), ("kernel_width", dim, False),
        ("stride_height", 2, False), ("stride_width", 2, False), ("pad_top", 2, False), ("pad_left", 2, False),
        ("in_base", act, False), ("in_row_pitch", act, False), ("out_base", act, False), ("out_row_pitch", act, False),
        ("weight_base", weight_address_bits(config), False), ("bias_base", address_bits(config.bias_depth), False),
        ("input_zero_point", 8, True), ("multiplier", config.multiplier_bits, False),
        ("shift", config.layer_shift_bits, True), ("output_zero_point", 8, True), ("qmin", 8, True), ("qmax", 8, True),
        ("in2_base", act, False), ("in2_row_pitch", act, False), ("input2_zero_point", 8, True),
        ("multiplier1", config.multiplier_bits, False), ("shift1", config.layer_shift_bits, True),
        ("multiplier2", config.multiplier_bits, False), ("shift2", config.layer_shift_bits, True),
        ("weight_format", 1, False),
        ("codebook0", 8, True), ("codebook1", 8, True), ("codebook2", 8, True), ("codebook3", 8, True),
        ("table", 1, False), ("table_base", address_bits(config.table_depth), False),
        ("out_skew", max(1, config.lane_bits), False),
    )


def encode_descriptor(descriptor, config, *, check=True):
    """The descriptor as one integer (fields of :func:`descriptor_fields`, two's complement), after checking it.

    With ``check=False`` nothing is checked, each field keeps its low bits, and ``kind`` may also be a code (the words
    of a corrupt program, whose checks ``golden.controller`` models).
    """
    if check:
        check_descriptor(descriptor, config)
    fields = descriptor_fields(config)
    return pack_fields(fields, {name: KINDS.get(descriptor.kind, descriptor.kind) if name == "kind"
                                 else getattr(descriptor, name) for name, _, _ in fields})


def decode_descriptor(value, config):
    """Inverse of :func:`encode_descriptor`."""
    fields = unpack_fields(descriptor_fields(config), value)
    fields["kind"] = {code: kind for kind, code in KINDS.items()}[fields["kind"]]
    return LayerDescriptor(**fields)


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
    for name in ("multiplier", "multiplier1", "multiplier2"):
        if getattr(d, name) and not 1 << 30 <= getattr(d, name):
            raise ValueError(f"{name} must be 0 or in [2**30, 2**31), not {getattr(d, name)!r}")
    _check_add(d)
    _check_weight_format(d, config)
    if d.table_base >= (config.table_depth if d.table else 1):
        raise ValueError(f"table_base {d.table_base} must be below table_depth {config.table_depth} with table 1, "
                         f"and 0 with table 0")
    if d.qmin > d.qmax:
        raise ValueError(f"qmin {d.qmin} exceeds qmax {d.qmax}")
    for axis, size, kernel, stride, before, out in (
            ("height", d.in_height, d.kernel_height, d.stride_height, d.pad_top, d.out_height),
            ("width", d.in_width, d.kernel_width, d.stride_width, d.pad_left, d.out_width)):
        after = (out - 1) * stride + kernel - size - before
        if not 0 <= after < kernel or before >= kernel or conv_output_size(size, kernel, stride, before, after) != out:
            raise ValueError(f"out_{axis} {out} does not follow from in_{axis} {size}, kernel {kernel}, "
                             f"stride {stride} and padding {before}")
    if d.kind in ("depthwise", "average_pool", "max_pool") and d.in_channels != d.out_channels:
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
    if d.kind == "max_pool":
        if any(getattr(d, name) != value for name, value in MAX_POOL_PARAMS.items()):
            raise ValueError(f"a max pool passes its maximum unchanged: {MAX_POOL_PARAMS} "
                             "(golden.pool.MAX_POOL_PARAMS)")
        if d.weight_base or d.bias_base or d.weight_format:
            raise ValueError("a max pool has no weights or biases: weight_base, bias_base and weight_format must be 0")
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
    if d.kind == "add":
        in2_words = d.in_height * d.in2_row_pitch
        if d.in2_row_pitch < row_pitch(d.in_width, d.in_channels, config):
            raise ValueError(f"in2_row_pitch {d.in2_row_pitch} is below "
                             f"{row_pitch(d.in_width, d.in_channels, config)} words, the size of one row of "
                             f"{d.in_width} x {d.in_channels}")
        if d.in2_base + in2_words > config.act_depth:
            raise ValueError(f"the second input tensor ({in2_words} words from {d.in2_base}) exceeds act_depth "
                             f"{config.act_depth}")
        if d.in2_base < d.out_base + out_words and d.out_base < d.in2_base + in2_words:
            raise ValueError("the second input and output tensors overlap in the activation memory")
    elif d.kind not in UNWEIGHTED:
        # Two-bit layers count code words, four to a memory word (docs/memory.md section 2a).
        capacity = config.weight_depth * (CODE_WORDS_PER_WORD if d.weight_format else 1)
        if d.weight_base + weight_words(d, config) > capacity:
            raise ValueError(f"the weights ({weight_words(d, config)} {'code ' if d.weight_format else ''}words "
                             f"from {d.weight_base}) exceed weight_depth {config.weight_depth}")
        if d.bias_base + groups(d.out_channels, config) > config.bias_depth:
            raise ValueError(f"the biases ({groups(d.out_channels, config)} words from {d.bias_base}) exceed "
                             f"bias_depth {config.bias_depth}")


def layer_descriptor(kind, in_shape, out_channels, *, config, kernel=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0),
                     in_base=0, out_base=0, weight_base=0, bias_base=0, input_zero_point=0, multiplier=0, shift=0,
                     output_zero_point=0, qmin=-128, qmax=127, **fields):
    """A checked :class:`LayerDescriptor` with the output shape and minimal row pitches derived.

    ``padding`` is ``(top, bottom, left, right)`` as in ``golden.conv``; ``fields`` are the other descriptor fields
    (an add's ``in2_base`` ..., a two-bit layer's ``weight_format`` and codebook); an add's ``in2_row_pitch`` defaults
    to the minimal one.
    """
    if kind == "add":
        fields.setdefault("in2_row_pitch", row_pitch(in_shape[1], in_shape[2], config))
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
        shift=shift, output_zero_point=output_zero_point, qmin=qmin, qmax=qmax, **fields)
    check_descriptor(descriptor, config)
    return descriptor


def weight_address_bits(config):
    """Width of ``weight_base`` and of the engine's weight addresses: two more bits where code words are addressed."""
    bits = address_bits(config.weight_depth)
    return bits + 2 if config.weight_code_bits == CODE_BITS else bits


def _check_add(d):
    # An add is elementwise (1x1 window, same shapes) with rescalings below 1; other kinds leave its fields at 0.
    add_fields = ("in2_base", "in2_row_pitch", "input2_zero_point", "multiplier1", "shift1", "multiplier2", "shift2")
    if d.kind != "add":
        for name in add_fields:
            if getattr(d, name):
                raise ValueError(f"{name} is an add's field: it must be 0 for a {d.kind} layer")
        return
    if d.in_shape != d.out_shape or (d.kernel_height, d.kernel_width, d.stride_height, d.stride_width,
                                      d.pad_top, d.pad_left) != (1, 1, 1, 1, 0, 0):
        raise ValueError("an add keeps its shape: 1x1 window, stride 1, no padding, in_* equal to out_*")
    for name in ("shift", "shift1", "shift2"):
        if getattr(d, name) > 0:
            raise ValueError(f"an add's {name} must be <= 0 (a rescaling below 1), not {getattr(d, name)!r}")
    if d.weight_base or d.bias_base or d.weight_format:
        raise ValueError("an add has no weights or biases: weight_base, bias_base and weight_format must be 0")


def _check_weight_format(d, config):
    # Two-bit codes need the decoder and a layer with weights; the codebook is ascending there and 0 elsewhere.
    codebook = [d.codebook0, d.codebook1, d.codebook2, d.codebook3]
    if not d.weight_format:
        if any(codebook):
            raise ValueError("codebook0..codebook3 must be 0 for an int8 layer (weight_format 0)")
        return
    if config.weight_code_bits != CODE_BITS:
        raise ValueError("weight_format 1 (two-bit codes) needs an engine with weight_code_bits 2")
    if d.kind not in ("conv", "depthwise", "fully_connected"):
        raise ValueError(f"a {d.kind} layer has no weights to hold as two-bit codes")
    if any(b <= a for a, b in zip(codebook, codebook[1:])):
        raise ValueError(f"the codebook {codebook} must be ascending")


def unbounded_config(config):
    """``config`` with memories as deep as a layer's geometry may need: for descriptors of layers that need not fit.

    Placement probes and cycle counts of whole networks use it; it describes no hardware to build.
    """
    return dataclasses.replace(config, act_depth=1 << 20, weight_depth=1 << 20, bias_depth=1 << 20, table_depth=1 << 12)
