"""The residual add's blocks: :class:`AddSequencer` walks the tensors, :class:`AddUnit` rescales and sums the inputs.

``golden/add.py`` is their model: the engine (``hdl/engine.py``) runs an add descriptor as ``golden.engine.run_layer``
does, ``golden.add.rescaled_sum`` here, then the engine's requantizer (``hdl/requant.py``) with the output rescaling,
channel shift 0, output zero point and clamp — exactly golden's final MBQM, zero point and clamp (docs/arithmetic.md,
"Residual Add").

The activation layout puts channel group ``g`` of pixel ``(y, x)`` of both inputs and of the output in one bank,
``(x + g) mod lanes``, so a word of input 1 and the matching word of input 2 are read in consecutive cycles from the
same bank: one output word every two cycles (MobileNetV2 224²'s 10 adds: 1.07 % of its cycles,
``python tools/bench_engine.py --no-sim``).
Since the words alternate, one set of rescaling lanes serves both inputs. Per lane (``AddUnit``)::

    1     c = x - zp_i (9 bits), m_i                       (the bank's word selected in front; fabric registers)
    2-5   c * m_i as two partial products (9 x 15, 9 x 16) (registered multipliers, their products copied into fabric
                                                           registers: SRDHM of (c << 20) only needs c * m_i, two DSPs,
                                                           not four; hdl.dsp.PRODUCT_LATENCY)
    6-9   h = (c * m_i + 2**10) >> 11 (= SRDHM(c * 2**20, m_i), exactly), then RoundingDivideByPOT(h, -shift_i)
                                                           (hdl.requant.rounding_right_shift: the requantizer's 10-13)
    10    input 1's value held; with input 2's: their sum (|sum| < 2**29)
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.layouts import address_bits
from hdl.dsp import PRODUCT_LATENCY, Multiplier
from hdl.fanout import registered_copies
from hdl.layouts import activation_word
from hdl.requant import ROUNDING_SHIFT_LATENCY, rounding_right_shift
from hdl.sequencer import descriptor_layout

__all__ = ["add_step_layout", "AddSequencer", "AddParams", "add_unit_input_layout", "add_unit_output_layout",
           "AddUnit"]


def add_step_layout(config):
    """One step of an add: the word read (bank, address; ``second``: input 2's) and its output word's address."""
    act = address_bits(config.act_depth)
    return data.StructLayout({"bank": unsigned(max(1, config.lane_bits)), "address": unsigned(act), "second": 1,
                              "out_address": unsigned(act)})


class AddSequencer(wiring.Component):
    """Walks an add layer after ``start``: for each row, channel group and column, input 1's word, then input 2's.

    ``golden.sequencer.add_steps`` is its model. The three tensors share the word's bank ``(x + g) mod lanes`` and its
    offset ``g * ceil(W / lanes) + x // lanes`` within their rows, so counters keep one bank, one offset and three row
    addresses, by additions only.

    Parameters
    ----------
    config : NPUConfig

    Members
    -------
    descriptor : ``In(hdl.sequencer.descriptor_layout(config))``
        The add layer; hold it stable until the walk ends.
    start : ``In(1)``
        Starts the walk when idle.
    busy : ``Out(1)``
        Steps remain to be issued.
    step : ``Out(stream.Signature(add_step_layout(config), always_ready=True))``
        One step per cycle, the first :attr:`latency` cycles after ``start``.
    """

    #: Cycles from ``start`` to the first step (``golden.sequencer.ADD_SEQUENCER_LATENCY``): the descriptor's derived
    #: values registered, counters loaded, then the step registered.
    latency = 3

    def __init__(self, config):
        self._config = check_config(config)
        super().__init__({
            "descriptor": In(descriptor_layout(config)),
            "start": In(1),
            "busy": Out(1),
            "step": Out(stream.Signature(add_step_layout(config), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        lanes, lane_bits = config.lanes, config.lane_bits
        act = unsigned(address_bits(config.act_depth))
        d = self.descriptor
        running, second = Signal(name="running"), Signal(name="second")
        x_left, y_left = Signal(config.dim_bits, name="x_left"), Signal(config.dim_bits, name="y_left")
        g_left = Signal(config.channel_bits, name="g_left")
        bank, column, group_bank = (Signal(max(1, lane_bits), name=n) for n in ("bank", "column", "group_bank"))
        offset, group_offset, igp = (Signal(act, name=n) for n in ("offset", "group_offset", "igp"))
        row1, row2, row_out = (Signal(act, name=n) for n in ("row1", "row2", "row_out"))
        # The descriptor's derived values, registered in every cycle (each a carry chain or comparison off the
        # counters' loads; the descriptor is stable through the walk): in the setup cycle after start they hold the
        # start cycle's descriptor, and the counters load from them. The counters load in every cycle the walk is not
        # running (the setup cycle's load is the one that counts), so start drives the setup flag alone.
        setup = Signal(name="setup")
        width_last = Signal.like(d.in_width, name="width_last")
        height_last = Signal.like(d.in_height, name="height_last")
        last_groups = Signal(config.channel_bits, name="last_groups")
        single = {name: Signal(name=f"single_{name}") for name in ("width", "groups", "height")}
        m.d.sync += [
            setup.eq(self.start & ~self.busy),
            width_last.eq(d.in_width - 1), height_last.eq(d.in_height - 1),
            last_groups.eq((d.in_channels - 1) >> lane_bits),
            igp.eq((d.in_width + lanes - 1) >> lane_bits),
            single["width"].eq(d.in_width == 1), single["groups"].eq(d.in_channels <= lanes),
            single["height"].eq(d.in_height == 1),
        ]
        # Each counter has a registered end flag (it is 0), updated beside it, so no compare lies before the row
        # addresses.
        x_end, g_end, y_end = (Signal(name=n) for n in ("x_end", "g_end", "y_end"))
        with m.If(~running):
            m.d.sync += [
                second.eq(0), x_left.eq(width_last), g_left.eq(last_groups), y_left.eq(height_last),
                x_end.eq(single["width"]), g_end.eq(single["groups"]), y_end.eq(single["height"]),
                bank.eq(0), column.eq(0), group_bank.eq(0), offset.eq(0),
                group_offset.eq(0), row1.eq(d.in_base), row2.eq(d.in2_base), row_out.eq(d.out_base),
            ]
            with m.If(setup):
                m.d.sync += running.eq(1)
        with m.Else():
            m.d.sync += second.eq(~second)
            with m.If(second):                                       # the pixel's two words issued: next pixel
                with m.If(~x_end):
                    m.d.sync += [x_left.eq(x_left - 1), x_end.eq(x_left == 1), bank.eq(bank + 1),
                                 column.eq(column + 1), offset.eq(offset + (column == lanes - 1))]
                with m.Else():
                    m.d.sync += [x_left.eq(width_last), x_end.eq(single["width"]), column.eq(0)]
                    with m.If(~g_end):                               # next channel group of the row
                        m.d.sync += [g_left.eq(g_left - 1), g_end.eq(g_left == 1), group_bank.eq(group_bank + 1),
                                     bank.eq(group_bank + 1), group_offset.eq(group_offset + igp),
                                     offset.eq(group_offset + igp)]
                    with m.Else():                                   # next row
                        m.d.sync += [g_left.eq(last_groups), g_end.eq(single["groups"]), group_bank.eq(0),
                                     bank.eq(0), group_offset.eq(0), offset.eq(0)]
                        with m.If(~y_end):
                            m.d.sync += [y_left.eq(y_left - 1), y_end.eq(y_left == 1),
                                         row1.eq(row1 + d.in_row_pitch), row2.eq(row2 + d.in2_row_pitch),
                                         row_out.eq(row_out + d.out_row_pitch)]
                        with m.Else():
                            m.d.sync += running.eq(0)
        step = self.step.payload
        m.d.sync += [
            self.step.valid.eq(running),
            step.bank.eq(bank), step.second.eq(second),
            step.address.eq(Mux(second, row2, row1) + offset), step.out_address.eq(row_out + offset),
        ]
        m.d.comb += self.busy.eq(setup | running | self.step.valid)
        return m


class AddParams(data.Struct):
    """An add's input parameters (``golden.add.AddParams``): per input its zero point and rescaling (shift <= 0)."""
    zero_point1: signed(8)
    multiplier1: unsigned(31)
    shift1: signed(6)
    zero_point2: signed(8)
    multiplier2: unsigned(31)
    shift2: signed(6)


def add_unit_input_layout(config, meta):
    """:class:`AddUnit` input: every bank's word and the one to take, which input it is, and ``meta``.

    Lane ``l`` takes byte ``l`` of bank ``banks[l]``'s word as input ``seconds[l] + 1``'s. The engine gives every lane
    the same bank and the same input, in one register per lane, so that no register drives all lanes' multiplexers (at
    8 lanes one bank register had 463 loads, one input flag 361). ``seconds[0]`` also tells the unit's control."""
    return data.StructLayout({"words": data.ArrayLayout(activation_word(config), config.lanes),
                              "banks": data.ArrayLayout(unsigned(max(1, config.lane_bits)), config.lanes),
                              "seconds": data.ArrayLayout(1, config.lanes), "meta": meta})


def add_unit_output_layout(config, meta):
    """:class:`AddUnit` output: per lane the rescaled sum (the requantizer's accumulator), and ``meta``."""
    return data.StructLayout({"sum": data.ArrayLayout(signed(config.acc_bits), config.lanes), "meta": meta})


class AddUnit(wiring.Component):
    """``golden.add.rescaled_sum`` on ``lanes`` channels: words of input 1 and input 2 in, alternately; sums out.

    Parameters
    ----------
    config : NPUConfig
    meta : data.Layout
        Opaque information carried from an input-2 word to its sum (the engine's write-back address).

    Members
    -------
    params : ``In(AddParams)``
        Each lane keeps registered copies: stable from :attr:`params_setup` cycles before the first word to the last
        sum.
    i : ``In(stream.Signature(add_unit_input_layout(config, meta), always_ready=True))``
        A word of input 1 (``seconds`` 0), then the same pixel and group of input 2 (``seconds`` 1), in any later
        cycle.
    o : ``Out(stream.Signature(add_unit_output_layout(config, meta), always_ready=True))``
        The sum, :attr:`latency` cycles after its input-2 word; the consumer takes it.
    busy : ``Out(1)``
        A word is inside the unit.
    """

    #: Cycles from an input-2 word at ``i`` to its sum at ``o``: centred operand, the multipliers and their products'
    #: fabric copies (``hdl.dsp.PRODUCT_LATENCY``), the high half with the requantizer's rounding right shift
    #: (``hdl.requant.ROUNDING_SHIFT_LATENCY``), sum.
    latency = 1 + PRODUCT_LATENCY + ROUNDING_SHIFT_LATENCY + 1
    params_setup = 1

    def __init__(self, config, meta):
        self._config = check_config(config)
        self._meta = meta
        super().__init__({
            "params": In(AddParams),
            "i": In(stream.Signature(add_unit_input_layout(config, meta), always_ready=True)),
            "o": Out(stream.Signature(add_unit_output_layout(config, meta), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self._config
        # The control beside the lanes: valid and second flags and the meta of each stage (one register per stage).
        flags = Signal(2 * self.latency, name="flags")       # (valid, second) per stage
        m.d.sync += flags.eq(Cat(self.i.valid, self.i.payload.seconds[0], flags[:-2]))
        metas = [self.i.payload.meta]
        for index in range(self.latency):
            delayed = Signal(self._meta, name=f"meta{index + 1}", reset_less=True)
            m.d.sync += delayed.eq(metas[-1])
            metas.append(delayed)
        valid = [flags[2 * k] for k in range(self.latency)]
        second = [flags[2 * k + 1] for k in range(self.latency)]
        m.d.comb += [self.o.valid.eq(valid[-1] & second[-1]), self.o.payload.meta.eq(metas[-1]),
                     self.busy.eq(Cat(*valid).any())]
        # 1 (in front): the bank's word, each lane's byte selected with the lane's copy of the bank.
        word = activation_word(config)(Signal(config.lanes * 8, name="word"))
        for lane in range(config.lanes):
            m.d.comb += word[lane].eq(Array(self.i.payload.words[bank][lane] for bank in range(config.lanes))
                                      [self.i.payload.banks[lane]])
        # The stage whose register the held input-1 value is taken from (the rounding right shift's last, the eighth);
        # each lane has its own copy of the hold flag.
        scaled = self.latency - 2
        holds = registered_copies(m, valid[scaled - 1] & ~second[scaled - 1], config.lanes, "hold")
        for lane in range(config.lanes):
            m.d.comb += self.o.payload.sum[lane].eq(
                self._lane(m, word[lane], self.i.payload.seconds[lane], holds[lane], name=f"lane{lane}"))
        return m

    def _lane(self, m, x, second_in, hold, *, name):
        """One lane's pipeline; returns its registered sum."""
        params = self.params

        def stage(shape, value, suffix):
            # kept (hdl.fanout): the parameters' and shifts' registers are equal in every lane, and yosys would merge
            # the lanes' copies back into one register driving all lanes
            reg = Signal(shape, name=f"{name}_{suffix}", reset_less=True, attrs={"keep": 1})
            m.d.sync += reg.eq(value)
            return reg

        # Lane-local copies of the parameters; right shifts -shift_i (shifts are <= 0).
        zero_point = [stage(signed(8), getattr(params, f"zero_point{i}"), f"param_zero_point{i}") for i in (1, 2)]
        multiplier = [stage(unsigned(31), getattr(params, f"multiplier{i}"), f"param_multiplier{i}") for i in (1, 2)]
        shifts = [getattr(params, f"shift{i}") for i in (1, 2)]
        right = [stage(unsigned(6), Mux(shift[-1], -shift, 0), f"param_right{i}") for i, shift in zip((1, 2), shifts)]

        # 1: the centred input and its input's rescaling, in fabric registers (the bank's word selected in front), so
        # that the multipliers' input registers are fed by a short route.
        centred = stage(signed(9), x - Mux(second_in, zero_point[1], zero_point[0]), "centred")
        multiplier_in = stage(unsigned(31), Mux(second_in, multiplier[1], multiplier[0]), "multiplier")
        shift_right = stage(unsigned(6), Mux(second_in, right[1], right[0]), "right1")

        # 2-5: the centred input times the rescaling as two partial products, m = mh * 2**16 + ml, in two registered
        # multipliers, each product copied into a fabric register (no adder at the DSP's output, whose route is long).
        partial = {}
        for key, b in (("high", multiplier_in[16:]), ("low", multiplier_in[:16])):
            mult = m.submodules[f"{name}_mult_{key}"] = Multiplier(centred.shape(), b.shape())
            m.d.comb += [mult.a.eq(centred), mult.b.eq(b)]
            partial[key] = stage(mult.p.shape(), mult.p, f"product_{key}")
        for index in range(PRODUCT_LATENCY):
            shift_right = stage(unsigned(6), shift_right, f"right{index + 2}")

        # 6-9: SRDHM(c * 2**20, m) = floor((c * 2**20 * m + 2**30) / 2**31) = floor((c * m + 2**10) / 2**11), then
        # RoundingDivideByPOT, the requantizer's stages.
        high = ((partial["high"] << 16) + partial["low"] + (1 << 10)) >> 11
        scaled = rounding_right_shift(stage, high, shift_right)[:30].as_signed()

        # 10: input 1's value waits for input 2's; their sum.
        held = Signal(signed(30), name=f"{name}_held", reset_less=True)
        with m.If(hold):
            m.d.sync += held.eq(scaled)
        return stage(signed(31), held + scaled, "sum")
