"""Golden model of the layer controller (``hdl/controller.py``): the checks it makes, the program it runs, its cycles.

The controller runs a *program*, the descriptors of its descriptor memory ``0 .. layer_count - 1``, with one
``start``: per layer it reads the descriptor, checks it (:func:`hardware_error`), starts the engine, waits for its
``done`` and stores the engine's counters. A descriptor that fails a check stops the program with the controller's
error flag raised instead of starting the engine (:func:`program_error`), so that no word of a corrupt program makes
the sequencer loop for ever or write outside the activation memory. The checks are those that need no more than one
multiply per region; :func:`golden.descriptor.check_descriptor` checks more (weight bounds, overlapping regions,
requantization fields, ...), so every descriptor the controller refuses ``check_descriptor`` refuses too, not the
other way round. :func:`program_cycles` is the controller's cycle count, :func:`run_program` what the program does
to the memories.
"""

import types

from .descriptor import KINDS, descriptor_fields, encode_descriptor
from .engine import run_layer
from .layouts import groups, row_pitch, unpack_fields
from .sequencer import layer_cycles

__all__ = ["CHECKS", "DESCRIPTOR_LATENCY", "CHECK_LATENCY", "LAUNCH_LATENCY", "STORE_LATENCY", "LAYER_OVERHEAD",
           "hardware_error", "program_error", "run_program", "program_cycles"]

#: The controller's checks in priority order (its ``error_check`` output is the index of the first that fails):
#:
#: * ``layer_count``: ``layer_count`` is 0 or exceeds ``program_depth`` (checked at ``start``);
#: * ``kind``: a kind code that is not one of :data:`golden.descriptor.KINDS`;
#: * ``size``: a height, width, channel count or kernel size of 0;
#: * ``stride``: a stride other than 1 or 2;
#: * ``padding``: padding before the input not below the kernel size;
#: * ``output_size``: an output size that does not follow from input, kernel, stride and padding (the padding after
#:   the input it implies lies outside ``[0, kernel)``);
#: * ``channels``: a depthwise, average pool, add or max pool layer whose output channels differ from its input
#:   channels;
#: * ``window``: a fully connected or average pool kernel that is not the whole input or has a stride other than 1;
#:   an add that is not 1x1, stride 1, unpadded (its output size then equals its input's: ``output_size``);
#: * ``row_pitch``: a row pitch below the minimal one (input, output, an add's second input);
#: * ``activation_bounds``: a tensor region (``base + height * row_pitch``) beyond ``act_depth``;
#: * ``bias_bounds``: a layer with weights whose bias words (``bias_base + groups(out_channels)``) pass ``bias_depth``.
CHECKS = ("layer_count", "kind", "size", "stride", "padding", "output_size", "channels", "window", "row_pitch",
          "activation_bounds", "bias_bounds")

# Per-layer cycles the controller adds to the engine's (hdl.controller.Controller sums its named stages to these).
#: Cycles from the layer's index to its descriptor: the descriptor memory's registered read, then the word copied
#: into a register beside the check logic and the engine.
DESCRIPTOR_LATENCY = 3
#: Cycles of the checks: flags and the region products' operands registered, the products (three registers of a
#: MULT18X18D and a fabric copy of the product; the flags' first failure registered beside them), region comparisons
#: registered, then the verdict.
CHECK_LATENCY = 7
#: The cycle that starts the engine (the engine's ``cycles`` count from the next one).
LAUNCH_LATENCY = 1
#: The cycle of the engine's ``done``, in which the layer's counters are stored.
STORE_LATENCY = 1
#: What one layer costs the controller beyond ``golden.sequencer.layer_cycles``.
LAYER_OVERHEAD = DESCRIPTOR_LATENCY + CHECK_LATENCY + LAUNCH_LATENCY + STORE_LATENCY


