"""Amaranth-simulator tests of hdl/controller.py (4 lanes): a chained program of golden/stimulus.py layers runs with
one ``start``, every layer's output equal to golden.controller.run_program's, its counters to the cycle model; step
mode; corrupt descriptors stop the program with golden.controller's error, never a hang."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.controller import CHECKS, hardware_error, program_cycles, run_program
from golden.descriptor import encode_descriptor
from golden.images import load_activation
from golden.layouts import activation_location, groups
from golden.sequencer import layer_cycles
from golden.stimulus import chained_program, mutated_descriptor, named_specs, random_layers
from hdl.controller import Controller

CONFIG = NPUConfig(lanes=4, act_depth=256, weight_depth=128, bias_depth=16, dim_bits=6, channel_bits=7,
                   program_depth=8)
#: A small network's shapes (layers 1, 4, 5 read the previous output) with an independent layer 3.
SPECS = named_specs([
    ("conv", (4, 5, 6), 7, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
    ("depthwise", (4, 5, 7), 7, (3, 3), (2, 2), (0, 1, 0, 1), "plain"),
    ("conv", (3, 4, 4), 4, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
    ("depthwise", (3, 4, 4), 4, (3, 3), (1, 1), (1, 1, 1, 1), "plain"),
    ("average_pool", (3, 4, 4), 4, (3, 4), (1, 1), (0, 0, 0, 0), "plain"),
    ("fully_connected", (1, 1, 4), 6, (1, 1), (1, 1), (0, 0, 0, 0), "plain"),
], "program")
SEED = 2026


def program():
    """``(descriptors, images, outputs)``: the chained program, its images and golden's output of every layer."""
    cases, images = random_layers(SPECS, CONFIG, SEED)
    descriptors = chained_program(cases, CONFIG)
    model = dataclasses.replace(images, activation=images.activation.copy())
    return descriptors, images, [output.tolist() for output in run_program(descriptors, model, CONFIG)]


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


async def start(ctx, dut, layer_count, *, step=0):
    ctx.set(dut.layer_count, layer_count)
    ctx.set(dut.step, step)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)


async def wait_for(ctx, dut, signals, cycles):
    """Tick until one of ``signals`` is high, at most ``cycles`` times (a hang fails)."""
    for _ in range(cycles):
        if any(ctx.get(getattr(dut, name)) for name in signals):
            return
        await ctx.tick()
    raise AssertionError(f"none of {signals} within {cycles} cycles")


async def read_output(ctx, dut, d):
    """Layer ``d``'s output tensor through the host port (read data 2 cycles after the address)."""
    y, x, g = np.meshgrid(np.arange(d.out_height), np.arange(d.out_width), np.arange(groups(d.out_channels, CONFIG)),
                          indexing="ij")
    banks, addresses = activation_location(y.ravel(), x.ravel(), g.ravel(), base=d.out_base, pitch=d.out_row_pitch,
                                           width=d.out_width, config=CONFIG)
    words = list(zip(banks.tolist(), addresses.tolist()))
    image = np.zeros((CONFIG.lanes, CONFIG.act_depth, CONFIG.lanes), dtype=np.int8)
    for index in range(len(words) + 2):
        if index >= 2:
            image[words[index - 2]] = [ctx.get(dut.host.read_data[lane]) for lane in range(CONFIG.lanes)]
        if index < len(words):
            ctx.set(dut.host.bank, words[index][0])
            ctx.set(dut.host.address, words[index][1])
        await ctx.tick()
    return load_activation(image, d.out_shape, base=d.out_base, pitch=d.out_row_pitch, config=CONFIG).tolist()


async def read_counters(ctx, dut, layer):
    ctx.set(dut.counter_address, layer)
    await ctx.tick().repeat(Controller.COUNTER_LATENCY)
    return {name: ctx.get(getattr(dut.counter_data, name)) for name in ("cycles", "active_cycles", "mac_ops")}


def expected_counters(descriptors):
    return [dict(cycles=layer_cycles(d, CONFIG), mac_ops=d.macs) for d in descriptors]


@pytest.mark.parametrize("step", [0, 1], ids=["run", "step"])
def test_program_runs_with_one_start(step):
    descriptors, images, outputs = program()
    dut = Controller(CONFIG, images=images, descriptors=[encode_descriptor(d, CONFIG) for d in descriptors])
    got = {}

    async def bench(ctx):
        await start(ctx, dut, len(descriptors), step=step)
        got["outputs"] = []
        for layer, d in enumerate(descriptors[:-1] if step else []):
            await wait_for(ctx, dut, ["paused", "done"], 2 * layer_cycles(d, CONFIG) + 50)
            assert ctx.get(dut.paused) and ctx.get(dut.layer) == layer and ctx.get(dut.busy)
            got["outputs"].append(await read_output(ctx, dut, d))
            await ctx.tick().repeat(7)                # paused cycles are not counted
            ctx.set(dut.resume, 1)
            await ctx.tick()
            ctx.set(dut.resume, 0)
        await wait_for(ctx, dut, ["done"], 2 * program_cycles(descriptors, CONFIG) + 50)
        assert not ctx.get(dut.error) and not ctx.get(dut.busy)
        got["cycles"] = ctx.get(dut.cycles)
        for d in descriptors[len(got["outputs"]):]:   # each output has its own region: all survive the run
            got["outputs"].append(await read_output(ctx, dut, d))
        got["counters"] = []
        for layer in range(len(descriptors)):
            counters = await read_counters(ctx, dut, layer)
            assert counters.pop("active_cycles") <= counters["cycles"]
            got["counters"].append(counters)

    simulate(dut, bench)
    assert got["outputs"] == outputs
    assert got["counters"] == expected_counters(descriptors)
    assert got["cycles"] == program_cycles(descriptors, CONFIG)


