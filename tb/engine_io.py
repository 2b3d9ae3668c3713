"""What the engine benches share: run one layer on the engine's ports, or a program on the controller's; write and
read tensors through the host port; read the controller's counters; name the first mismatch.

``tb/engine_bench.py`` (fixed benches) and ``tb/regress_bench.py`` (the constrained-random regression) drive the
emitted Verilog of ``hdl/engine.py`` through these, ``tb/controller_bench.py`` that of ``hdl/controller.py`` (whose
host port has the engine's names).
"""

import time

import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, with_timeout

from golden.descriptor import encode_descriptor
from golden.images import load_activation
from golden.layouts import activation_location, groups, pack_words
from golden.sequencer import layer_cycles
from hdl.engine import COUNTER_BITS
from sim import pack_lanes, unpack_lanes

__all__ = ["ActivationBanks", "tensor_words", "COUNTERS", "run_layer", "start_program", "wait_for", "read_counters", "load_words",
           "write_tensor", "read_tensor", "first_mismatch"]

#: The engine's performance counters.
COUNTERS = ("cycles", "active_cycles", "mac_ops")


async def run_layer(dut, descriptor, config):
    """Run one layer from a falling edge: descriptor set, ``start`` pulsed, ``done`` awaited while the simulator runs
    freely; returns the counters and the wall seconds of the run.

    The cycle model bounds the wait: a design that never finishes fails instead of hanging.
    """
    await FallingEdge(dut.clk)
    dut.descriptor.value = encode_descriptor(descriptor, config)
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0
    started = time.perf_counter()
    await with_timeout(RisingEdge(dut.done), 10 * (2 * layer_cycles(descriptor, config) + 100), "ns")
    seconds = time.perf_counter() - started
    await ReadOnly()  # the counters change on the same clock edge as done
    counters = {name: getattr(dut, name).value.to_unsigned() for name in COUNTERS}
    await FallingEdge(dut.clk)
    return counters, seconds


async def start_program(dut, layer_count, *, step=0):
    """From a falling edge: the controller's ``layer_count`` and ``step`` set, ``start`` pulsed for one cycle."""
    dut.layer_count.value, dut.step.value, dut.start.value = layer_count, step, 1
    await FallingEdge(dut.clk)
    dut.start.value = 0


async def wait_for(dut, signal, cycles):
    """Wait for a rising edge of ``signal`` (e.g. ``"done"``), at most ``cycles`` clock cycles (a hang fails); returns
    at the next falling edge."""
    await with_timeout(RisingEdge(getattr(dut, signal)), 10 * cycles, "ns")
    await FallingEdge(dut.clk)


async def read_counters(dut, layer):
    """The counters the controller stored for ``layer`` (``counter_data``, 2 cycles after ``counter_address``)."""
    dut.counter_address.value = layer
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    values = unpack_lanes(dut.counter_data.value.to_unsigned(), COUNTER_BITS, len(COUNTERS), signed=False)
    return dict(zip(COUNTERS, values))


async def load_words(dut, port, base, words):
    """Write ``words`` (Python ints) from address ``base`` through the load port ``port`` (``"weight_load"`` or
    ``"bias_load"``), one word per cycle from a falling edge; leaves the port idle."""
    address, data, write = (getattr(dut, f"{port}__{name}") for name in ("address", "data", "write"))
    for index, word in enumerate(words, start=base):
        address.value, data.value, write.value = index, word, 1
        await FallingEdge(dut.clk)
    write.value = 0


async def write_tensor(dut, x, *, base, pitch, config):
    """Write an int8 tensor ``(H, W, C)`` at ``base`` through the host port, one word per cycle from a falling edge."""
    height, width, channels = x.shape
    padded = np.zeros((height, width, groups(channels, config) * config.lanes), dtype=np.int64)
    padded[..., :channels] = x
    for (bank, address), word in zip(_locations(x.shape, base, pitch, config), padded.reshape(-1, config.lanes)):
        dut.host__bank.value, dut.host__address.value = bank, address
        dut.host__write_data.value, dut.host__write.value = pack_lanes(word, 8), 1
        await FallingEdge(dut.clk)
    dut.host__write.value = 0


