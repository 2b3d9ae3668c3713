"""hdl/estimate.py: the pre-synthesis estimate counts DSPs, block RAMs and flip-flops of known designs exactly."""

from amaranth.back import rtlil
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hdl.dsp import ECP5, Multiplier
from hdl.estimate import estimate_resources


class _Memory(wiring.Component):
    """A ``width x depth`` memory with one write port and one read port, synchronous or not."""

    def __init__(self, width, depth, *, synchronous):
        self._shape, self._synchronous = (width, depth), synchronous
        super().__init__({"addr": In(range(depth)), "data": In(width), "we": In(1), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        width, depth = self._shape
        m.submodules.mem = mem = memory.Memory(shape=unsigned(width), depth=depth, init=[])
        write, read = mem.write_port(), mem.read_port(domain="sync" if self._synchronous else "comb")
        m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.data), write.en.eq(self.we),
                     read.addr.eq(self.addr), self.q.eq(read.data)]
        return m


def test_a_registered_multiplier_is_one_dsp_with_its_registers_inside():
    assert estimate_resources(rtlil.convert(Multiplier(signed(8), signed(9)), platform=ECP5)) == \
        {"MULT18X18D": 1, "DP16KD": 0, "FF": 0, "LUT4": 0}
    # The behavioural model: one $mul, and its input, pipeline and output registers in flip-flops.
    model = estimate_resources(rtlil.convert(Multiplier(signed(8), signed(9))))
    assert (model["MULT18X18D"], model["FF"]) == (1, 8 + 9 + 17 + 17)


def test_wide_products_take_one_dsp_per_18x18_tile():
    model = estimate_resources(rtlil.convert(Multiplier(signed(18), signed(18))))
    assert model["MULT18X18D"] == 1
    text = rtlil.convert(Multiplier(signed(8), signed(9))).replace("parameter \\A_WIDTH 8", "parameter \\A_WIDTH 36")
    assert estimate_resources(text)["MULT18X18D"] == 2


def test_memories_take_the_cheapest_block_shape_or_lut_ram():
    cases = [((64, 2048), 8),      # 2048x9: 8 blocks
             ((8, 4096), 2),       # 4096x4
             ((512, 1024), 29),    # 1024x18
             ((36, 512), 1),       # 512x36
             ((1, 16384), 1)]      # 16384x1
    for (width, depth), blocks in cases:
        assert estimate_resources(rtlil.convert(_Memory(width, depth, synchronous=True)))["DP16KD"] == blocks
    lut_ram = estimate_resources(rtlil.convert(_Memory(16, 64, synchronous=False)))
    assert lut_ram["DP16KD"] == 0 and lut_ram["LUT4"] >= 16 * 64 // 16
