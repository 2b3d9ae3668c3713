"""Amaranth-simulator tests of hdl/add.py against golden: ``rtl_sums`` (the simulated AddUnit) equals
``ref_sums`` (golden.add.rescaled_sum) on every word, edge cases included; ``rtl_walk`` (the simulated AddSequencer)
equals ``ref_walk`` (golden.sequencer.add_steps) step for step."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from golden.add import AddParams as GoldenAddParams, add_descriptor_fields, add_params, rescaled_sum
from golden.config import NPUConfig
from golden.descriptor import encode_descriptor, layer_descriptor
from golden.layouts import row_pitch
from golden.sequencer import ADD_SEQUENCER_LATENCY, add_steps, issue_cycles
from hdl.add import AddSequencer, AddUnit

CONFIG = NPUConfig(lanes=4, act_depth=512, dim_bits=6, channel_bits=7)
META = unsigned(8)


def ref_sums(params, x1, x2):
    """The golden rescaled sums of word pairs ``x1``, ``x2`` (shape [beats, lanes])."""
    return rescaled_sum(x1, x2, params).tolist()


def rtl_sums(params, x1, x2, *, gaps=None):
    """Stream word pairs through the RTL, input 1's word then input 2's (``gaps``: idle cycles before each word);
    return the sums in order, and check each carries its beat's meta."""
    dut = AddUnit(CONFIG, META)
    rng = np.random.default_rng(0)
    beats = len(x1)
    sums = []

    async def source(ctx):
        for name in ("zero_point1", "multiplier1", "shift1", "zero_point2", "multiplier2", "shift2"):
            ctx.set(getattr(dut.params, name), getattr(params, name))
        await ctx.tick().repeat(AddUnit.params_setup)
        for beat in range(beats):
            for second, words in enumerate((x1, x2)):
                for _ in range(0 if gaps is None else gaps[2 * beat + second]):
                    ctx.set(dut.i.valid, 0)                        # idle: whatever is on the payload is ignored
                    for lane in range(CONFIG.lanes):
                        ctx.set(dut.i.payload.seconds[lane], 0)
                        ctx.set(dut.i.payload.banks[lane], lane)
                    ctx.set(dut.i.payload.words[0][0], int(rng.integers(-128, 128)))
                    await ctx.tick()
                for lane in range(CONFIG.lanes):                # each lane's byte from its own bank (the
                    bank = (beat + second + 3 * lane) % CONFIG.lanes    # engine gives every lane the same one)
                    ctx.set(dut.i.payload.banks[lane], bank)
                    ctx.set(dut.i.payload.words[bank][lane], int(words[beat][lane]))
                    ctx.set(dut.i.payload.seconds[lane], second)
                ctx.set(dut.i.payload.meta, beat)
                ctx.set(dut.i.valid, 1)
                await ctx.tick()
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while len(sums) < beats:
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                assert payload.meta == len(sums)
                sums.append([payload.sum[lane] for lane in range(CONFIG.lanes)])
        assert not ctx.get(dut.busy)              # idle once the last sum is out, whatever the idle payload holds

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return sums


def _params(zero_point1, multiplier1, shift1, zero_point2, multiplier2, shift2):
    return GoldenAddParams(zero_point1=zero_point1, multiplier1=multiplier1, shift1=shift1, zero_point2=zero_point2,
                           multiplier2=multiplier2, shift2=shift2, output_zero_point=0, output_multiplier=0,
                           output_shift=0)


EDGES = {
    # |x - zp| = 255 both ways, the largest multiplier, no right shift: the largest sums.
    "zero points -128 and 127, multiplier 2**31 - 1, shift 0": _params(-128, (1 << 31) - 1, 0, 127, (1 << 31) - 1, 0),
    "smallest multiplier 2**30, shifts -31 and -32": _params(5, 1 << 30, -31, -7, 1 << 30, -32),
    "multiplier 0 on one input": _params(0, 0, 0, -128, 1 << 30, -1),
    "rounding ties (multiplier 2**30, shift -1)": _params(0, 1 << 30, -1, 1, 1 << 30, -2),
    "from add_params": add_params(0.0173, -3, 0.2, 100, 0.05, 9),
}


