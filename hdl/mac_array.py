"""The MAC array: ``lanes x lanes`` int8 multipliers, each with its own int32 accumulator.

Every MAC ``(r, c)`` computes ``acc[r][c] += weight[r][c] * activation[r][c]`` (weight int8, activation the 9-bit
``x - zero_point``) over the steps of a *pass* (``first`` restarts it, ``last`` ends it). When a pass ends the
accumulators are copied into a result bank and leave the array in one of two ways:

* **reduced** (regular convolution, fully connected, pooling): row ``r`` is output channel ``r`` and the columns are
  input channels, so one word ``sum_c acc[r][c]`` per row leaves through a pipelined adder tree; one word per pass,
  which may be one step long.
* **per row** (depthwise): row ``r`` is an output pixel and column ``c`` a channel, so every accumulator is an output;
  the ``lanes`` rows leave as ``lanes`` words, one per cycle. Passes must then be at least ``lanes`` steps apart
  (the sequencer inserts the bubbles).

Pipeline: operand registers, product registers (one MULT18X18D each on ECP5), accumulators, result bank, then
``log2(lanes)`` adder-tree levels or the row drain. The ``meta`` of a pass's last step comes out with its words.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.config import NPUConfig

__all__ = ["MACArray", "mac_input_layout", "mac_output_layout"]


def mac_input_layout(config, meta):
    """One step: operands of every MAC, pass boundaries, output mode and the pass's ``meta``."""
    lanes = config.lanes
    return data.StructLayout({
        "weight": data.ArrayLayout(data.ArrayLayout(signed(8), lanes), lanes),
        "activation": data.ArrayLayout(data.ArrayLayout(signed(9), lanes), lanes),
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
        One step per cycle at most.
    o : ``Out(stream.Signature(mac_output_layout(config, meta), always_ready=True))``
        Result words; the consumer takes one every cycle.
    busy : ``Out(1)``
        A step or a result is still inside the array.

    Attributes
    ----------
    latency : int
        Cycles from a pass's last step at ``i`` to its first word at ``o`` in reduced mode.
    drain_latency : int
        The same for per-row mode; word ``k`` follows ``k`` cycles later.
    """

    def __init__(self, config, meta):
        if not isinstance(config, NPUConfig):
            raise TypeError(f"config must be an NPUConfig, not {config!r}")
        if config.lanes < 2:
            raise ValueError(f"the MAC array needs at least 2 lanes, not {config.lanes!r}")
        self._config = config
        self._meta = meta
        super().__init__({
            "i": In(stream.Signature(mac_input_layout(config, meta), always_ready=True)),
            "o": Out(stream.Signature(mac_output_layout(config, meta), always_ready=True)),
            "busy": Out(1),
        })

    @property
    def latency(self):
        # operands, products, accumulators (= result bank), tree levels
        return 3 + self._config.lane_bits

    drain_latency = 4

    def elaborate(self, platform):
        m = Module()
        config = self._config
        lanes, acc_bits = config.lanes, config.acc_bits
        rng = range(lanes)

        # Operand registers (the DSP's input registers).
        step = Signal(self.i.payload.shape(), name="step")
        step_valid = Signal()
        m.d.sync += [step.eq(self.i.payload), step_valid.eq(self.i.valid)]

        # Products.
        product = [[Signal(signed(17), name=f"p_{r}_{c}") for c in rng] for r in rng]
        for r in rng:
            for c in rng:
                m.d.sync += product[r][c].eq(step.weight[r][c] * step.activation[r][c])
        control = Signal(data.StructLayout({"first": 1, "last": 1, "per_row": 1, "meta": self._meta}))
        product_valid = Signal()
        m.d.sync += [
            control.first.eq(step.first), control.last.eq(step.last), control.per_row.eq(step.per_row),
            control.meta.eq(step.meta), product_valid.eq(step_valid),
        ]

        # Accumulators; the value after a pass's last step is copied into the result bank.
        acc = [[Signal(signed(acc_bits), name=f"acc_{r}_{c}") for c in rng] for r in rng]
        result = [[Signal(signed(acc_bits), name=f"result_{r}_{c}") for c in rng] for r in rng]
        captured = Signal()
        result_meta = Signal(self._meta, name="result_meta")
        result_per_row = Signal()
        capture = product_valid & control.last
        m.d.sync += captured.eq(capture)
        with m.If(capture):
            m.d.sync += [result_meta.eq(control.meta), result_per_row.eq(control.per_row)]
        for r in rng:
            for c in rng:
                following = Signal(signed(acc_bits), name=f"next_{r}_{c}")
                m.d.comb += following.eq((acc[r][c] + product[r][c])[:acc_bits].as_signed())
                with m.If(control.first):
                    m.d.comb += following.eq(product[r][c])
                with m.If(product_valid):
                    m.d.sync += acc[r][c].eq(following)
                with m.If(capture):
                    m.d.sync += result[r][c].eq(following)

        # Reduced mode: an adder tree per row, one register level per halving.
        level = result
        level_valid = captured & ~result_per_row
        level_meta = result_meta
        in_tree = []
        for depth in range(config.lane_bits):
            width = len(level[0]) // 2
            summed = [[Signal(signed(acc_bits), name=f"sum{depth}_{r}_{c}") for c in range(width)] for r in rng]
            for r in rng:
                for c in range(width):
                    m.d.sync += summed[r][c].eq((level[r][2 * c] + level[r][2 * c + 1])[:acc_bits].as_signed())
            valid = Signal(name=f"sum{depth}_valid")
            meta = Signal(self._meta, name=f"sum{depth}_meta")
            m.d.sync += [valid.eq(level_valid), meta.eq(level_meta)]
            in_tree.append(valid)
            level, level_valid, level_meta = summed, valid, meta

        # Per-row mode: the result bank shifts up one row per cycle; row 0 is registered out.
        draining = Signal()
        word = Signal(unsigned(max(1, config.lane_bits)))
        drain_out = [Signal(signed(acc_bits), name=f"drain_{c}") for c in rng]
        drain_valid = Signal()
        drain_word = Signal.like(word)
        drain_meta = Signal(self._meta, name="drain_meta")
        m.d.sync += drain_valid.eq(draining)
        with m.If(draining):
            m.d.sync += [drain_out[c].eq(result[0][c]) for c in rng]
            m.d.sync += [drain_word.eq(word), drain_meta.eq(result_meta), word.eq(word + 1)]
            for r in range(lanes - 1):
                with m.If(~capture):
                    m.d.sync += [result[r][c].eq(result[r + 1][c]) for c in rng]
            with m.If(word == lanes - 1):
                m.d.sync += draining.eq(0)
        with m.If(capture & control.per_row):
            m.d.sync += [draining.eq(1), word.eq(0)]

        with m.If(level_valid):
            m.d.comb += [
                self.o.valid.eq(1),
                self.o.payload.meta.eq(level_meta),
                self.o.payload.word.eq(0),
            ]
            m.d.comb += [self.o.payload.acc[r].eq(level[r][0]) for r in rng]
        with m.Elif(drain_valid):
            m.d.comb += [
                self.o.valid.eq(1),
                self.o.payload.meta.eq(drain_meta),
                self.o.payload.word.eq(drain_word),
            ]
            m.d.comb += [self.o.payload.acc[c].eq(drain_out[c]) for c in rng]

        busy = step_valid | product_valid | captured | draining | drain_valid
        for valid in in_tree:
            busy = busy | valid
        m.d.comb += self.busy.eq(busy)
        return m
