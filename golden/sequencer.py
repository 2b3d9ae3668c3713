"""Golden model of the layer sequencer (``hdl/sequencer.py``): the steps of a layer and the engine's cycle count.

:func:`steps` lists what every step of the MAC array reads, computed directly from the layer's geometry and the
memory layouts of ``golden.layouts`` (the RTL keeps the same values with incremental counters). :func:`layer_cycles`
is the engine's cycle model: the exact value of its ``cycles`` counter for any descriptor, in closed form, so that
``tools/bench_engine.py`` can count whole networks and the testbenches can check the RTL against it. A residual add
does not use the MAC array: :func:`add_steps` is its walk (``hdl.add.AddSequencer``), two activation words per output
word. A max pool is walked as a depthwise layer (same windows, banks, passes and cycles) without weights.
"""

import dataclasses

from .descriptor import PER_ROW, check_descriptor
from .layouts import activation_location, groups

__all__ = ["Step", "steps", "AddStep", "add_steps", "issue_cycles", "layer_cycles", "pixels_per_pass",
           "groups_per_pass", "SEQUENCER_LATENCY", "FETCH_LATENCY", "REDUCE_LATENCY", "DRAIN_LATENCY", "WRITE_LATENCY",
           "ADD_SEQUENCER_LATENCY", "ADD_WRITE_LATENCY", "TABLE_LATENCY"]

# The RTL sums these from named pipeline stages (hdl.sequencer.Sequencer, hdl.engine.Engine); a test checks each sum.
#: Cycles from ``start`` to the first step leaving the sequencer (``hdl.sequencer.Sequencer.latency``): setup 3
#: (descriptor latched, two cycles of derived constants), then three stages.
SEQUENCER_LATENCY = 6
#: Cycles from a step leaving the sequencer to its operands entering the MAC array (the memories' read latency,
#: ``hdl.engine.Engine.fetch_latency``).
FETCH_LATENCY = 2
#: Cycles from a pass's last step entering the MAC array to its first result word (``hdl.mac_array.MACArray``):
#: the operand registers (each row's words selected, then centred), the multiplier's input, pipeline and output
#: registers, the products' copy, accumulators, result bank, then ``log2(lanes)`` adder-tree levels (reduced) or the
#: row drain (per row).
REDUCE_LATENCY = 8
DRAIN_LATENCY = 9
#: Cycles of the activation table stage after the requantizer (``hdl.memory.TableMemory.latency``): every layer's
#: words pass it, looked up or not.
TABLE_LATENCY = 2
#: Cycles from a result word leaving the MAC array to its write (``hdl.engine.Engine.write_latency``): pixel 1,
#: address 1, bias memory 2, bias add 1, requantizer 16, table 2, the copy beside the bank 1.
WRITE_LATENCY = 24
#: Cycles from ``start`` to an add's first step (``hdl.add.AddSequencer.latency``): the descriptor's derived values
#: registered, counters loaded, step registered.
ADD_SEQUENCER_LATENCY = 3
#: Cycles from an add's input-2 word leaving the activation memory to the write of its output word
#: (``hdl.engine.Engine.add_write_latency``): add unit 10 (``hdl.add.AddUnit.latency``: bank select and centring, the
#: multipliers 3 and their products' copies 1, high half and rounding right shift 4, sum), requantizer 16, table 2,
#: the copy beside the bank 1.
ADD_WRITE_LATENCY = 29


@dataclasses.dataclass(frozen=True)
class Step:
    """One MAC-array step.

    Members
    -------
    rows : tuple
        Per MAC row ``(bank, address, valid)`` of the activation word it multiplies (``valid`` false: padding or a
        missing group; the MACs get 0 and the address is irrelevant).
    weight_address : int or None
        Weight word (``None`` for pooling, whose weights are built in, and max pooling, which has none).
    weight_rows : tuple
        Per MAC row, the row of the weight word it uses.
    first, last : bool
        The step starts / ends a pass.
    macs : int
        Layer MACs done by this step (as :attr:`golden.descriptor.LayerDescriptor.macs` counts them).
    out : dict or None
        On a pass's last step: where its words go (``address``, ``address_next``, ``bank``, ``pixels``, ``pair``,
        ``bias_address``).
    """

    rows: tuple
    weight_address: object
    weight_rows: tuple
    first: bool
    last: bool
    macs: int
    out: object