def corrupt_descriptors(count, seed):
    """``count`` mutations of the program's layers that the controller refuses, each check at least once."""
    descriptors = program()[0]
    rng = np.random.default_rng(seed)
    found = {}
    while len(found) < count or set(CHECKS[1:]) - {check for check, _ in found.values()}:
        bad = mutated_descriptor(rng, descriptors[int(rng.integers(len(descriptors)))], CONFIG)
        check = hardware_error(bad, CONFIG)
        if check is not None:
            found[encode_descriptor(bad, CONFIG, check=False)] = (check, bad)
    return list(found.items())


def test_corrupt_descriptors_stop_the_program_with_golden_error():
    descriptors, images, _ = program()
    first = descriptors[2]                       # a short layer runs before the corrupt one
    corrupt = corrupt_descriptors(40, 5)
    dut = Controller(CONFIG, images=images, descriptors=[encode_descriptor(first, CONFIG)])
    got = []

    async def bench(ctx):
        for word, _ in corrupt:
            ctx.set(dut.descriptor_load.address, 1)
            ctx.set(dut.descriptor_load.data, word)
            ctx.set(dut.descriptor_load.write, 1)
            await ctx.tick()
            ctx.set(dut.descriptor_load.write, 0)
            await start(ctx, dut, 3)
            await wait_for(ctx, dut, ["done"], layer_cycles(first, CONFIG) + 50)
            got.append((ctx.get(dut.error), ctx.get(dut.error_layer), CHECKS[ctx.get(dut.error_check)]))
        for layer_count in (0, 9, 255):
            await start(ctx, dut, layer_count)
            await wait_for(ctx, dut, ["done"], 3)
            got.append((ctx.get(dut.error), ctx.get(dut.error_layer), CHECKS[ctx.get(dut.error_check)]))
        await start(ctx, dut, 1)                  # the next start clears the error
        await wait_for(ctx, dut, ["done"], layer_cycles(first, CONFIG) + 50)
        got.append(ctx.get(dut.error))
        got.append(await read_counters(ctx, dut, 0))

    simulate(dut, bench)
    assert got[:len(corrupt)] == [(1, 1, check) for _, (check, _) in corrupt]
    assert got[len(corrupt):-2] == [(1, 0, "layer_count")] * 3
    assert got[-2] == 0
    assert got[-1] == dict(cycles=layer_cycles(first, CONFIG), active_cycles=got[-1]["active_cycles"],
                           mac_ops=first.macs)


def boundary_descriptors():
    """A short layer with each region (input, output) ending exactly at ``act_depth`` and one word past it, the row
    pitches at their minimum and one below: the comparisons' edges, which random corruption rarely hits."""
    first = program()[0][2]
    variants = []
    for label, height in (("in", first.in_height), ("out", first.out_height)):
        pitch = getattr(first, f"{label}_row_pitch")
        end = CONFIG.act_depth - height * pitch
        variants += [{f"{label}_base": end}, {f"{label}_base": end + 1}, {f"{label}_row_pitch": pitch - 1}]
    descriptors = [dataclasses.replace(first, **fields) for fields in variants]
    expected = [hardware_error(d, CONFIG) for d in descriptors]
    assert expected == [None, "activation_bounds", "row_pitch"] * 2
    return descriptors, expected


def test_region_checks_at_their_edges():
    descriptors, expected = boundary_descriptors()
    _, images, _ = program()
    longest = max(layer_cycles(d, CONFIG) for d, check in zip(descriptors, expected) if check is None)
    dut = Controller(CONFIG, images=images)
    got = []

    async def bench(ctx):
        for descriptor in descriptors:
            ctx.set(dut.descriptor_load.address, 0)
            ctx.set(dut.descriptor_load.data, encode_descriptor(descriptor, CONFIG, check=False))
            ctx.set(dut.descriptor_load.write, 1)
            await ctx.tick()
            ctx.set(dut.descriptor_load.write, 0)
            await start(ctx, dut, 1)
            await wait_for(ctx, dut, ["done"], longest + 50)
            got.append(CHECKS[ctx.get(dut.error_check)] if ctx.get(dut.error) else None)

    simulate(dut, bench)
    assert got == expected


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_controller_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"^9 descriptors exceed program_depth 8$"):
        Controller(CONFIG, descriptors=[0] * 9)
    with pytest.raises(ValueError, match=r"^descriptors must be \d+-bit words$"):
        Controller(CONFIG, descriptors=[-1])
