"""cocotb bench: the emitted Verilog of hdl/requant.py against golden/requant.py, every output compared.

Per setting (multiplier, shift, zero point, clamp bounds) the bench streams random accumulators, accumulators at
the edges (INT32_MIN, INT32_MAX, 0, +-1) and exact rounding ties, with random per-lane channel shifts k_c (0 and 15
included) and random bubbles; then it drains the pipeline before the next setting.
"""

import time

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.triggers import FallingEdge

from golden.config import NPUConfig
from golden.requant import INT32_MAX, INT32_MIN, requantize
from hdl.requant import RequantParams, Requantizer
from sim import bench_args, pack_lanes, reset, unpack_lanes, write_summary

PARAM_FIELDS = ("multiplier", "shift", "zero_point", "qmin", "qmax")


def random_setting(rng, index):
    """One layer's parameters; the first few are the corners of the parameter space."""
    corners = [
        dict(multiplier=(1 << 31) - 1, shift=0), dict(multiplier=1 << 30, shift=0), dict(multiplier=0, shift=0),
        dict(multiplier=1 << 30, shift=-31), dict(multiplier=(1 << 31) - 1, shift=31),
        dict(multiplier=1 << 30, shift=-16), dict(multiplier=1 << 30, shift=-1),
    ]
    if index < len(corners):
        setting = corners[index]
    else:
        setting = dict(multiplier=int(rng.integers(1 << 30, 1 << 31)), shift=int(rng.integers(-31, 8)))
    bounds = sorted(int(b) for b in rng.integers(-128, 128, size=2))
    kind = index % 4
    qmin, qmax = [(-128, 127), tuple(bounds), (-128, 127), (max(-128, bounds[0]), 127)][kind]
    zero_point = [-128, 127, 0, int(rng.integers(-128, 128))][index % 4]
    return dict(setting, zero_point=zero_point, qmin=qmin, qmax=qmax)


def accumulators(rng, setting, beats, lanes):
    """Random, edge and tie accumulators for one setting, shape [beats, lanes], and channel shifts k_c."""
    acc = np.where(rng.random((beats, lanes)) < 0.5,
                   rng.integers(INT32_MIN, INT32_MAX, size=(beats, lanes), endpoint=True),
                   rng.integers(-(1 << 20), 1 << 20, size=(beats, lanes)))
    channel_shift = rng.integers(0, 16, size=(beats, lanes))
    channel_shift[0::7] = 0
    channel_shift[3::7] = 15
    flat_acc, flat_k = acc.reshape(-1), channel_shift.reshape(-1)
    edges = [INT32_MIN, INT32_MIN + 1, -2, -1, 0, 1, 2, INT32_MAX - 1, INT32_MAX]
    flat_acc[:len(edges) * 2] = edges * 2
    # Exact ties of RoundingDivideByPOT: with multiplier 2**30 (one half) and a right shift r, the accumulator
    # 2 * (q * 2**r + 2**(r-1)) gives SRDHM output q * 2**r + 2**(r-1).
    if setting["multiplier"] == 1 << 30:
        count = len(flat_acc) // 4
        k = rng.integers(0, 16, size=count)
        r = np.maximum(k - setting["shift"], 1)
        q = rng.integers(-(1 << 10), 1 << 10, size=count)
        tie = 2 * (q * (np.int64(1) << r) + (np.int64(1) << (r - 1)))
        ok = (tie >= INT32_MIN) & (tie <= INT32_MAX) & (k - setting["shift"] >= 1)
        flat_acc[-count:] = np.where(ok, tie, flat_acc[-count:])
        flat_k[-count:] = np.where(ok, k, flat_k[-count:])
    return acc, channel_shift


@cocotb.test()
async def requantizer_matches_golden(dut):
    args = bench_args()
    config = NPUConfig.from_json(args["config"])
    lanes = config.lanes
    rng = np.random.default_rng(args["seed"])
    layout = Requantizer(config).signature.members["i"].signature.members["payload"].shape
    k_offset = layout["channel_shift"].offset
    params_layout = data.Layout.cast(RequantParams)

    await reset(dut, i__valid=0, o__ready=1)

    vectors = mismatches = cycles = 0
    started = time.perf_counter()
    for index in range(args["settings"]):
        setting = random_setting(rng, index)
        acc, channel_shift = accumulators(rng, setting, args["beats"], lanes)
        expected = requantize(acc, setting["multiplier"], setting["shift"], channel_shift,
                              setting["zero_point"], setting["qmin"], setting["qmax"])
        packed_params = 0
        for name in PARAM_FIELDS:
            field = params_layout[name]
            packed_params |= (setting[name] & ((1 << field.width) - 1)) << field.offset
        dut.params.value = packed_params
        payloads = [pack_lanes(a, 32) | pack_lanes(k, config.shift_bits) << k_offset
                    for a, k in zip(acc.tolist(), channel_shift.tolist())]
        bubbles = rng.random(len(payloads) * 2) < 0.1

        received = []
        beat = 0
        while len(received) < len(payloads):
            await FallingEdge(dut.clk)
            cycles += 1
            if dut.o__valid.value:
                received.append(unpack_lanes(dut.o__payload.value.to_unsigned(), 8, lanes))
            if beat < len(payloads) and not bubbles[cycles % len(bubbles)]:
                dut.i__payload.value = payloads[beat]
                dut.i__valid.value = 1
                beat += 1
            else:
                dut.i__valid.value = 0
        got = np.array(received, dtype=np.int64)
        wrong = np.argwhere(got != expected)
        vectors += expected.size
        mismatches += len(wrong)
        if len(wrong):
            b, lane = wrong[0]
            dut._log.error(f"first mismatch: setting {setting}, beat {b}, lane {lane}: acc {acc[b, lane]}, "
                           f"k_c {channel_shift[b, lane]}, expected {expected[b, lane]}, got {got[b, lane]}")
    elapsed = time.perf_counter() - started
    write_summary(args, vectors=vectors, mismatches=mismatches, cycles=cycles, seconds=elapsed)
    assert mismatches == 0, f"{mismatches} of {vectors} outputs differ from the golden model"