@dataclasses.dataclass(frozen=True)
class AddStep:
    """One step of a residual add: one activation word read.

    Members
    -------
    bank, address : int
        The word read: channel group ``g`` of pixel ``(y, x)`` of input 1, or of input 2 (``second``), which share
        its bank.
    second : bool
        The word is input 2's; the step before read input 1's word of the same pixel and group.
    out_address : int
        Where the output word of the pixel and group goes (in the same bank).
    """

    bank: int
    address: int
    second: bool
    out_address: int


def add_steps(descriptor, config):
    """Yield the :class:`AddStep` s of an add layer in the order ``hdl.add.AddSequencer`` issues them.

    For each row ``y``, channel group ``g`` and column ``x``: input 1's word, then input 2's. The three tensors share
    the word's bank ``(x + g) mod lanes`` and its offset ``g * ceil(W / lanes) + x // lanes`` within their rows.
    """
    check_descriptor(descriptor, config)
    d = descriptor
    if d.kind != "add":
        raise ValueError(f"add_steps walks an add layer, not a {d.kind} layer")
    for y in range(d.in_height):
        for g in range(groups(d.in_channels, config)):
            for x in range(d.in_width):
                places = [activation_location(y, x, g, base=base, pitch=pitch, width=d.in_width, config=config)
                          for base, pitch in ((d.in_base, d.in_row_pitch), (d.in2_base, d.in2_row_pitch),
                                              (d.out_base, d.out_row_pitch))]
                (bank, first), (_, second), (_, out) = ((int(b), int(a)) for b, a in places)
                yield AddStep(bank=bank, address=first, second=False, out_address=out)
                yield AddStep(bank=bank, address=second, second=True, out_address=out)


def pixels_per_pass(descriptor, config):
    """Output pixels of one pass: ``lanes`` (depthwise or max pool, stride 1), ``lanes / 2`` (stride 2) or 1."""
    if descriptor.kind not in PER_ROW:
        return 1
    return config.lanes // 2 if descriptor.stride_width == 2 else config.lanes


def groups_per_pass(descriptor):
    """Output channel groups of one pass: 2 for depthwise (or max pool) stride 2, else 1."""
    return 2 if descriptor.kind in PER_ROW and descriptor.stride_width == 2 else 1


