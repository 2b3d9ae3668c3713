"""The layer sequencer: from a layer descriptor, one MAC-array step per cycle with every memory address it needs.

``golden/sequencer.py`` is its model (the same loop nest and the same step fields) and its cycle count. After
``start`` it walks, for one layer::

    for y in output rows:
      for x in output columns, P at a time       (P = 1; depthwise: lanes, or lanes/2 at stride 2)
        for go in output channel groups, E at a time   (E = 1; depthwise stride 2: 2)
          for ky, kx in the kernel window:
            for gi in input channel groups        (regular convolution and fully connected only)
              one step

A *pass* is the inner loops for one ``(y, x, go)``: the MAC array accumulates it and emits its words. Regular
convolutions read one activation word (pixel ``(y*sh + ky - top, x*sw + kx - left)``, group ``gi``) and one weight word
per step, broadcast the activation over the array's rows and reduce its columns. Depthwise steps give every MAC row
its own pixel: at stride 1 the ``lanes`` pixels ``x .. x+lanes-1`` of group ``go``; at stride 2 the ``lanes/2`` pixels
``x .. x+lanes/2-1`` of groups ``go`` and ``go+1`` (rows ``e*lanes/2 + i``). The activation banks are skewed
(bank = (x + group) mod lanes, ``golden.layouts``) so that these ``lanes`` words sit in ``lanes`` different banks; each
bank gets its own address and each row the bank to take its word from. Taps outside the input are not read: the
step marks the row invalid and the engine feeds 0 to its MACs. A global average pool is a reduced pass per channel
group over the whole input (the engine gives it diagonal weights). A max pool is walked exactly as a depthwise layer
(its weight addresses unused); its passes carry the ``max`` flag, with which the MAC array keeps running maxima.

Pipeline, one adder deep per stage (for Fmax), one builder method per stage: setup (the descriptor latched, then
the layer's constants over two cycles); loop counters that count down (loop ends are zero tests) beside the addresses
they keep by additions only; then the per-step values; then per-row columns and validity; then the per-bank
addresses. A step leaves :attr:`Sequencer.latency` cycles after ``start``, the sum of the stages' latencies.
"""

import types

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.descriptor import KINDS, descriptor_fields, weight_address_bits
from golden.layouts import address_bits
from hdl.fanout import registered_copies

__all__ = ["descriptor_layout", "pass_layout", "step_layout", "Sequencer"]

#: Descriptor bits latched by one copy of ``busy`` (:meth:`Sequencer.elaborate`).
_LATCH_SHARE = 64
#: Shares of the loop registers, each loaded and stepped by its own copy of ``load`` and ``advance``
#: (:meth:`Sequencer._loops`).
_LOOP_SHARES = 4


def descriptor_layout(config):
    """The layer descriptor as a struct, field for field :func:`golden.descriptor.descriptor_fields`."""
    return data.StructLayout({name: signed(width) if is_signed else unsigned(width)
                              for name, width, is_signed in descriptor_fields(config)})


def pass_layout(config):
    """What the result words of a pass need to be written: output addresses, bank, validity, bias word, mode."""
    act = address_bits(config.act_depth)
    return data.StructLayout({
        "address": unsigned(act),        # word of group go (all pixels of a pass share it)
        "address_next": unsigned(act),   # word of group go + 1 (depthwise stride 2)
        "bank": unsigned(max(1, config.lane_bits)),   # bank of pixel x, group go
        "pixels": unsigned(config.lane_bits + 1),     # output pixels of the pass inside the output width
        "pair": 1,                       # group go + 1 exists (depthwise stride 2)
        "bias_address": unsigned(address_bits(config.bias_depth)),
        "depthwise": 1,
        "stride2": 1,
        "pool": 1,
        "max": 1,                        # max pooling: the MAC array keeps running maxima
    })


def step_layout(config):
    """One step of the MAC array: addresses per bank, bank and validity per row, weight word and row selection."""
    lanes, lane_bits = config.lanes, max(1, config.lane_bits)
    return data.StructLayout({
        "act_address": data.ArrayLayout(unsigned(address_bits(config.act_depth)), lanes),  # per bank
        "act_bank": data.ArrayLayout(unsigned(lane_bits), lanes),    # per row: the bank its word comes from
        "act_valid": data.ArrayLayout(unsigned(1), lanes),           # per row: the tap lies inside the input
        "weight_address": unsigned(weight_address_bits(config)),   # int8 word or code word (weight_format)
        "weight_row": data.ArrayLayout(unsigned(lane_bits), lanes),  # per MAC row: the weight word row it uses
        "first": 1,
        "last": 1,
        "macs": unsigned(2 * config.lane_bits + 1),                  # layer MACs done by this step
        "out": pass_layout(config),
    })


