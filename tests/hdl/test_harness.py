"""hdl/harness.py: the serial synthesis harness reaches every port bit of its core, and refuses non-components."""

import gc
import warnings

import pytest
from amaranth.hdl import Fragment, Module, UnusedElaboratable, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.config import NPUConfig
from hdl.harness import SerialHarness
from hdl.requant import Requantizer


def test_harness_reaches_every_port_bit():
    """Bits shifted into ``din`` appear on the core's inputs; ``load`` then ``dout`` returns its outputs in order."""
    core = Requantizer(NPUConfig(lanes=1))
    harness = SerialHarness(core)
    inputs = [Value.cast(value) for _, member, value in core.signature.flatten(core) if member.flow == In]
    outputs = [Value.cast(value) for _, member, value in core.signature.flatten(core) if member.flow == Out]
    assert harness.input_bits == sum(len(value) for value in inputs) == 99
    assert harness.output_bits == sum(len(value) for value in outputs) == 10
    # An irregular pattern: the first bit shifted in ends at the far end of the chain, the top of the last input.
    pattern = [(index * 7 + index // 3) % 5 < 2 for index in range(harness.input_bits)]
    expected = sum(bit << position for position, bit in enumerate(reversed(pattern)))

    async def testbench(ctx):
        for bit in pattern:
            ctx.set(harness.din, bit)
            await ctx.tick()
        offset = 0
        for value in inputs:
            assert ctx.get(value) == (expected >> offset) & ((1 << len(value)) - 1)
            offset += len(value)
        captured, offset = 0, 0
        for value in outputs:
            captured |= ctx.get(value) << offset
            offset += len(value)
        ctx.set(harness.load, 1)
        await ctx.tick()
        ctx.set(harness.load, 0)
        shifted = 0
        for position in range(harness.output_bits):
            shifted |= ctx.get(harness.dout) << position
            await ctx.tick()
        assert shifted == captured and captured != 0  # i.ready is high: the chain is not trivially zero

    simulator = Simulator(harness)
    simulator.add_clock(1e-6)
    simulator.add_testbench(testbench)
    simulator.run()


def test_harness_rejects_non_components():
    with pytest.raises(TypeError, match=r"^core must be a wiring.Component, not 3$") as error:
        SerialHarness(3)
    del error  # the traceback holds the half-built harness; collect it without an UnusedElaboratable warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        gc.collect()


class _Source(wiring.Component):
    """An always-ready stream source: its ``ready`` is a constant, not a port to drive."""
    o: Out(stream.Signature(8, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.o.valid.eq(~self.o.valid), self.o.payload.eq(self.o.payload + 1)]
        return m


def test_constant_ports_are_neither_driven_nor_read():
    harness = SerialHarness(_Source())
    assert (harness.input_bits, harness.output_bits) == (0, 9)
    Fragment.get(harness, None)