def hardware_error(descriptor, config):
    """The first of :data:`CHECKS` that the controller's hardware finds failed in ``descriptor``, or ``None``.

    ``descriptor`` is a :class:`golden.descriptor.LayerDescriptor`, its ``kind`` a name of ``KINDS`` or a code; it is
    checked as the controller holds it, encoded (``encode_descriptor(..., check=False)``: fields keep their low bits).
    """
    fields = descriptor_fields(config)
    d = types.SimpleNamespace(**unpack_fields(fields, encode_descriptor(descriptor, config, check=False)))
    kinds = {code: kind for kind, code in KINDS.items()}
    if d.kind not in kinds:
        return "kind"
    kind = kinds[d.kind]
    if 0 in (d.in_height, d.in_width, d.in_channels, d.out_height, d.out_width, d.out_channels, d.kernel_height,
             d.kernel_width):
        return "size"
    if not {d.stride_height, d.stride_width} <= {1, 2}:
        return "stride"
    if d.pad_top >= d.kernel_height or d.pad_left >= d.kernel_width:
        return "padding"
    for size, kernel, stride, before, out in ((d.in_height, d.kernel_height, d.stride_height, d.pad_top, d.out_height),
                                              (d.in_width, d.kernel_width, d.stride_width, d.pad_left, d.out_width)):
        if not 0 <= (out - 1) * stride + kernel - size - before < kernel:
            return "output_size"
    if kind in ("depthwise", "average_pool", "add", "max_pool") and d.in_channels != d.out_channels:
        return "channels"
    if kind in ("fully_connected", "average_pool") and ((d.kernel_height, d.kernel_width) != (d.in_height, d.in_width)
                                                        or (d.stride_height, d.stride_width) != (1, 1)):
        return "window"
    if kind == "add" and (d.kernel_height, d.kernel_width, d.stride_height, d.stride_width, d.pad_top, d.pad_left) \
            != (1, 1, 1, 1, 0, 0):
        return "window"
    regions = [(d.in_base, d.in_row_pitch, d.in_height, d.in_width, d.in_channels),
               (d.out_base, d.out_row_pitch, d.out_height, d.out_width, d.out_channels)]
    if kind == "add":
        regions.append((d.in2_base, d.in2_row_pitch, d.in_height, d.in_width, d.in_channels))
    if any(pitch < row_pitch(width, channels, config) for _, pitch, _, width, channels in regions):
        return "row_pitch"
    if any(base + height * pitch > config.act_depth for base, pitch, height, _, _ in regions):
        return "activation_bounds"
    if kind in ("conv", "depthwise", "fully_connected") and d.bias_base + groups(d.out_channels, config) \
            > config.bias_depth:
        return "bias_bounds"
    return None


def program_error(descriptors, config, layer_count=None):
    """Where the controller stops a program with its error flag: ``(layer, check)`` (a name of :data:`CHECKS`), or
    ``None`` when it runs every layer. ``layer_count`` defaults to ``len(descriptors)``."""
    layer_count = len(descriptors) if layer_count is None else layer_count
    if not 0 < layer_count <= config.program_depth:
        return 0, "layer_count"
    for layer, descriptor in enumerate(descriptors[:layer_count]):
        check = hardware_error(descriptor, config)
        if check is not None:
            return layer, check
    return None


def run_program(descriptors, images, config):
    """Run a program on :class:`golden.images.MemoryImages` as the controller does (``golden.engine.run_layer`` per
    layer, in order); returns every layer's int8 output tensor.

    Raises:
        ValueError: the controller would stop the program (:func:`program_error`), or ``check_descriptor`` refuses a
            layer the controller's checks let through.
    """
    error = program_error(descriptors, config)
    if error is not None:
        raise ValueError(f"layer {error[0]}: the controller's {error[1]} check fails")
    return [run_layer(descriptor, images, config)[0] for descriptor in descriptors]


def program_cycles(descriptors, config):
    """The controller's ``cycles`` after running ``descriptors`` (paused cycles not counted): per layer
    ``golden.sequencer.layer_cycles`` plus :data:`LAYER_OVERHEAD`."""
    return sum(layer_cycles(descriptor, config) + LAYER_OVERHEAD for descriptor in descriptors)