def steps(descriptor, config):
    """Yield the :class:`Step` s of a layer in the order the sequencer issues them (bubbles not included).

    An add has no MAC-array steps: its walk is :func:`add_steps`.
    """
    check_descriptor(descriptor, config)
    d, lanes = descriptor, config.lanes
    if d.kind == "add":
        raise ValueError("an add layer does not use the MAC array: its steps are add_steps")
    gin, gout = groups(d.in_channels, config), groups(d.out_channels, config)
    igp, ogp = -(-d.in_width // lanes), -(-d.out_width // lanes)
    tile, pair_groups = pixels_per_pass(d, config), groups_per_pass(d)
    kernel = d.kernel_height * d.kernel_width
    conv = d.kind in ("conv", "fully_connected")
    inner = gin if conv else 1

    def lanes_of(group, count, channels):
        return 0 if group >= count else min(lanes, channels - group * lanes)

    for y in range(d.out_height):
        for xt in range(0, d.out_width, tile):
            for go in range(0, gout, pair_groups):
                pixels = min(tile, d.out_width - xt)
                out = dict(address=d.out_base + y * d.out_row_pitch + go * ogp + xt // lanes,
                           address_next=d.out_base + y * d.out_row_pitch + (go + 1) * ogp + xt // lanes,
                           bank=(xt + go) % lanes, pixels=pixels, pair=go + 1 < gout, bias_address=d.bias_base + go)
                for ky in range(d.kernel_height):
                    y_in = y * d.stride_height + ky - d.pad_top
                    for kx in range(d.kernel_width):
                        for gi in range(inner):
                            rows, weight_rows = [], []
                            for r in range(lanes):
                                if d.kind in PER_ROW:
                                    i, e = (r % (lanes // 2), r // (lanes // 2)) if pair_groups == 2 else (r, 0)
                                    x_in, group = (xt + i) * d.stride_width + kx - d.pad_left, go + e
                                    weight_rows.append((go + e) % lanes)
                                else:
                                    x_in, group = xt * d.stride_width + kx - d.pad_left, gi if conv else go
                                    weight_rows.append(r)
                                valid = 0 <= y_in < d.in_height and 0 <= x_in < d.in_width and group < gin
                                bank, address = activation_location(y_in, x_in, group, base=d.in_base,
                                                                    pitch=d.in_row_pitch, width=d.in_width,
                                                                    config=config)
                                rows.append((int(bank), int(address), valid))
                            if conv:
                                weight = d.weight_base + ((go * d.kernel_height + ky) * d.kernel_width + kx) * gin + gi
                                macs = lanes_of(go, gout, d.out_channels) * lanes_of(gi, gin, d.in_channels)
                            elif d.kind in PER_ROW:
                                weight = d.weight_base + (go // lanes) * kernel + ky * d.kernel_width + kx
                                weight = weight if d.kind == "depthwise" else None
                                macs = pixels * sum(lanes_of(go + e, gout, d.out_channels) for e in range(pair_groups))
                            else:
                                weight, macs = None, lanes_of(go, gout, d.out_channels)
                            first = ky == 0 and kx == 0 and gi == 0
                            last = ky == d.kernel_height - 1 and kx == d.kernel_width - 1 and gi == inner - 1
                            yield Step(rows=tuple(rows), weight_address=weight, weight_rows=tuple(weight_rows),
                                       first=first, last=last, macs=macs, out=out if last else None)


def issue_cycles(descriptor, config):
    """Cycles the sequencer spends issuing steps: one per step, plus bubbles that space short depthwise passes.

    An add issues two steps per output word (:func:`add_steps`).

    A depthwise pass leaves the MAC array as ``lanes`` words, one per cycle, so a pass may end only ``lanes``
    cycles after the previous one: a pass shorter than ``lanes`` steps (a kernel under ``lanes`` taps) is followed by
    ``lanes - KH*KW`` bubbles, except the last.
    """
    d, lanes = descriptor, config.lanes
    kernel = d.kernel_height * d.kernel_width
    gin, gout = groups(d.in_channels, config), groups(d.out_channels, config)
    if d.kind == "add":
        return 2 * d.in_height * d.in_width * gin
    if d.kind in PER_ROW:
        tile = pixels_per_pass(d, config)
        passes = d.out_height * -(-d.out_width // tile) * -(-gout // groups_per_pass(d))
        return passes * kernel + (passes - 1) * max(0, lanes - kernel)
    inner = gin if d.kind in ("conv", "fully_connected") else 1
    return d.out_height * d.out_width * gout * kernel * inner


def layer_cycles(descriptor, config):
    """The engine's ``cycles`` counter after running ``descriptor`` (the cycles it is busy).

    ``SEQUENCER_LATENCY + issue_cycles + FETCH_LATENCY + (result latency of the last pass) + WRITE_LATENCY``; the last
    pass's result latency is ``REDUCE_LATENCY + log2(lanes)``, or for depthwise ``DRAIN_LATENCY`` plus the index of
    its last word that lies inside the output (words of pixels beyond the output width are not written). An add:
    ``ADD_SEQUENCER_LATENCY + issue_cycles + FETCH_LATENCY + ADD_WRITE_LATENCY``.
    """
    check_descriptor(descriptor, config)
    d, lanes = descriptor, config.lanes
    if d.kind == "add":
        return ADD_SEQUENCER_LATENCY + issue_cycles(d, config) + FETCH_LATENCY + ADD_WRITE_LATENCY
    if d.kind in PER_ROW:
        tile, pair_groups = pixels_per_pass(d, config), groups_per_pass(d)
        pixels = d.out_width - (-(-d.out_width // tile) - 1) * tile
        gout = groups(d.out_channels, config)
        last_go = (-(-gout // pair_groups) - 1) * pair_groups
        last_word = pixels - 1 + (lanes // 2 if pair_groups == 2 and last_go + 1 < gout else 0)
        result = DRAIN_LATENCY + last_word
    else:
        result = REDUCE_LATENCY + config.lane_bits
    return SEQUENCER_LATENCY + issue_cycles(d, config) + FETCH_LATENCY + result + WRITE_LATENCY
