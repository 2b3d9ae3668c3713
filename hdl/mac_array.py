"""The MAC array: ``lanes x lanes`` int8 multipliers, each with its own int32 accumulator.

Operands: each step brings ``lanes`` activation words (one per memory bank) and one weight word. Row ``r`` takes the
activation word ``word_select[r]`` (channel ``c`` of it for column ``c``, minus the input zero point; 0 where
``word_valid[r]`` is low: a tap in the padding) and row ``weight_select[r]`` of the weight word (or, with
``diagonal``, the pooling weight ``GAP_WEIGHT`` on the diagonal and 0 elsewhere). Every MAC ``(r, c)`` then computes
``acc[r][c] += weight[r][c] * activation[r][c]`` (int8 times 9 bits) over the steps of a *pass* (``first`` restarts
it, ``last`` ends it). When a pass ends the accumulators are copied into a result bank and leave the array in one of
two ways:

* **reduced** (regular convolution, fully connected, pooling): row ``r`` is output channel ``r`` and the columns are
  input channels, so one word ``sum_c acc[r][c]`` per row leaves through a pipelined adder tree; one word per pass,
  which may be one step long.
* **per row** (depthwise, max pooling): row ``r`` is an output pixel and column ``c`` a channel, so every accumulator is an output;
  the ``lanes`` rows leave as ``lanes`` words, one per cycle. Passes must then be at least ``lanes`` steps apart
  (the sequencer inserts the bubbles).

**Max mode** (``max``, a max pool walked as a depthwise layer): the weight is 1 and a tap in the padding reads -128
instead of 0, so the product is the tap itself, and each MAC keeps the larger of its accumulator and the product
instead of their sum: ``acc[r][c] = max(acc[r][c], activation[r][c])``, the window maximum of pixel ``r``, channel
``c`` (the input zero point is 0). Padding never wins: -128 is no larger than any tap inside the input, and every
window has one (``golden.pool.max_pool2d``). The maximum is a 9-bit register per MAC beside the accumulator (products
and maxima stay in int8 in this mode), with its own comparator; the multiplier, result bank and drain are shared with
the other modes.

The step at ``i`` leads its ``words`` and ``weights`` by :attr:`MACArray.SELECT_LEAD` cycle: while the data is still in
the memories' output registers, each row's word and weight selects are copied into registers, one per row and column
(8 bits each), so that no select drives a whole row's ``lanes x 8`` multiplexer bits (at 8 lanes one select routed to
a row's 64 bits set the block's Fmax).

Pipeline: each row's activation word and weight row selected into row registers, each MAC's operands centred into
fabric operand registers, the multiplier's input, pipeline and output registers (one MULT18X18D per MAC on ECP5:
``hdl.dsp.Multiplier``), the products' copy in fabric registers (no logic at either end of the DSP), accumulators (sum
and running maximum apart), the result bank, then ``log2(lanes)`` adder-tree levels or the row drain. The ``meta`` of a
pass's last step comes out with its words. No flip-flop drives every MAC: the step flags reach the operands through
per-row copies and the accumulators and result bank through per-MAC copies (``hdl.fanout``), as at 8 lanes one flag
routed to 64 MACs set the block's Fmax.

The operands are formed here, from narrow ports, rather than delivered as one ``lanes**2 x 17``-bit vector: Icarus
re-evaluates every reader of a vector whenever any part of it changes, and such a vector made whole-engine
simulation an order of magnitude slower.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import check_config
from golden.pool import GAP_WEIGHT
from hdl.dsp import Multiplier
from hdl.fanout import registered_copies
from hdl.layouts import activation_word, weight_word

__all__ = ["MACArray", "mac_input_layout", "mac_output_layout"]


def mac_input_layout(config, meta):
    """One step's control: per-row operand selection, pass boundaries, output mode and the pass's ``meta``."""
    lanes, lane_bits = config.lanes, max(1, config.lane_bits)
    return data.StructLayout({
        "word_select": data.ArrayLayout(unsigned(lane_bits), lanes),
        "word_valid": data.ArrayLayout(unsigned(1), lanes),
        "weight_select": data.ArrayLayout(unsigned(lane_bits), lanes),
        "diagonal": 1,
        "max": 1,
        "first": 1,
        "last": 1,
        "per_row": 1,
        "meta": meta,
    })


def mac_output_layout(config, meta):
    """One result word: ``lanes`` int32 sums, the pass's ``meta`` and the word's index in the pass."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(config.acc_bits), config.lanes),
        "meta": meta,
        "word": unsigned(max(1, config.lane_bits)),
    })


