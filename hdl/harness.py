"""A synthesis harness: a core's every port bit reached through three pins, so that nothing is optimised away.

The core's ports (hundreds of bits) do not fit a package, and ports left unconnected would let yosys delete the logic
behind them, so ``tools/synth.py`` wraps the core in :class:`SerialHarness`: every input bit comes from a serial shift
register fed by one pin and every output bit is captured into a shift register read out through one pin. The top then
has five pins (``clk``, ``rst``, ``din``, ``load``, ``dout``); the chains add one flip-flop per port bit and at most
one LUT4 per output bit, and their register-to-register paths are single LUT levels, so they neither hide logic nor
set Fmax.
"""

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SerialHarness"]


class SerialHarness(wiring.Component):
    """A wrapper that reaches every port of ``core`` through three pins, so that nothing is optimised away.

    Parameters
    ----------
    core : wiring.Component
        The design to synthesise; its ``sync`` domain becomes the harness's clock ``clk``.

    Members
    -------
    din : ``In(1)``
        Serial input: shifted each cycle into a register chain that drives all input ports of ``core``.
    load : ``In(1)``
        Capture all output ports of ``core`` into the output chain (else the chain shifts toward ``dout``).
    dout : ``Out(1)``
        Serial output: the end of the output chain.
    """

    def __init__(self, core):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"core must be a wiring.Component, not {core!r}")
        self._core = core
        self._inputs, self._outputs = [], []
        for _path, member, value in core.signature.flatten(core):
            value = Value.cast(value)
            if not isinstance(value, Const):    # e.g. the ready of an always-ready stream: nothing to drive or read
                (self._inputs if member.flow == In else self._outputs).append(value)
        if not self._outputs:
            raise ValueError(f"core {core!r} has no output ports")
        super().__init__({"din": In(1), "load": In(1), "dout": Out(1)})

    @property
    def input_bits(self):
        """Flip-flops of the input chain: the width of all of the core's input ports."""
        return sum(len(value) for value in self._inputs)

    @property
    def output_bits(self):
        """Flip-flops of the output chain: the width of all of the core's output ports."""
        return sum(len(value) for value in self._outputs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self._core

        if self._inputs:
            chain_in = Signal(self.input_bits)
            m.d.sync += chain_in.eq(Cat(self.din, chain_in[:-1]))
            offset = 0
            for value in self._inputs:
                m.d.comb += value.eq(chain_in[offset:offset + len(value)])
                offset += len(value)

        chain_out = Signal(self.output_bits)
        with m.If(self.load):
            m.d.sync += chain_out.eq(Cat(*self._outputs))
        with m.Else():
            m.d.sync += chain_out.eq(chain_out[1:])
        m.d.comb += self.dout.eq(chain_out[0])
        return m
