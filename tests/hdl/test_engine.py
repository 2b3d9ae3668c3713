"""Amaranth-simulator tests of hdl/engine.py (4 lanes): golden/stimulus.py layers of every kind, outputs, exact cycles;
``rtl_engine`` (the simulated RTL) equals ``ref_engine`` (the golden engine and cycle model).

The cocotb benches in tb/ run the default 64-MAC engine's Verilog; these run in seconds without a Verilog toolchain.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from golden.config import NPUConfig
from golden.descriptor import encode_descriptor
from golden.engine import run_layer
from golden.images import load_activation
from golden.layouts import pack_bias_words, pack_words
from golden.sequencer import layer_cycles
from golden.stimulus import Flavour, random_layers
from hdl.engine import Engine

CONFIG = NPUConfig(lanes=4, act_depth=512, weight_depth=256, bias_depth=32, dim_bits=6, channel_bits=7, table_depth=4)
PLAIN = Flavour()

#: ``golden.stimulus`` specs, all placed in one set of images (one engine build holds every layer).
LAYERS = [(f"{kind}-{'x'.join(map(str, shape))}{'-' + flavour.table if flavour.table else ''}", kind, shape, cout,
           kernel, stride, padding, flavour)
          for kind, shape, cout, kernel, stride, padding, flavour in (
              ("conv", (3, 4, 4), 4, (1, 1), (1, 1), (0, 0, 0, 0), PLAIN),
              ("conv", (4, 5, 6), 7, (3, 3), (1, 1), (1, 1, 1, 1), PLAIN),
              ("conv", (5, 5, 6), 5, (3, 3), (2, 2), (0, 1, 0, 1), PLAIN),
              ("fully_connected", (1, 1, 10), 6, (1, 1), (1, 1), (0, 0, 0, 0), PLAIN),
              ("depthwise", (4, 6, 6), 6, (3, 3), (1, 1), (1, 1, 1, 1), PLAIN),
              ("depthwise", (5, 7, 10), 10, (3, 3), (2, 2), (1, 1, 1, 1), PLAIN),
              ("depthwise", (3, 5, 4), 4, (1, 2), (1, 1), (0, 0, 0, 1), PLAIN),
              ("average_pool", (3, 4, 6), 6, (3, 4), (1, 1), (0, 0, 0, 0), PLAIN),
              ("add", (3, 5, 6), 6, (1, 1), (1, 1), (0, 0, 0, 0), PLAIN),
              ("add", (1, 1, 3), 3, (1, 1), (1, 1), (0, 0, 0, 0), PLAIN),      # one word: nothing else in flight
              ("conv", (4, 5, 6), 7, (3, 3), (1, 1), (1, 1, 1, 1), Flavour(table="random")),
              ("depthwise", (5, 7, 10), 10, (3, 3), (2, 2), (1, 1, 1, 1), Flavour(table="constant")),
              ("add", (3, 5, 6), 6, (1, 1), (1, 1), (0, 0, 0, 0), Flavour(table="random")),
              # max pools: inputs mostly -128 (padding never wins), ResNet's 3x3/2, 2x2/2 (YOLO), a table after one
              ("max_pool", (5, 7, 6), 6, (3, 3), (2, 2), (1, 1, 1, 1), Flavour(input_zero_point=-128, tiny_inputs=True)),
              ("max_pool", (4, 6, 10), 10, (2, 2), (2, 2), (0, 0, 0, 0), PLAIN),
              ("max_pool", (4, 5, 4), 4, (3, 3), (1, 1), (1, 1, 1, 1), Flavour(table="random", clamp="relu")),
          )]
SEED = 2026


def ref_engine(descriptor, images):
    """What the engine must give for one layer: the golden engine's output tensor, the cycle model's cycles and the
    descriptor's MACs."""
    model = dataclasses.replace(images, activation=images.activation.copy())
    return dict(output=run_layer(descriptor, model, CONFIG)[0].tolist(), cycles=layer_cycles(descriptor, CONFIG),
                mac_ops=descriptor.macs)


def rtl_engine(descriptor, images, *, load=False):
    """Run one layer in the RTL; return, as :func:`ref_engine` does, the output tensor read back through the host port
    and the counters.

    With ``load`` the engine is built empty and the images are written through its host and load ports first.
    """
    dut = Engine(CONFIG, images=None if load else images)
    result = {}

    async def bench(ctx):
        if load:
            await load_images(ctx, dut, images)
        ctx.set(dut.descriptor.as_value(), encode_descriptor(descriptor, CONFIG))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(2 * layer_cycles(descriptor, CONFIG) + 50):
            if ctx.get(dut.done):
                break
            await ctx.tick()
        assert ctx.get(dut.done) and not ctx.get(dut.busy)
        result.update({name: ctx.get(getattr(dut, name)) for name in ("cycles", "mac_ops")})
        image = np.zeros_like(images.activation)
        words = descriptor.out_height * descriptor.out_row_pitch
        addresses = [(bank, a) for bank in range(CONFIG.lanes) for a in range(descriptor.out_base,
                                                                               descriptor.out_base + words)]
        for index in range(len(addresses) + 2):   # read data follows the address by 2 cycles
            if index >= 2:
                bank, a = addresses[index - 2]
                image[bank, a] = [ctx.get(dut.host.read_data[lane]) for lane in range(CONFIG.lanes)]
            if index < len(addresses):
                ctx.set(dut.host.bank, addresses[index][0])
                ctx.set(dut.host.address, addresses[index][1])
            await ctx.tick()
        result["output"] = load_activation(image, descriptor.out_shape, base=descriptor.out_base,
                                           config=CONFIG, skew=descriptor.out_skew).tolist()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result


