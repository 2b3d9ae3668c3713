"""Amaranth-simulator tests of hdl/mac_array.py against a NumPy model: operand selection, passes, both output modes;
``rtl_mac_array`` (the simulated RTL) equals ``ref_mac_array`` (the model) word for word."""

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.pool import GAP_WEIGHT
from golden.sequencer import DRAIN_LATENCY, REDUCE_LATENCY
from hdl.mac_array import MACArray

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

CONFIG = NPUConfig(lanes=4)
META = data.StructLayout({"tag": unsigned(8)})


def random_steps(rng, lanes, passes, *, per_row, diagonal=False, maximum=False):
    """Passes of random length (per-row passes at least ``lanes`` steps, as the sequencer spaces them)."""
    steps = []
    for index in range(passes):
        length = int(rng.integers(1, 6)) if not per_row else int(rng.integers(lanes, lanes + 4))
        for position in range(length):
            steps.append(dict(
                words=rng.integers(-128, 128, size=(lanes, lanes)),
                weights=rng.integers(-128, 128, size=(lanes, lanes)),
                word_select=rng.integers(0, lanes, size=lanes), word_valid=rng.integers(0, 2, size=lanes),
                weight_select=rng.integers(0, lanes, size=lanes), diagonal=diagonal, max=maximum,
                first=position == 0, last=position == length - 1, per_row=per_row, tag=index))
    return steps


def ref_mac_array(steps, zero_point, lanes):
    """Expected output words ``(tag, word index, sums)`` in order."""
    out, acc = [], np.zeros((lanes, lanes), dtype=np.int64)
    for step in steps:
        a = np.where(np.eye(lanes, dtype=bool), GAP_WEIGHT, 0) if step["diagonal"] \
            else step["weights"][step["weight_select"]]
        if step["max"]:     # weight 1, padding -128, running maxima
            b = np.where(step["word_valid"][:, None] == 1, step["words"][step["word_select"]], -128)
            acc = b if step["first"] else np.maximum(acc, b)
        else:
            b = np.where(step["word_valid"][:, None] == 1, step["words"][step["word_select"]] - zero_point, 0)
            acc = (0 if step["first"] else acc) + a * b
        if step["last"]:
            if step["per_row"]:
                out += [(step["tag"], k, list(acc[k])) for k in range(lanes)]
            else:
                out.append((step["tag"], 0, list(acc.sum(axis=1))))
    return out


def rtl_mac_array(steps, zero_point, lanes, *, gap=0):
    """Drive ``steps`` (``gap`` idle cycles after each, with random operands that the array must ignore), each step's
    data ``SELECT_LEAD`` cycles after its control, and collect the output words.

    Returns ``(words, latency)``: the ``(tag, word index, sums)`` in order, and the cycles from each pass's last step's
    data at the input to that pass's first word at the output.
    """
    dut = MACArray(NPUConfig(lanes=lanes), META)
    lead = MACArray.SELECT_LEAD
    got, last_steps, first_words = [], [], {}
    noise = np.random.default_rng(1)

    async def bench(ctx):
        ctx.set(dut.zero_point, zero_point)
        schedule = [step for step in steps for step in [step] + [None] * gap] + [None] * (3 * lanes + 10)
        for cycle, step in enumerate(schedule):
            ctx.set(dut.i.valid, step is not None)
            if step is None:        # noise on the selects too: the array must ignore them
                for r in range(lanes):
                    ctx.set(dut.i.payload.word_select[r], int(noise.integers(0, lanes)))
                    ctx.set(dut.i.payload.weight_select[r], int(noise.integers(0, lanes)))
            else:
                for r in range(lanes):
                    ctx.set(dut.i.payload.word_select[r], int(step["word_select"][r]))
                    ctx.set(dut.i.payload.word_valid[r], int(step["word_valid"][r]))
                    ctx.set(dut.i.payload.weight_select[r], int(step["weight_select"][r]))
                for name in ("diagonal", "max", "first", "last", "per_row"):
                    ctx.set(getattr(dut.i.payload, name), int(step[name]))
                ctx.set(dut.i.payload.meta.tag, step["tag"])
            data = schedule[cycle - lead] if cycle >= lead else None
            for r in range(lanes):
                if data is None:
                    ctx.set(dut.words[r].as_value(), _pack(noise.integers(-128, 128, size=lanes)))
                    ctx.set(dut.weights[r].as_value(), _pack(noise.integers(-128, 128, size=lanes)))
                else:
                    ctx.set(dut.words[r].as_value(), _pack(data["words"][r]))
                    ctx.set(dut.weights[r].as_value(), _pack(data["weights"][r]))
            if data is not None and data["last"]:
                last_steps.append(cycle)
            if ctx.get(dut.o.valid):
                payload = ctx.get(dut.o.payload)
                first_words.setdefault(payload.meta.tag, cycle)
                got.append((payload.meta.tag, payload.word, [payload.acc[k] for k in range(lanes)]))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    latencies = {first_words[tag] - cycle for tag, cycle in enumerate(last_steps) if tag in first_words}
    return got, latencies


def _pack(values):
    return sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(values))


@pytest.mark.parametrize("per_row, gap", [(False, 0), (False, 2), (True, 0)])
def test_mac_array_matches_model(per_row, gap):
    rng = np.random.default_rng(7 + gap + 10 * per_row)
    lanes = CONFIG.lanes
    steps = random_steps(rng, lanes, 12, per_row=per_row)
    zero_point = int(rng.integers(-128, 128))
    got, latencies = rtl_mac_array(steps, zero_point, lanes, gap=gap)
    assert got == ref_mac_array(steps, zero_point, lanes)
    array = MACArray(CONFIG, META)
    assert latencies == {array.drain_latency if per_row else array.latency}


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_mac_array_max_mode_matches_model(gap):
    """Running maxima, per row, with bubbles between the steps (the comparison is made a cycle ahead)."""
    rng = np.random.default_rng(11 + gap)
    lanes = CONFIG.lanes
    steps = random_steps(rng, lanes, 12, per_row=True, maximum=True)
    got, latencies = rtl_mac_array(steps, 0, lanes, gap=gap)
    assert got == ref_mac_array(steps, 0, lanes)
    assert latencies == {MACArray(CONFIG, META).drain_latency}


def test_mac_array_diagonal_pool_weights_and_edges():
    rng = np.random.default_rng(3)
    lanes = 2
    steps = random_steps(rng, lanes, 4, per_row=False, diagonal=True)
    for step in steps:
        step["words"][:] = -128
        step["word_valid"][:] = 1
    assert rtl_mac_array(steps, 127, lanes)[0] == ref_mac_array(steps, 127, lanes)


def test_latencies_are_the_cycle_model_constants():
    for lanes in (2, 4, 8):
        array = MACArray(NPUConfig(lanes=lanes), META)
        assert array.latency == REDUCE_LATENCY + NPUConfig(lanes=lanes).lane_bits
        assert array.drain_latency == DRAIN_LATENCY


def test_mac_array_rejects_bad_config():
    with pytest.raises(TypeError, match=r"^config must be an NPUConfig, not 4$"):
        MACArray(4, META)
    with pytest.raises(ValueError, match=r"^the MAC array needs at least 2 lanes, not 1$"):
        MACArray(NPUConfig(lanes=1), META)