@pytest.mark.parametrize("params", EDGES.values(), ids=EDGES.keys())
def test_add_unit_matches_golden_on_edge_cases(params):
    rng = np.random.default_rng(1)
    extremes = np.array([-128, 127, -128, 127])
    x1 = np.concatenate([[extremes, extremes[::-1]], rng.integers(-128, 128, (30, CONFIG.lanes))])
    x2 = np.concatenate([[extremes, extremes], rng.integers(-128, 128, (30, CONFIG.lanes))])
    assert rtl_sums(params, x1, x2) == ref_sums(params, x1, x2)


@pytest.mark.parametrize("seed", range(3))
def test_add_unit_matches_golden_on_random_params_with_gaps(seed):
    rng = np.random.default_rng(seed)
    scales = 2.0 ** rng.uniform(-12, 0, 3)
    zero_points = rng.integers(-128, 128, 3)
    params = add_params(scales[0], int(zero_points[0]), scales[1], int(zero_points[1]), scales[2],
                        int(zero_points[2]))
    x1, x2 = rng.integers(-128, 128, (2, 40, CONFIG.lanes))
    gaps = rng.integers(0, 3, 80) * (rng.random(80) < 0.4)
    assert rtl_sums(params, x1, x2, gaps=gaps) == ref_sums(params, x1, x2)


def ref_walk(descriptor):
    """The golden add walk: the cycle of the first step, the issue cycles and every step."""
    return dict(first_cycle=ADD_SEQUENCER_LATENCY, issue_cycles=issue_cycles(descriptor, CONFIG),
                steps=[(s.bank, s.address, s.second, s.out_address) for s in add_steps(descriptor, CONFIG)])


def rtl_walk(descriptor):
    """The RTL's walk, as :func:`ref_walk` reports it."""
    dut = AddSequencer(CONFIG)
    walk = dict(steps=[])

    async def bench(ctx):
        ctx.set(dut.descriptor.as_value(), encode_descriptor(descriptor, CONFIG))
        ctx.set(dut.start, 1)
        cycle = 0
        while True:
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycle += 1
            if ctx.get(dut.step.valid):
                p = dut.step.payload
                walk.setdefault("first_cycle", cycle)
                walk["steps"].append((ctx.get(p.bank), ctx.get(p.address), bool(ctx.get(p.second)),
                                      ctx.get(p.out_address)))
            if not ctx.get(dut.busy):
                break
        walk["issue_cycles"] = cycle - walk["first_cycle"]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return dict(first_cycle=walk["first_cycle"], issue_cycles=walk["issue_cycles"], steps=walk["steps"])


WALKS = {
    # shape, input 1 base and extra pitch, input 2 base and extra pitch, output base and extra pitch
    "channels and width multiples of the lanes": ((2, 4, 8), (0, 0), (40, 0), (80, 0)),
    "channels and width off the lanes, wider pitches": ((3, 5, 6), (7, 2), (100, 1), (200, 3)),
    "one pixel, one channel": ((1, 1, 1), (3, 0), (4, 0), (5, 0)),
    "channels exactly the lanes (one group)": ((2, 3, 4), (0, 0), (30, 0), (60, 0)),
    "channels one above the lanes (two groups)": ((2, 3, 5), (0, 0), (30, 0), (60, 0)),
    "both inputs one tensor": ((2, 6, 9), (10, 1), (10, 1), (60, 0)),
}


@pytest.mark.parametrize("shape, first, second, out", WALKS.values(), ids=WALKS.keys())
def test_add_sequencer_walks_as_golden(shape, first, second, out):
    pitch = row_pitch(shape[1], shape[2], CONFIG)
    d = layer_descriptor("add", shape, shape[2], config=CONFIG, in_base=first[0], out_base=out[0],
                         in2_base=second[0], in2_row_pitch=pitch + second[1],
                         **add_descriptor_fields(add_params(0.1, 0, 0.2, 0, 0.3, 0)))
    d = dataclasses.replace(d, in_row_pitch=pitch + first[1], out_row_pitch=pitch + out[1])
    assert rtl_walk(d) == ref_walk(d)
