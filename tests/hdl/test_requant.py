"""Amaranth-simulator unit tests of hdl/requant.py against golden/requant.py (quick; the cocotb bench is tb/):
``rtl_requantize`` (the simulated RTL) equals ``ref_requantize`` (the golden model) on every beat."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.requant import INT32_MAX, INT32_MIN, requantize, rounding_divide_by_pot, saturate_int32
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


def rtl_requantize_flat(config, params, acc, channel_shift):
    """:func:`rtl_requantize` on flat arrays: whole beats of ``config.lanes`` (zeros after the last value)."""
    pad = -len(acc) % config.lanes
    got = rtl_requantize(config, params, np.pad(acc, (0, pad)).reshape(-1, config.lanes),
                         np.pad(channel_shift, (0, pad)).reshape(-1, config.lanes))
    return np.array(got, dtype=np.int64).reshape(-1)[:len(acc)]


def exact_ties(multiplier, shift, rng):
    """Accumulators and channel shifts on which one rounding step of ``requantize`` sits exactly on a tie.

    SRDHM ties: with ``t`` trailing zeros in ``multiplier``, ``x * multiplier`` is ``2**30`` modulo ``2**31`` exactly
    when ``x`` is an odd multiple of ``2**(30 - t)``; drawn with right shift 0 (``k_c = shift``, or a left shift of
    ``shift - k_c`` up to 2) and ``|h| <= 127`` so the result is the rounded value itself. RDBPOT ties: ``h = +-(q * 2**r
    + 2**(r - 1))`` for every right shift ``r = k_c - shift`` in 1..31 reachable with ``k_c`` 0..15, from the
    accumulator ``ceil((h * 2**31 - 2**30) / multiplier)``, whose SRDHM is ``h`` (the multiplier is at least ``2**30``).

    Returns:
        ``(acc, channel_shift, kind)``: flat int64 arrays; ``kind`` is ``"srdhm+"``, ``"srdhm-"``, ``"rdbpot+"`` or
        ``"rdbpot-"`` (the sign of the product or of ``h``).
    """
    acc, ks, kind = [], [], []
    trailing = (multiplier & -multiplier).bit_length() - 1
    for left in range(3):
        k = shift - left
        if not 0 <= k <= 15 or left > 30 - trailing:
            continue
        unit = 1 << (30 - trailing)
        limit = 126 * (1 << 31) // multiplier                   # |x| that keeps |h| <= 127
        for x in range(-(limit // unit) * unit, limit + 1, unit):
            if (x // unit) % 2:
                assert (x * multiplier) % (1 << 31) == 1 << 30
                acc.append(x >> left)
                ks.append(k)
                kind.append("srdhm+" if x > 0 else "srdhm-")
    for k in range(16):
        right = k - shift
        if not 1 <= right <= 31:
            continue
        for q in rng.choice(127, size=12, replace=False):
            for sign in (1, -1):
                h = sign * (int(q) * (1 << right) + (1 << (right - 1)))
                a = -((-(h * (1 << 31) - (1 << 30))) // multiplier)      # ceil division
                if INT32_MIN <= a <= INT32_MAX:
                    assert (a * multiplier + (1 << 30)) >> 31 == h
                    acc.append(a)
                    ks.append(k)
                    kind.append("rdbpot+" if sign > 0 else "rdbpot-")
    return np.array(acc, dtype=np.int64), np.array(ks, dtype=np.int64), np.array(kind)


#: (multiplier, shift): multipliers with 30, 29, 27, 26 and 22 trailing zeros (SRDHM ties at right shift 0, some with a
#: left shift) and random ones whose shifts reach RDBPOT's right shifts 1..31.
TIE_SETTINGS = [(1 << 30, 2), ((1 << 30) + (1 << 29), 1), ((1 << 30) + 3 * (1 << 27), 2),
                ((1 << 30) + 5 * (1 << 26), 0), ((1 << 30) + 77 * (1 << 22), 3), (1518500250, -8), (2147483647, -16)]


def test_requantizer_exact_ties_of_both_rounding_steps():
    """Exact ties of SRDHM (toward +inf) and RDBPOT (away from zero), both signs, hundreds of each, every one decisive:
    rounding it the other way would change the int8 result (so a wrong tie direction in the RTL cannot hide)."""
    config = NPUConfig(lanes=8)
    rng = np.random.default_rng(10)
    counts = dict.fromkeys(("srdhm+", "srdhm-", "rdbpot+", "rdbpot-"), 0)
    for multiplier, shift in TIE_SETTINGS:
        params = dict(multiplier=multiplier, shift=shift, zero_point=0, qmin=-128, qmax=127)
        acc, channel_shift, kind = exact_ties(multiplier, shift, rng)
        expected = np.array(ref_requantize(params, acc, channel_shift))

        # The other rounding of each tie: SRDHM one lower (then RDBPOT as before), RDBPOT one toward zero.
        right = np.clip(channel_shift - shift, 0, 32)
        h = (saturate_int32(acc << np.maximum(shift - channel_shift, 0)) * multiplier + (1 << 30)) >> 31
        other = np.where(np.char.startswith(kind, "srdhm"), rounding_divide_by_pot(h - 1, right),
                         rounding_divide_by_pot(h, right) - np.sign(h))
        assert np.all(np.clip(other, -128, 127) != expected)
        for name in counts:
            counts[name] += int(np.sum(kind == name))

        np.testing.assert_array_equal(rtl_requantize_flat(config, params, acc, channel_shift), expected,
                                      err_msg=f"multiplier {multiplier}, shift {shift}")
    print(f"\nexact ties driven through the RTL: {counts}")
    assert min(counts.values()) >= 200, counts


@pytest.mark.parametrize("shift", [15, 31])
def test_requantizer_left_shift_saturates(shift):
    """acc * 2**left saturates to int32 (docs/arithmetic.md, section 5) at the boundary of every left shift 1..31
    (k_c = 0..15 under layer shifts 15 and 31), both signs: a wrap would flip the sign of the result."""
    config = NPUConfig(lanes=4)
    params = dict(multiplier=(1 << 30) + 12345, shift=shift, zero_point=-3, qmin=-128, qmax=127)
    rng = np.random.default_rng(shift)
    acc, channel_shift = [], []
    for k in range(16):
        left = shift - k
        if left < 1:
            continue
        edge = 1 << (31 - left)                   # the smallest accumulator with acc * 2**left >= 2**31
        values = [edge - 1, edge, -edge, -edge - 1, INT32_MAX, INT32_MIN, *rng.integers(-2 * edge, 2 * edge, size=6)]
        acc += values
        channel_shift += [k] * len(values)
    acc, channel_shift = np.array(acc, dtype=np.int64), np.array(channel_shift, dtype=np.int64)
    saturated = (acc << (shift - channel_shift) > INT32_MAX) | (acc << (shift - channel_shift) < INT32_MIN)
    assert 2 * 15 <= saturated.sum() < len(acc)
    expected = np.array(ref_requantize(params, acc, channel_shift))
    assert np.all(expected[saturated] == np.where(acc[saturated] > 0, 127, -128))
    np.testing.assert_array_equal(rtl_requantize_flat(config, params, acc, channel_shift), expected)