async def load_images(ctx, dut, images):
    # Every non-zero word of the images through the ports, one per cycle.
    lanes = CONFIG.lanes
    for bank in range(lanes):
        for address in np.flatnonzero(images.activation[bank].any(axis=1)):
            ctx.set(dut.host.bank, bank)
            ctx.set(dut.host.address, int(address))
            ctx.set(dut.host.write_data.as_value(), pack_words(images.activation[bank, address][None], 8)[0])
            ctx.set(dut.host.write, 1)
            await ctx.tick()
    ctx.set(dut.host.write, 0)
    weights = pack_words(images.weights.reshape(len(images.weights), -1), 8)
    biases = pack_bias_words(images.bias, images.channel_shift, CONFIG)
    entries = [int(entry) & 0xFF for entry in images.tables.reshape(-1)]
    for port, words in ((dut.weight_load, weights), (dut.bias_load, biases), (dut.table_load, entries)):
        for address, word in enumerate(words):
            if word:
                ctx.set(port.address, address)
                ctx.set(Value.cast(port.data), word)
                ctx.set(port.write, 1)
                await ctx.tick()
        ctx.set(port.write, 0)


@pytest.mark.parametrize("index", range(len(LAYERS)), ids=[spec[0] for spec in LAYERS])
def test_engine_matches_golden(index):
    cases, images = random_layers(LAYERS, CONFIG, SEED)
    case = cases[index]
    expected = ref_engine(case.descriptor, images)
    assert expected["output"] == case.expected.tolist()
    assert rtl_engine(case.descriptor, images) == expected


@pytest.mark.parametrize("index", [1, 5, 8, 10], ids=["conv", "depthwise", "add", "conv-table"])
def test_engine_loaded_through_its_ports(index):
    cases, images = random_layers(LAYERS, CONFIG, SEED)
    case = cases[index]
    expected = ref_engine(case.descriptor, images)
    assert expected["output"] == case.expected.tolist()
    assert rtl_engine(case.descriptor, images, load=True) == expected


@pytest.mark.parametrize("index, skew", [(1, 3), (5, 1), (8, 2), (14, 3)], ids=["conv", "depthwise", "add", "max_pool"])
def test_engine_writes_with_its_banks_turned_by_out_skew(index, skew):
    cases, images = random_layers(LAYERS, CONFIG, SEED)
    descriptor = dataclasses.replace(cases[index].descriptor, out_skew=skew)
    expected = ref_engine(descriptor, images)
    assert expected["output"] == cases[index].expected.tolist()
    assert rtl_engine(descriptor, images) == expected


def rtl_host_port(words, *, gap):
    """Write ``{(bank, address): word}`` through an idle engine's host port, each word's read address ``gap`` cycles
    after its write strobe; return the words read back."""
    dut = Engine(CONFIG)
    got = {}

    async def bench(ctx):
        for (bank, address), word in words.items():
            ctx.set(dut.host.bank, bank)
            ctx.set(dut.host.address, address)
            for lane, value in enumerate(word):
                ctx.set(dut.host.write_data[lane], value)
            ctx.set(dut.host.write, 1)
            await ctx.tick()
            ctx.set(dut.host.write, 0)
            await ctx.tick().repeat(gap + 1)
            got[bank, address] = [ctx.get(dut.host.read_data[lane]) for lane in range(CONFIG.lanes)]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_host_port_writes_and_reads_while_idle():
    """A word written in cycle t reads back from t + 2 (the write stage, then the RAM's write); at t + 1 the read
    port, not transparent, still sees the old word (here the initial zeros)."""
    words = {(1, 5): [1, -2, 3, -128], (3, 127): [127, 0, -1, 64], (0, 0): [-1, -1, -1, -1]}
    assert rtl_host_port(words, gap=2) == words
    assert rtl_host_port(words, gap=1) == {where: [0] * CONFIG.lanes for where in words}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_engine_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"^the engine needs at least 2 lanes, not 1$"):
        Engine(NPUConfig(lanes=1))
    with pytest.raises(TypeError, match=r"^images must be a golden.images.MemoryImages, not 3$"):
        Engine(CONFIG, images=3)
