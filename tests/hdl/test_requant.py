"""Amaranth-simulator unit tests of hdl/requant.py against golden/requant.py (quick; the cocotb bench is tb/):
``rtl_requantize`` (the simulated RTL) equals ``ref_requantize`` (the golden model) on every beat."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.requant import INT32_MAX, INT32_MIN, requantize
from hdl.requant import Requantizer


def ref_requantize(params, acc, channel_shift):
    """The golden requantizer's int8 results for ``acc``/``channel_shift`` (shape [beats, lanes]), beat by beat."""
    return requantize(acc, params["multiplier"], params["shift"], channel_shift,
                      params["zero_point"], params["qmin"], params["qmax"]).tolist()


def rtl_requantize(config, params, acc, channel_shift, *, ready_pattern=None, valid_pattern=None):
    """Stream ``acc``/``channel_shift`` (shape [beats, lanes]) through the RTL; return the int8 results in order.

    ``ready_pattern`` / ``valid_pattern`` are boolean sequences (cycled) that throttle the sink and the source.
    """
    dut = Requantizer(config)
    beats = len(acc)
    results = []

    async def source(ctx):
        for name, value in params.items():
            ctx.set(getattr(dut.params, name), value)
        await ctx.tick().repeat(Requantizer.params_setup)
        cycle = 0
        for beat in range(beats):
            while valid_pattern is not None and not valid_pattern[cycle % len(valid_pattern)]:
                cycle += 1
                await ctx.tick()
            for lane in range(config.lanes):
                ctx.set(dut.i.payload.acc[lane], int(acc[beat][lane]))
                ctx.set(dut.i.payload.channel_shift[lane], int(channel_shift[beat][lane]))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            cycle += 1

    async def sink(ctx):
        cycle = 0
        while len(results) < beats:
            ready = ready_pattern is None or ready_pattern[cycle % len(ready_pattern)]
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                results.append([payload[lane] for lane in range(config.lanes)])
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return results


EDGE_ACC = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -3, -2, -1, 0, 1, 2, 3, 1 << 30, INT32_MAX - 1, INT32_MAX]


@pytest.mark.parametrize("params", [
    dict(multiplier=(1 << 31) - 1, shift=0, zero_point=0, qmin=-128, qmax=127),
    dict(multiplier=1 << 30, shift=-1, zero_point=-128, qmin=-128, qmax=127),
    dict(multiplier=1518500250, shift=-9, zero_point=5, qmin=5, qmax=100),
    dict(multiplier=1 << 30, shift=20, zero_point=127, qmin=-128, qmax=127),
    dict(multiplier=0, shift=0, zero_point=3, qmin=-128, qmax=127),
    dict(multiplier=1234567890, shift=-31, zero_point=0, qmin=-128, qmax=127),
])
def test_requantizer_matches_golden(params):
    config = NPUConfig(lanes=4)
    rng = np.random.default_rng(1)
    edges = np.array(EDGE_ACC * 4, dtype=np.int64)[:52].reshape(-1, 4)
    wide = rng.integers(INT32_MIN, INT32_MAX, size=(40, 4), endpoint=True)
    narrow = rng.integers(-(1 << 16), 1 << 16, size=(40, 4))
    acc = np.concatenate([edges, wide, narrow])
    channel_shift = rng.integers(0, 16, size=acc.shape)
    channel_shift[:2] = [[0, 15, 0, 15], [15, 0, 15, 0]]
    assert rtl_requantize(config, params, acc, channel_shift) == ref_requantize(params, acc, channel_shift)


def test_requantizer_backpressure_and_bubbles_keep_order():
    config = NPUConfig(lanes=2)
    params = dict(multiplier=1700000000, shift=-6, zero_point=-3, qmin=-128, qmax=127)
    rng = np.random.default_rng(2)
    acc = rng.integers(-(1 << 14), 1 << 14, size=(60, 2))
    channel_shift = rng.integers(0, 16, size=acc.shape)
    got = rtl_requantize(config, params, acc, channel_shift,
                         ready_pattern=[1, 0, 0, 1, 1, 0, 1], valid_pattern=[1, 1, 0, 1, 0, 0])
    assert got == ref_requantize(params, acc, channel_shift)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_requantizer_rejects_non_config():
    with pytest.raises(TypeError, match=r"^config must be an NPUConfig, not 8$"):
        Requantizer(8)
