"""Amaranth-simulator tests of hdl/sequencer.py against golden/sequencer.py: every step of small layers of each kind."""

import pytest
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.descriptor import encode_descriptor, layer_descriptor
from golden.sequencer import SEQUENCER_LATENCY, issue_cycles, steps
from hdl.sequencer import Sequencer

CONFIG = NPUConfig(lanes=4, act_depth=512, weight_depth=256, bias_depth=32, dim_bits=6, channel_bits=7)


def run_sequencer(config, descriptor):
    """Steps the RTL issues for ``descriptor``, and the cycle (after start) of each."""
    dut = Sequencer(config)
    issued = []

    async def bench(ctx):
        ctx.set(dut.descriptor.as_value(), encode_descriptor(descriptor, config))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycle = 1
        while True:
            valid, payload, busy = ctx.get(dut.step.valid), ctx.get(dut.step.payload), ctx.get(dut.busy)
            if valid:
                issued.append((cycle, payload))
            if not busy:
                break
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return issued


def compare(config, descriptor):
    issued = run_sequencer(config, descriptor)
    expected = list(steps(descriptor, config))
    assert len(issued) == len(expected)
    assert issued[0][0] == SEQUENCER_LATENCY
    assert issued[-1][0] - issued[0][0] + 1 == issue_cycles(descriptor, config)
    for index, ((cycle, got), want) in enumerate(zip(issued, expected)):
        where = f"step {index} (cycle {cycle})"
        for r, (bank, address, valid) in enumerate(want.rows):
            assert got.act_valid[r] == valid, f"{where}: row {r} valid"
            if valid:
                assert got.act_bank[r] == bank, f"{where}: row {r} bank"
                assert got.act_address[bank] == address, f"{where}: row {r} address"
        if want.weight_address is not None:
            assert got.weight_address == want.weight_address, f"{where}: weight address"
            assert [got.weight_row[r] for r in range(config.lanes)] == list(want.weight_rows), f"{where}: rows"
        assert (got.first, got.last, got.macs) == (want.first, want.last, want.macs), where
        if want.last:
            out = got.out
            for name, value in want.out.items():
                if name == "address_next" and not want.out["pair"]:
                    continue
                assert getattr(out, name) == value, f"{where}: {name}"
    return sum(step.macs for step in expected)


@pytest.mark.parametrize("kind, shape, cout, kernel, stride, padding", [
    ("conv", (5, 6, 6), 7, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("conv", (7, 5, 9), 5, (3, 3), (2, 2), (0, 1, 1, 1)),
    ("conv", (3, 4, 8), 8, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("conv", (6, 6, 3), 4, (3, 3), (2, 1), (1, 1, 0, 0)),
    ("fully_connected", (1, 1, 10), 6, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("fully_connected", (2, 3, 5), 3, (2, 3), (1, 1), (0, 0, 0, 0)),
    ("depthwise", (4, 9, 10), 10, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("depthwise", (7, 11, 13), 13, (3, 3), (2, 2), (0, 1, 0, 1)),
    ("depthwise", (6, 8, 8), 8, (3, 3), (2, 2), (1, 1, 1, 1)),
    ("depthwise", (5, 5, 4), 4, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("average_pool", (3, 5, 9), 9, (3, 5), (1, 1), (0, 0, 0, 0)),
])
def test_sequencer_matches_golden(kind, shape, cout, kernel, stride, padding):
    descriptor = layer_descriptor(kind, shape, cout, config=CONFIG, kernel=kernel, stride=stride, padding=padding,
                                  in_base=3, out_base=300, weight_base=5, bias_base=2,
                                  input_zero_point=0 if kind == "average_pool" else -3, multiplier=1 << 30, shift=-4)
    assert compare(CONFIG, descriptor) == descriptor.macs


def test_sequencer_eight_lanes():
    config = NPUConfig(act_depth=1024, weight_depth=512, bias_depth=64, dim_bits=6, channel_bits=8)
    for stride in (1, 2):
        descriptor = layer_descriptor("depthwise", (5, 19, 20), 20, config=config, kernel=(3, 3),
                                      stride=(stride, stride), padding=(1, 1, 1, 1), in_base=1, out_base=500)
        assert compare(config, descriptor) == descriptor.macs


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_sequencer_rejects_one_lane():
    with pytest.raises(ValueError, match=r"^the sequencer needs at least 2 lanes, not 1$"):
        Sequencer(NPUConfig(lanes=1))