class MACArray(wiring.Component):
    """``lanes**2`` MACs with per-MAC accumulators, an adder tree and a row drain.

    Parameters
    ----------
    config : NPUConfig
        ``lanes`` (at least 2) sets the array; ``acc_bits`` the accumulators.
    meta : data.Layout
        Opaque per-pass information carried from the last step to the pass's result words.

    Members
    -------
    i : ``In(stream.Signature(mac_input_layout(config, meta), always_ready=True))``
        One step per cycle at most, :attr:`SELECT_LEAD` cycle ahead of its data.
    words : ``In(ArrayLayout(activation_word(config), lanes))``
        The step's activation words, one per bank, :attr:`SELECT_LEAD` cycle after the step at ``i``.
    weights : ``In(weight_word(config))``
        The step's weight word, with ``words``.
    zero_point : ``In(signed(8))``
        The input zero point (per layer).
    o : ``Out(stream.Signature(mac_output_layout(config, meta), always_ready=True))``
        Result words; the consumer takes one every cycle.
    busy : ``Out(1)``
        A step or a result is still inside the array.

    Attributes
    ----------
    latency : int
        Cycles from a pass's last step's data at ``words`` to its first word at ``o`` in reduced mode.
    drain_latency : int
        The same for per-row mode; word ``k`` follows ``k`` cycles later.
    """

    def __init__(self, config, meta):
        self._config = check_config(config)
        if config.lanes < 2:
            raise ValueError(f"the MAC array needs at least 2 lanes, not {config.lanes!r}")
        self._meta = meta
        super().__init__({
            "i": In(stream.Signature(mac_input_layout(config, meta), always_ready=True)),
            "words": In(data.ArrayLayout(activation_word(config), config.lanes)),
            "weights": In(weight_word(config)),
            "zero_point": In(signed(8)),
            "o": Out(stream.Signature(mac_output_layout(config, meta), always_ready=True)),
            "busy": Out(1),
        })

    #: Cycles the step at ``i`` comes before its ``words`` and ``weights``: its selects copied per row and column.
    SELECT_LEAD = 1
    #: The operands in fabric registers before the multipliers' input registers: each row's words selected, then each
    #: MAC's operands centred.
    OPERAND_LATENCY = 2
    #: The products' copy in fabric registers after :class:`hdl.dsp.Multiplier`'s output registers.
    PRODUCT_LATENCY = 1
    #: The accumulators.
    ACCUMULATE_LATENCY = 1
    #: The result bank, copied from the accumulators after a pass's last step.
    RESULT_LATENCY = 1
    #: The drain's output register.
    DRAIN_OUT_LATENCY = 1

    @property
    def latency(self):
        return (self.OPERAND_LATENCY + Multiplier.LATENCY + self.PRODUCT_LATENCY + self.ACCUMULATE_LATENCY
                + self.RESULT_LATENCY + self._config.lane_bits)

    drain_latency = (OPERAND_LATENCY + Multiplier.LATENCY + PRODUCT_LATENCY + ACCUMULATE_LATENCY + RESULT_LATENCY
                     + DRAIN_OUT_LATENCY)

    def elaborate(self, platform):
        m = Module()
        config = self._config
        lanes, acc_bits = config.lanes, config.acc_bits
        rng = range(lanes)

        # Stage 0, with the step a cycle ahead of its data: the step registered, each row's selects copied once per
        # column. Stage 1, per row: the row's activation word and weight row selected into registers, byte by byte
        # with the column's copies of the selects, with the row's copies of the step flags and the zero point (no
        # flip-flop drives all 64 MACs). Stage 2, per MAC: the operands, centred, into the operand registers; the
        # multipliers' input registers follow. Datapath registers have no reset (only the valid flags do): nothing
        # reads them before a valid step has filled them, DSP registers have none, and each reset multiplexer would
        # be one more process per register in the simulated Verilog.
        step = Signal.like(self.i.payload, name="step", reset_less=True)
        step_valid = Signal(name="step_valid0")
        m.d.sync += [step.eq(self.i.payload), step_valid.eq(self.i.valid)]
        word_selects = [registered_copies(m, self.i.payload.word_select[r], lanes, f"word_select_{r}") for r in rng]
        weight_selects = [registered_copies(m, self.i.payload.weight_select[r], lanes, f"weight_select_{r}")
                          for r in rng]
        row_max = registered_copies(m, step.max, lanes, "row_max")
        row_diagonal = registered_copies(m, step.diagonal, lanes, "row_diagonal")
        row_zero_point = registered_copies(m, self.zero_point, lanes, "row_zero_point")
        product = [[None] * lanes for _ in rng]
        for r in rng:
            word = activation_word(config)(Signal(lanes * 8, name=f"word_{r}", reset_less=True))
            weight_row = activation_word(config)(Signal(lanes * 8, name=f"weight_row_{r}", reset_less=True))
            word_valid = Signal(name=f"word_valid_{r}", reset_less=True)
            for c in rng:
                m.d.sync += [word[c].eq(Array(self.words[bank][c] for bank in rng)[word_selects[r][c]]),
                             weight_row[c].eq(Array(self.weights[row][c] for row in rng)[weight_selects[r][c]])]
            m.d.sync += word_valid.eq(step.word_valid[r])
            for c in rng:
                mult = m.submodules[f"mult_{r}_{c}"] = Multiplier(signed(8), signed(9))
                a = Signal(signed(8), name=f"a_{r}_{c}", reset_less=True)
                b = Signal(signed(9), name=f"b_{r}_{c}", reset_less=True)
                m.d.sync += [
                    a.eq(Mux(row_max[r], 1, Mux(row_diagonal[r], GAP_WEIGHT if r == c else 0, weight_row[c]))),
                    b.eq(Mux(word_valid, word[c] - row_zero_point[r], Mux(row_max[r], -128, 0))),
                ]
                m.d.comb += [mult.a.eq(a), mult.b.eq(b)]
                product[r][c] = mult.p
        # The step's control travels beside its products; its last stage is copied once per MAC (valid, first) for
        # the accumulators.
        control_layout = data.StructLayout({"first": 1, "last": 1, "per_row": 1, "max": 1, "meta": self._meta})
        control = Signal(control_layout, name="control0")
        m.d.comb += [control.first.eq(step.first), control.last.eq(step.last), control.per_row.eq(step.per_row),
                     control.max.eq(step.max), control.meta.eq(step.meta)]
        product_valid = step_valid
        in_multiplier = [step_valid]
        for index in range(self.OPERAND_LATENCY + Multiplier.LATENCY + self.PRODUCT_LATENCY):
            delayed, valid = Signal(control_layout, name=f"control{index + 1}"), Signal(name=f"step_valid{index + 1}")
            m.d.sync += [delayed.eq(control), valid.eq(product_valid)]
            in_multiplier.append(valid)
            previous, previous_valid = control, product_valid
            control, product_valid = delayed, valid
        mac_valid = registered_copies(m, previous_valid, lanes * lanes, "mac_valid")
        mac_first = registered_copies(m, previous.first, lanes * lanes, "mac_first")
        # The products leave the DSPs into fabric registers, no logic between (the DSP's output routing is long).
        copies = [[Signal(signed(len(product[r][c])), name=f"copy_{r}_{c}", reset_less=True) for c in rng]
                  for r in rng]
        m.d.sync += [copies[r][c].eq(product[r][c]) for r in rng for c in rng]

        # Accumulators: a sum and, apart from it (so that neither loop goes through the other's logic), the max mode's
        # running maximum (9 bits: products and maxima are int8 in that mode).
        acc = [[Signal(signed(acc_bits), name=f"acc_{r}_{c}", reset_less=True) for c in rng] for r in rng]
        largest = [[Signal(signed(9), name=f"max_{r}_{c}", reset_less=True) for c in rng] for r in rng]
        for r in rng:
            for c in rng:
                copy, first = copies[r][c], mac_first[r * lanes + c]
                tap = copy[:9].as_signed()
                with m.If(mac_valid[r * lanes + c]):
                    m.d.sync += [acc[r][c].eq((Mux(first, 0, acc[r][c]) + copy)[:acc_bits].as_signed()),
                                 largest[r][c].eq(Mux(first | (tap > largest[r][c]), tap, largest[r][c]))]
        # A pass's control is kept at its last step, then its sums or maxima are copied from the accumulators into the
        # result bank (a register to register copy: no adder before the bank's multiplexers). In per-row mode the bank
        # then shifts up one row per cycle. Each MAC's result register has its own copies of the capture, the mode and
        # the shift.
        ending = product_valid & control.last
        ended = Signal()
        ended_control = Signal(control_layout, name="ended_control")
        m.d.sync += ended.eq(ending)
        with m.If(ending):
            m.d.sync += ended_control.eq(control)
        mac_capture = registered_copies(m, ending, lanes * lanes, "mac_capture")
        mac_take_max = registered_copies(m, control.max, lanes * lanes, "mac_take_max")
        result = [[Signal(signed(acc_bits), name=f"result_{r}_{c}", reset_less=True) for c in rng] for r in rng]
        captured = Signal()
        result_meta = Signal(self._meta, name="result_meta")
        result_per_row = Signal()
        m.d.sync += captured.eq(ended)
        with m.If(ended):
            m.d.sync += [result_meta.eq(ended_control.meta), result_per_row.eq(ended_control.per_row)]

        # Per-row mode: the drain registers row 0 out while the bank shifts up (a pass's capture wins over the shift).
        draining = Signal()
        word = Signal(unsigned(max(1, config.lane_bits)))
        drain_out = [Signal(signed(acc_bits), name=f"drain_{c}", reset_less=True) for c in rng]
        drain_valid = Signal()
        drain_word = Signal.like(word)
        drain_meta = Signal(self._meta, name="drain_meta")
        draining_next = Signal()
        m.d.comb += draining_next.eq(Mux(ended & ended_control.per_row, 1, draining & (word != lanes - 1)))
        m.d.sync += [draining.eq(draining_next), drain_valid.eq(draining)]
        # Per output lane, copies of the drain's enable and of the output select (below): no flag drives all lanes.
        drain_enable = registered_copies(m, draining_next, lanes, "drain_enable")
        # Each MAC's copy of the shift enable comes from its row's copy, which is computed a cycle ahead (the next
        # cycle's draining_next, from the next cycle's drain state): no single net reaches the whole bank.
        word_next = Mux(ended & ended_control.per_row, 0, Mux(draining, word + 1, word))
        ahead = (ending & control.per_row) | (draining_next & (word_next != lanes - 1))
        row_shift = registered_copies(m, ahead, lanes - 1, "row_shift")
        mac_shift = [shift for r in range(lanes - 1) for shift in registered_copies(m, row_shift[r], lanes,
                                                                                    f"mac_shift_{r}")]
        for c in rng:
            with m.If(drain_enable[c]):
                m.d.sync += drain_out[c].eq(result[0][c])
        with m.If(draining):
            m.d.sync += [drain_word.eq(word), drain_meta.eq(result_meta), word.eq(word + 1)]
        with m.If(ended & ended_control.per_row):
            m.d.sync += word.eq(0)
        for r in rng:
            for c in rng:
                mac = r * lanes + c
                with m.If(mac_capture[mac]):
                    m.d.sync += result[r][c].eq(Mux(mac_take_max[mac], largest[r][c], acc[r][c]))
                if r < lanes - 1:
                    with m.Elif(mac_shift[mac]):
                        m.d.sync += result[r][c].eq(result[r + 1][c])

        # Reduced mode: an adder tree per row, one register level per halving.
        level = result
        level_valid = captured & ~result_per_row
        level_meta = result_meta
        in_tree = []
        for depth in range(config.lane_bits):
            width = len(level[0]) // 2
            summed = [[Signal(signed(acc_bits), name=f"sum{depth}_{r}_{c}", reset_less=True) for c in range(width)]
                      for r in rng]
            for r in rng:
                for c in range(width):
                    m.d.sync += summed[r][c].eq((level[r][2 * c] + level[r][2 * c + 1])[:acc_bits].as_signed())
            valid = Signal(name=f"sum{depth}_valid")
            meta = Signal(self._meta, name=f"sum{depth}_meta")
            m.d.sync += [valid.eq(level_valid), meta.eq(level_meta)]
            in_tree.append(valid)
            previous_valid = level_valid
            level, level_valid, level_meta = summed, valid, meta
        tree_select = registered_copies(m, previous_valid, lanes, "tree_select")     # level_valid, once per lane

        # Expressions, not a comb If: in Verilog a comb process is an `always @*`, which a four-valued simulator
        # first runs when an input changes; through an add layer (the array unused) its output stayed unknown.
        m.d.comb += [
            self.o.valid.eq(level_valid | drain_valid),
            self.o.payload.meta.eq(Mux(level_valid, level_meta, drain_meta)),
            self.o.payload.word.eq(Mux(level_valid, 0, drain_word)),
        ]
        # Each output lane takes the tree's word or the drain's with its own copy of the tree's valid flag (row r of
        # the tree leaves on lane r; without a valid word the lanes are don't-care).
        m.d.comb += [self.o.payload.acc[c].eq(Mux(tree_select[c], level[c][0], drain_out[c])) for c in rng]

        busy = ended | captured | draining | drain_valid
        for valid in in_multiplier + in_tree:
            busy = busy | valid
        m.d.comb += self.busy.eq(busy)
        return m