class Sequencer(wiring.Component):
    """Walks one layer after ``start``: one :func:`step_layout` step per cycle, bubbles only between short passes.

    Parameters
    ----------
    config : NPUConfig
        ``lanes`` (a power of two, at least 2) and the memory depths and descriptor widths.

    Members
    -------
    descriptor : ``In(descriptor_layout(config))``
        The layer; sampled with ``start``.
    start : ``In(1)``
        Starts the layer when the sequencer is idle.
    busy : ``Out(1)``
        Steps remain to be issued.
    step : ``Out(stream.Signature(step_layout(config), always_ready=True))``
        The steps.
    """

    #: Cycles from ``start`` to the first step's loop indices (:meth:`_setup`): descriptor latched, then two setup
    #: cycles of derived constants; the loop counters load in the second.
    SETUP_LATENCY = 3
    #: Stage 1 (:meth:`_step_stage`): per-step values.
    STEP_LATENCY = 1
    #: Stage 2 (:meth:`_row_stage`): per-row validity and banks.
    ROW_LATENCY = 1
    #: Stage 3 (:meth:`_address_stage`): per-bank addresses.
    ADDRESS_LATENCY = 1
    #: Cycles from ``start`` to the first step; consecutive steps follow each cycle
    #: (``golden.sequencer.SEQUENCER_LATENCY``).
    latency = SETUP_LATENCY + STEP_LATENCY + ROW_LATENCY + ADDRESS_LATENCY

    def __init__(self, config):
        self._config = check_config(config)
        if config.lanes < 2:
            raise ValueError(f"the sequencer needs at least 2 lanes, not {config.lanes!r}")
        super().__init__({
            "descriptor": In(descriptor_layout(config)),
            "start": In(1),
            "busy": Out(1),
            "step": Out(stream.Signature(step_layout(config), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        launch = self.start & ~self.busy
        layer = self._setup(m, launch)                               # SETUP_LATENCY
        loop = self._loops(m, layer)                                 # loaded in the last setup cycle
        s1, s1_valid = self._step_stage(m, layer, loop)              # STEP_LATENCY
        s2, s2_valid = self._row_stage(m, layer, s1, s1_valid)       # ROW_LATENCY
        self._address_stage(m, layer, s2, s2_valid)                  # ADDRESS_LATENCY
        # busy = setup != 0 | running | s1_valid | s2_valid | step.valid, registered (computed from what they become)
        busy = launch | (layer.setup != 0) | loop.running | s1_valid | s2_valid
        m.d.sync += self.busy.eq(busy)
        # The descriptor is latched in every idle cycle (the latch of the launch cycle is the one that stays), each
        # share of its bits enabled by its own registered copy of busy, so that launch, a gate behind the controller's
        # state, drives the setup phase alone (at 8 lanes it drove the whole latch: 130 to 360 loads).
        d = layer.descriptor.as_value()
        for index, copy in enumerate(registered_copies(m, busy, -(-len(d) // _LATCH_SHARE), "latch_busy")):
            bits = slice(index * _LATCH_SHARE, (index + 1) * _LATCH_SHARE)
            with m.If(~copy):
                m.d.sync += d[bits].eq(self.descriptor.as_value()[bits])
        return m

    def _setup(self, m, launch):
        """The descriptor latched at ``launch``, then the layer's constants derived over two cycles, one adder deep.

        :attr:`SETUP_LATENCY` cycles: the latch, phase 1 (from the latched descriptor), phase 2 (from phase 1; the
        loop counters load in the same cycle, :meth:`_loops`). Returns a namespace of the latched ``descriptor``, the
        ``setup`` phase (0 when idle), ``load`` (high in phase 2: registered copies, one per share of the loops'
        registers), the constants, and ``single`` / ``double``: per loop, whether it has one / two iterations.
        """
        config = self._config
        lanes, lane_bits = config.lanes, config.lane_bits
        dim, channels = config.dim_bits, config.channel_bits
        act = address_bits(config.act_depth)
        count = _lane_count(config)
        d = Signal(self.descriptor.shape(), name="descriptor_q")     # latched by elaborate while idle
        setup = Signal(2, name="setup")               # 1: descriptor latched; 2: first derivations done
        with m.If(launch):
            m.d.sync += setup.eq(1)
        with m.Elif(setup == 1):
            m.d.sync += setup.eq(2)
        with m.Elif(setup == 2):
            m.d.sync += setup.eq(0)
        load = registered_copies(m, setup == 1, _LOOP_SHARES, "load")   # one per share of the loops' registers

        def derived(shape, value, name, phase):
            reg = Signal(shape, name=name)
            with m.If(setup == phase):
                m.d.sync += reg.eq(value)
            return reg

        def groups_of(count):
            return (count + (lanes - 1)) >> lane_bits

        def last_lanes(count):
            return ((count - 1) & (lanes - 1)) + 1

        # phase 1: from the latched descriptor
        is_dw = (d.kind == KINDS["depthwise"]) | (d.kind == KINDS["max_pool"])    # walked per row alike
        is_pool = d.kind == KINDS["average_pool"]
        is_conv = ~is_dw & ~is_pool
        is_s2 = is_dw & (d.stride_width == 2)
        conv = derived(1, is_conv, "conv", 1)
        dw = derived(1, is_dw, "dw", 1)
        pool = derived(1, is_pool, "pool", 1)
        maximum = derived(1, d.kind == KINDS["max_pool"], "maximum", 1)
        s2 = derived(1, is_s2, "s2", 1)
        in_groups = derived(unsigned(channels), groups_of(d.in_channels), "in_groups", 1)
        out_groups = derived(unsigned(channels), groups_of(d.out_channels), "out_groups", 1)
        cin_last = derived(count, last_lanes(d.in_channels), "cin_last", 1)
        cout_last = derived(count, last_lanes(d.out_channels), "cout_last", 1)
        igp = derived(unsigned(act), groups_of(d.in_width), "igp", 1)
        ogp = derived(unsigned(act), groups_of(d.out_width), "ogp", 1)
        row_step_now = Mux(d.stride_height == 2, d.in_row_pitch << 1, d.in_row_pitch)
        row_step = derived(unsigned(act), row_step_now, "row_step", 1)
        second_base = derived(unsigned(act), (d.in_base + row_step_now)[:act], "second_base", 1)  # next row's in_base
        tile = derived(count, Mux(is_dw, Mux(is_s2, lanes // 2, lanes), 1), "tile", 1)
        tile_step = derived(_coordinate(config), Mux(is_dw, lanes, d.stride_width), "tile_step", 1)
        pass_groups = derived(unsigned(2), Mux(is_s2, 2, 1), "pass_groups", 1)
        # Passes over the output groups minus one, one subtraction deep: ceil(C / n) - 1 = floor((C - 1) / n), with
        # n = lanes output channels per pass, or 2 * lanes at depthwise stride 2 (C >= 1: the controller's checks).
        go_reload = derived(unsigned(channels), Mux(is_s2, (d.out_channels - 1) >> (lane_bits + 1),
                                                    (d.out_channels - 1) >> lane_bits), "go_reload", 1)
        tiles = derived(unsigned(dim + 1), Mux(is_dw, Mux(is_s2, (d.out_width + (lanes // 2 - 1)) >> (lane_bits - 1),
                                                               groups_of(d.out_width)), d.out_width), "tiles", 1)
        # Output pixels of the last pass of a row: ((Wo - 1) mod P) + 1.
        pixels_last = derived(count, Mux(is_dw, ((d.out_width - 1) & Mux(is_s2, lanes // 2 - 1, lanes - 1)) + 1, 1),
                              "pixels_last", 1)
        # A depthwise pass leaves the MAC array as lanes words, one per cycle: passes of fewer than lanes steps are
        # followed by lanes - KH*KW bubbles.
        small = derived(1, is_dw & (d.kernel_height < lanes) & (d.kernel_width < lanes), "small", 1)
        # KH * KW of the low bits by shifts and adds: yosys maps a `*` onto a combinational MULT18X18D (3.93 ns).
        window_now = sum(Mux(d.kernel_width[bit], d.kernel_height[:lane_bits] << bit, 0) for bit in range(lane_bits))
        window = derived(unsigned(2 * lane_bits), window_now, "window", 1)
        spaced = small & (window < lanes)
        bubbles = derived(range(lanes), Mux(spaced, lanes - window, 0), "bubbles", 2)
        no_bubbles = derived(1, ~spaced, "no_bubbles", 2)
        y_start = derived(_coordinate(config), -d.pad_top, "y_start", 1)
        x_start = derived(_coordinate(config), -d.pad_left, "x_start", 1)
        top_rows = derived(unsigned(act), (Mux(d.pad_top[0], d.in_row_pitch, 0)
                                           + Mux(d.pad_top[1], d.in_row_pitch << 1, 0))[:act], "top_rows", 1)
        # phase 2: loop lengths minus one (the loops count down to 0, so ends are zero tests) and the first row
        gout_odd = derived(1, out_groups[0], "gout_odd", 2)
        igp_pass = derived(unsigned(act), Mux(s2, igp << 1, igp), "igp_pass", 2)
        ogp_pass = derived(unsigned(act), Mux(s2, ogp << 1, ogp), "ogp_pass", 2)
        gi_reload = derived(unsigned(channels), Mux(conv, in_groups - 1, 0), "gi_reload", 2)
        kx_reload = derived(unsigned(dim), d.kernel_width - 1, "kx_reload", 2)
        ky_reload = derived(unsigned(dim), d.kernel_height - 1, "ky_reload", 2)
        xt_reload = derived(unsigned(dim), tiles - 1, "xt_reload", 2)
        # Loops of one iteration (their end flag is set from the start) and of two (their "one left" flag is), in
        # phase 1 from the descriptor (ceil(count / per) is 1 or 2), so that the loops load them without a compare.
        def iterations(count, per):
            return count <= per, (count > per) & (count <= 2 * per)

        tiles_of = {per: iterations(d.out_width, per) for per in (1, lanes // 2, lanes)}
        groups_of_out = {per: iterations(d.out_channels, per) for per in (lanes, 2 * lanes)}
        gi_loop = iterations(d.in_channels, lanes)
        loop_lengths = {
            "gi": (~is_conv | gi_loop[0], is_conv & gi_loop[1]),
            "kx": iterations(d.kernel_width, 1), "ky": iterations(d.kernel_height, 1),
            "go": tuple(Mux(is_s2, s2_flag, flag) for flag, s2_flag in zip(groups_of_out[lanes],
                                                                           groups_of_out[2 * lanes])),
            "xt": tuple(Mux(is_dw, Mux(is_s2, s2_flag, dw_flag), flag) for flag, s2_flag, dw_flag in
                        zip(tiles_of[1], tiles_of[lanes // 2], tiles_of[lanes])),
            "y": iterations(d.out_height, 1),
        }
        single = {name: derived(1, one, f"{name}_single", 1) for name, (one, _) in loop_lengths.items()}
        double = {name: derived(1, two, f"{name}_double", 1) for name, (_, two) in loop_lengths.items()}
        return types.SimpleNamespace(
            descriptor=d, setup=setup, load=load, y_start=y_start, x_start=x_start, conv=conv, dw=dw, pool=pool,
            maximum=maximum, s2=s2, in_groups=in_groups, out_groups=out_groups, cin_last=cin_last, cout_last=cout_last,
            igp=igp, ogp=ogp, row_step=row_step, second_base=second_base, tile=tile, tile_step=tile_step,
            pass_groups=pass_groups, tiles=tiles, pixels_last=pixels_last, bubbles=bubbles, no_bubbles=no_bubbles,
            top_rows=top_rows, gout_odd=gout_odd, igp_pass=igp_pass, ogp_pass=ogp_pass, gi_reload=gi_reload,
            kx_reload=kx_reload, ky_reload=ky_reload, go_reload=go_reload, xt_reload=xt_reload, single=single,
            double=double)

    def _loops(self, m, layer):
        """The loop counters and the addresses they keep by additions only: the indices of the step being issued.

        No latency of their own: they load in the last setup cycle, and while ``advance`` is high they hold a step,
        which moves on each cycle (bubbles: ``hold`` cycles after a short depthwise pass). Each loop keeps, beside
        its down-counter, registered flags computed a step ahead: ``end`` (counter 0), ``one`` (counter 1) and
        ``wrap`` (it and every loop inside it at their last iteration), so that whether a loop moves on is one
        registered flag, not a chain of end flags (for Fmax); ``advance`` is a register too. Returns a namespace of
        the counters, ``pass_end`` (the step ends its pass), ``advance`` and ``running``.
        """
        config = self._config
        lanes, dim, channels = config.lanes, config.dim_bits, config.channel_bits
        act, wbits = address_bits(config.act_depth), weight_address_bits(config)
        coord = _coordinate(config)
        d = layer.descriptor
        running = Signal()
        xt = Signal(unsigned(dim), name="xt")
        go, gi = Signal(unsigned(channels), name="go"), Signal(unsigned(channels), name="gi")
        go_low_next = Signal(unsigned(config.lane_bits), name="go_low_next")    # (go + pass_groups) mod lanes
        first = Signal(name="first")
        # the first input row and column of the output row and tile, the tap's, and the next output row's and tile's
        y_in0, y_in, y_next, x_in0, x_in, x_next = (Signal(coord, name=n)
                                                    for n in ("y_in0", "y_in", "y_next", "x_in0", "x_in", "x_next"))
        x_second = layer.x_start + layer.tile_step
        row0, row, row_next, gi_off, go_in_off, go_out_off, out_row = (
            Signal(unsigned(act), name=n)
            for n in ("row0", "row", "row_next", "gi_off", "go_in_off", "go_out_off", "out_row"))
        waddr, wblock = Signal(unsigned(wbits), name="waddr"), Signal(unsigned(wbits), name="wblock")
        hold = Signal(range(lanes), name="hold")     # bubbles left before the next pass

        # Inner to outer. left: iterations left after this one; the outermost loop (y) ends the layer, not reloads.
        names = ("gi", "kx", "ky", "go", "xt", "y")
        left = {n: Signal(unsigned(channels if n in ("gi", "go") else dim), name=f"{n}_left") for n in names}
        reload = {"gi": layer.gi_reload, "kx": layer.kx_reload, "ky": layer.ky_reload, "go": layer.go_reload,
                  "xt": layer.xt_reload}
        end = {n: Signal(name=f"end_{n}") for n in names}
        one = {n: Signal(name=f"one_{n}") for n in names}
        wrap = {"gi": end["gi"], **{n: Signal(name=f"wrap_{n}") for n in names[1:]}}
        # carry: the loop moves on with the next advance (the loops inside it wrap); count: it counts down
        carry = {"gi": Const(1), **{n: wrap[inner] for inner, n in zip(names, names[1:])}}
        count = {"gi": ~end["gi"], **{n: Signal(name=f"count_{n}") for n in names[1:]}}

        # The registers load and step in _LOOP_SHARES shares, each enabled by its own copy of load and of advance
        # (at 8 lanes one load and one advance register had over 200 loads each): the loop control, the rows, the
        # columns and output groups, the input groups and weights.
        first_row = (d.in_base - layer.top_rows)[:act]
        with m.If(layer.load[1]):
            m.d.sync += [y_in0.eq(layer.y_start), y_in.eq(layer.y_start), y_next.eq(layer.y_start + d.stride_height),
                         row0.eq(first_row), row.eq(first_row),
                         row_next.eq((layer.second_base - layer.top_rows)[:act]), out_row.eq(d.out_base)]
        with m.If(layer.load[2]):
            m.d.sync += [xt.eq(0), x_in0.eq(layer.x_start), x_in.eq(layer.x_start), x_next.eq(x_second),
                         go.eq(0), go_low_next.eq(layer.pass_groups), go_in_off.eq(0), go_out_off.eq(0)]
        with m.If(layer.load[3]):
            m.d.sync += [gi.eq(0), gi_off.eq(0), waddr.eq(d.weight_base), wblock.eq(d.weight_base)]
        with m.If(layer.load[0]):
            m.d.sync += [
                running.eq(1), first.eq(1), hold.eq(0),
                left["gi"].eq(Mux(layer.conv, layer.in_groups - 1, 0)), left["kx"].eq(d.kernel_width - 1),
                left["ky"].eq(d.kernel_height - 1), left["go"].eq(layer.go_reload),
                left["xt"].eq(layer.tiles - 1), left["y"].eq(d.out_height - 1),
            ]
            for i, n in enumerate(names):
                m.d.sync += [end[n].eq(layer.single[n]), one[n].eq(layer.double[n])]
                if i:
                    m.d.sync += [wrap[n].eq(Cat(layer.single[inner] for inner in names[:i + 1]).all()),
                                 count[n].eq(Cat(layer.single[inner] for inner in names[:i]).all()
                                             & ~layer.single[n])]

        pass_end = wrap["ky"]
        # advance = running & (hold == 0), registered: computed a cycle ahead from what running and hold become;
        # copies for the shares
        advance = Signal()
        advance_next = Mux(layer.load[0], 1, Mux(advance, ~wrap["y"] & (~pass_end | layer.no_bubbles),
                                                 Mux(running, hold == 1, advance)))
        m.d.sync += advance.eq(advance_next)
        advances = registered_copies(m, advance_next, _LOOP_SHARES, "advance")
        with m.If(advance & pass_end):
            m.d.sync += hold.eq(layer.bubbles)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)

        with m.If(advances[0]):
            m.d.sync += first.eq(pass_end)
            # The flags after this step: a wrapping loop reloads, a carried one counts down, the others stay.
            end_next = {}
            for i, n in enumerate(names):
                counted = Mux(carry[n], one[n], end[n])
                end_next[n] = counted if n == "y" else Mux(wrap[n], layer.single[n], counted)
                counted_one = Mux(carry[n], left[n] == 2, one[n])
                m.d.sync += [end[n].eq(end_next[n]),
                             one[n].eq(counted_one if n == "y" else Mux(wrap[n], layer.double[n], counted_one))]
                if i:
                    m.d.sync += [wrap[n].eq(Cat(end_next[inner] for inner in names[:i + 1]).all()),
                                 count[n].eq(Cat(end_next[inner] for inner in names[:i]).all() & ~end_next[n])]
            for n in names:
                with m.If(count[n]):
                    m.d.sync += left[n].eq(left[n] - 1)
                if n != "y":
                    with m.If(wrap[n]):
                        m.d.sync += left[n].eq(reload[n])
            with m.If(wrap["y"]):
                m.d.sync += running.eq(0)
        # The indices and addresses: a counting loop steps them, a wrapping one returns them to its start; the
        # loops' conditions exclude each other, and the increments (carry chains) come last, nearest the registers.
        with m.If(advances[1]):
            with m.If(count["y"]):
                m.d.sync += [y_in0.eq(y_next), y_in.eq(y_next), y_next.eq(y_next + d.stride_height),
                             row0.eq(row_next), row.eq(row_next), row_next.eq(row_next + layer.row_step),
                             out_row.eq(out_row + d.out_row_pitch)]
            with m.If(wrap["ky"] & ~count["y"]):
                m.d.sync += [y_in.eq(y_in0), row.eq(row0)]
            with m.If(count["ky"]):
                m.d.sync += [y_in.eq(y_in + 1), row.eq(row + d.in_row_pitch)]
        with m.If(advances[2]):
            with m.If(wrap["xt"]):
                m.d.sync += [xt.eq(0), x_in0.eq(layer.x_start), x_in.eq(layer.x_start), x_next.eq(x_second)]
            with m.If(count["xt"]):
                m.d.sync += [xt.eq(xt + layer.tile), x_in0.eq(x_next), x_in.eq(x_next),
                             x_next.eq(x_next + layer.tile_step)]
            with m.If(wrap["go"]):
                m.d.sync += [go.eq(0), go_low_next.eq(layer.pass_groups), go_in_off.eq(0), go_out_off.eq(0)]
            with m.If(count["go"]):
                m.d.sync += [go.eq(go + layer.pass_groups), go_low_next.eq(go_low_next + layer.pass_groups),
                             go_in_off.eq(go_in_off + layer.igp_pass),
                             go_out_off.eq(go_out_off + layer.ogp_pass)]
            with m.If(wrap["kx"] & ~wrap["go"]):
                m.d.sync += x_in.eq(x_in0)
            with m.If(count["kx"]):
                m.d.sync += x_in.eq(x_in + 1)
        with m.If(advances[3]):
            with m.If(count["gi"]):
                m.d.sync += [gi.eq(gi + 1), gi_off.eq(gi_off + layer.igp)]
            with m.Else():
                m.d.sync += [gi.eq(0), gi_off.eq(0)]
            # Weight words: consecutive within a pass; a regular convolution's passes for one pixel follow each
            # other, a depthwise pass returns to its block of lanes*lanes channels unless the next group leaves it.
            with m.If(wrap["go"]):
                m.d.sync += [waddr.eq(d.weight_base), wblock.eq(d.weight_base)]
            with m.Elif(pass_end & layer.dw & (go_low_next != 0)):
                m.d.sync += waddr.eq(wblock)
            with m.Else():
                m.d.sync += waddr.eq(waddr + 1)
                with m.If(pass_end):
                    m.d.sync += wblock.eq(waddr + 1)
        return types.SimpleNamespace(
            running=running, advance=advance, pass_end=pass_end, first=first, xt=xt, go=go, gi=gi, end_gi=end["gi"],
            end_go=end["go"], end_xt=end["xt"], y_in=y_in, x_in=x_in, row=row, gi_off=gi_off, go_in_off=go_in_off,
            go_out_off=go_out_off, out_row=out_row, waddr=waddr)

    def _step_stage(self, m, layer, loop):
        """Stage 1, :attr:`STEP_LATENCY` cycle: the per-step values, one adder deep. Returns ``(s1, s1_valid)``."""
        config = self._config
        lanes, lane_bits = config.lanes, config.lane_bits
        act, wbits = address_bits(config.act_depth), weight_address_bits(config)
        coord, count = _coordinate(config), _lane_count(config)
        d = layer.descriptor
        dw, conv, s2 = layer.dw, layer.conv, layer.s2
        # The pass's output channel groups: go (all lanes unless it is the last group) and, at depthwise stride 2,
        # go + 1 (absent when the last pass has an odd group alone).
        last_alone = loop.end_go & (~s2 | layer.gout_odd)
        rows_go = Mux(last_alone, layer.cout_last, lanes)
        rows_go1 = Mux(loop.end_go, Mux(layer.gout_odd, 0, layer.cout_last), lanes)
        pixels = Mux(loop.end_xt, layer.pixels_last, layer.tile)
        s1 = Signal(data.StructLayout({
            "x_in": coord, "x_row": data.ArrayLayout(coord, lanes), "y_ok": 1, "base": unsigned(lane_bits),
            "row": unsigned(act), "pair_in": 1,
            "weight_address": unsigned(wbits), "weight_row": unsigned(lane_bits), "first": 1, "last": 1,
            "factor_a": count, "factor_b": unsigned(lane_bits + 2), "out_row": unsigned(act),
            "xt_word": unsigned(config.dim_bits), "out": pass_layout(config),
        }), name="s1")
        s1_valid = Signal()
        m.d.sync += s1_valid.eq(loop.advance)
        half = lanes // 2
        x_in, go = loop.x_in, loop.go
        for r in range(lanes):     # each MAC row's input column: x_in + r (stride 1), x_in + 2i (stride 2, row e*L/2+i)
            m.d.sync += s1.x_row[r].eq(x_in + Mux(dw, Mux(s2, (r % half) * 2, r), 0))
        m.d.sync += [
            s1.x_in.eq(x_in),
            s1.y_ok.eq((loop.y_in >= 0) & (loop.y_in < d.in_height)),
            s1.base.eq((x_in + Mux(conv, loop.gi, go))[:lane_bits]),
            s1.row.eq(loop.row + Mux(conv, loop.gi_off, loop.go_in_off)),
            s1.pair_in.eq(~last_alone),
            s1.weight_address.eq(loop.waddr),
            s1.weight_row.eq(go[:lane_bits]),
            s1.first.eq(loop.first),
            s1.last.eq(loop.pass_end),
            # MACs of the step = factor_a * factor_b (multiplied in stage 2)
            s1.factor_a.eq(Mux(dw, pixels, rows_go)),
            s1.factor_b.eq(Mux(conv, Mux(loop.end_gi, layer.cin_last, lanes),
                               Mux(layer.pool, 1, rows_go + Mux(s2, rows_go1, 0)))),
            s1.out_row.eq(loop.out_row + loop.go_out_off),
            s1.xt_word.eq(loop.xt >> lane_bits),
            s1.out.bank.eq((loop.xt + go)[:lane_bits]),
            s1.out.pixels.eq(pixels),
            s1.out.pair.eq(~last_alone),
            s1.out.bias_address.eq(d.bias_base + go),
            s1.out.depthwise.eq(dw),
            s1.out.stride2.eq(s2),
            s1.out.pool.eq(layer.pool),
            s1.out.max.eq(layer.maximum),
        ]
        return s1, s1_valid

    def _row_stage(self, m, layer, s1, s1_valid):
        """Stage 2, :attr:`ROW_LATENCY` cycle: per-row validity and banks, word addresses without the column carry.

        Returns ``(s2, s2_valid)``.
        """
        config = self._config
        lanes, lane_bits = config.lanes, config.lane_bits
        act, wbits = address_bits(config.act_depth), weight_address_bits(config)
        dw, s2 = layer.dw, layer.s2
        s2_ = Signal(data.StructLayout({
            "row": unsigned(act), "base": unsigned(lane_bits), "carry": data.ArrayLayout(1, lanes),
            "act_valid": data.ArrayLayout(1, lanes), "act_bank": data.ArrayLayout(unsigned(lane_bits), lanes),
            "weight_address": unsigned(wbits), "weight_row": data.ArrayLayout(unsigned(lane_bits), lanes),
            "first": 1, "last": 1, "macs_low": unsigned(2 * lane_bits + 1), "macs_high": unsigned(2 * lane_bits + 1),
            "out": pass_layout(config),
        }), name="s2")
        s2_valid = Signal()
        m.d.sync += s2_valid.eq(s1_valid)
        x_low = s1.x_in[:lane_bits]
        m.d.sync += [
            s2_.row.eq(s1.row + (s1.x_in >> lane_bits)),
            s2_.base.eq(s1.base),
            s2_.weight_address.eq(s1.weight_address),
            s2_.first.eq(s1.first), s2_.last.eq(s1.last),
            # factor_a * factor_b by shift and add, in two halves summed in stage 3 (a multiplier here becomes a
            # DSP used without its registers: slow)
            s2_.macs_low.eq(sum(Mux(s1.factor_b[i], s1.factor_a << i, 0) for i in range(2))),
            s2_.macs_high.eq(sum(Mux(s1.factor_b[i], s1.factor_a << i, 0) for i in range(2, len(s1.factor_b)))),
            s2_.out.eq(s1.out),
            s2_.out.address.eq(s1.out_row + s1.xt_word),
        ]
        for bank in range(lanes):
            # Bank b holds row offset d = (b - base) mod lanes; its column x_in + (d, or d & ~1 at stride 2) crosses
            # into the next word of lanes pixels when the low bits overflow.
            offset = Signal(unsigned(lane_bits), name=f"offset{bank}")
            m.d.comb += offset.eq(bank - s1.base)
            dx = Mux(dw, Mux(s2, offset & ~1, offset), 0)
            m.d.sync += s2_.carry[bank].eq((x_low + dx) >= lanes)
        half = lanes // 2
        for r in range(lanes):
            dx_s2, dg_s2 = (r % half) * 2, r // half
            dx = Mux(dw, Mux(s2, dx_s2, r), 0)
            dg = Mux(s2, dg_s2, 0)
            x = s1.x_row[r]
            m.d.sync += [
                s2_.act_valid[r].eq(s1.y_ok & (x >= 0) & (x < layer.descriptor.in_width)
                                    & ((dg == 0) | s1.pair_in)),
                s2_.act_bank[r].eq((s1.base + dx + dg)[:lane_bits]),
                s2_.weight_row[r].eq(Mux(dw, s1.weight_row + dg, Const(r, lane_bits))),
            ]
        return s2_, s2_valid

    def _address_stage(self, m, layer, s2_, s2_valid):
        """Stage 3, :attr:`ADDRESS_LATENCY` cycle: the per-bank addresses, into the ``step`` output registers."""
        config = self._config
        lanes, lane_bits = config.lanes, config.lane_bits
        act = address_bits(config.act_depth)
        step = self.step.payload
        m.d.sync += self.step.valid.eq(s2_valid)
        m.d.sync += [
            step.weight_address.eq(s2_.weight_address), step.first.eq(s2_.first), step.last.eq(s2_.last),
            step.macs.eq(s2_.macs_low + s2_.macs_high), step.out.eq(s2_.out),
            step.out.address_next.eq(s2_.out.address + layer.ogp),
            step.act_valid.eq(s2_.act_valid), step.act_bank.eq(s2_.act_bank), step.weight_row.eq(s2_.weight_row),
        ]
        for bank in range(lanes):
            offset = Signal(unsigned(lane_bits), name=f"offset{bank}_3")
            m.d.comb += offset.eq(bank - s2_.base)
            second = layer.s2 & offset[0]
            m.d.sync += step.act_address[bank].eq((s2_.row + Mux(second, layer.igp, 0) + s2_.carry[bank])[:act])


def _coordinate(config):
    """Shape of an input row or column: signed, for taps in the padding and past the input."""
    return signed(config.dim_bits + 3)


def _lane_count(config):
    """Shape of a count of lanes or pixels, up to ``lanes``, with a bit to spare."""
    return unsigned(config.lane_bits + 2)