async def read_tensor(dut, descriptor, config):
    """The output tensor of ``descriptor``, read word by word through the host port (one word per cycle)."""
    d = descriptor
    image = np.zeros((config.lanes, config.act_depth, config.lanes), dtype=np.int8)
    latency = 2
    words = _locations(d.out_shape, d.out_base, d.out_row_pitch, config, skew=d.out_skew)
    for cycle in range(len(words) + latency):
        await FallingEdge(dut.clk)
        if cycle >= latency:
            bank, address = words[cycle - latency]
            image[bank, address] = unpack_lanes(dut.host__read_data.value.to_unsigned(), 8, config.lanes)
        if cycle < len(words):
            dut.host__bank.value, dut.host__address.value = words[cycle]
    return load_activation(image, d.out_shape, base=d.out_base, pitch=d.out_row_pitch, config=config, skew=d.out_skew)


class ActivationBanks:
    """The activation memory's banks through VPI (``hdl/memory.py``'s ``bank<i>.mem`` arrays under ``memory``, the
    ``ActivationMemory`` instance's handle): whole-image and tensor reads, word writes (``lanes`` of 8 bits, at most
    8). Far faster than the host port, which costs a Python step per word."""

    def __init__(self, memory, config):
        if config.lanes > 8:
            raise ValueError("the VPI word conversion handles up to 8 lanes")
        self.banks = [getattr(memory, f"bank{bank}").mem for bank in range(config.lanes)]
        self.config = config

    def read(self):
        """The whole image ``(lanes, act_depth, lanes)`` int8."""
        depth, lanes = self.config.act_depth, self.config.lanes
        banks, addresses = np.divmod(np.arange(lanes * depth), depth)
        return self._words(banks, addresses).reshape(lanes, depth, lanes)

    def tensor(self, shape, *, base, pitch, skew=0):
        """An int8 tensor ``(H, W, C)`` stored at ``base`` with row pitch ``pitch`` (banks turned by ``skew``), read
        word by word."""
        config = self.config
        image = np.zeros((config.lanes, config.act_depth, config.lanes), dtype=np.int8)
        banks, addresses = tensor_words(shape, base, pitch, config, skew)
        image[banks, addresses] = self._words(banks, addresses)
        return load_activation(image, shape, base=base, pitch=pitch, config=config, skew=skew)

    def write(self, image, banks, addresses):
        """Write the words ``image[banks, addresses]`` of an image into the memory."""
        banks, addresses = np.ravel(banks), np.ravel(addresses)
        for bank, address, word in zip(banks.tolist(), addresses.tolist(), pack_words(image[banks, addresses], 8)):
            self.banks[bank][address].value = word

    def _words(self, banks, addresses):
        # The words at (banks, addresses) as int8 (words, lanes): one VPI read each, converted in one go.
        values = [self.banks[bank][address].value.to_unsigned() for bank, address in zip(banks.tolist(),
                                                                                         addresses.tolist())]
        return np.array(values, dtype=np.uint64).view(np.int8).reshape(-1, 8)[:, :self.config.lanes]


def tensor_words(shape, base, pitch, config, skew=0):
    """``(banks, addresses)`` of every word of a tensor ``(H, W, C)`` at ``base`` with row pitch ``pitch`` (banks
    turned by ``skew``), pixel by pixel, channel group innermost."""
    height, width, channels = shape
    y, x, g = np.meshgrid(np.arange(height), np.arange(width), np.arange(groups(channels, config)), indexing="ij")
    return activation_location(y.ravel(), x.ravel(), g.ravel(), base=base, pitch=pitch, width=width, config=config,
                               skew=skew)


def _locations(shape, base, pitch, config, skew=0):
    # The words of tensor_words as (bank, address) pairs.
    banks, addresses = tensor_words(shape, base, pitch, config, skew)
    return list(zip(banks.tolist(), addresses.tolist()))


def first_mismatch(case, got):
    """``(count, message)``: how many outputs of ``got`` differ from ``case.expected``, and a line naming the first
    (layer, channel, y, x, expected, got, raw accumulator), or ``None``."""
    wrong = np.argwhere(got != case.expected)
    if not len(wrong):
        return 0, None
    y, x, channel = wrong[0]
    return len(wrong), (f"{case.name}: {len(wrong)} of {got.size} outputs differ; first: channel {channel}, y {y}, "
                        f"x {x}: expected {case.expected[y, x, channel]}, got {got[y, x, channel]}, "
                        f"accumulator {case.acc[y, x, channel]}")
