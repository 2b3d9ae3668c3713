"""cocotb bench: the emitted Verilog of hdl/engine.py runs every layer of a bench on its own; whole outputs compared.

The memories were initialised at build time with all of the bench's layers (tb/engine_cases.py). Per layer the bench
sets the descriptor, pulses ``start`` and waits for ``done`` (the simulator runs freely meanwhile), reads the
performance counters, reads the output tensor back through the host port and compares all of it with the golden
model, naming the first mismatch: layer, channel, y, x, expected, got and the raw accumulator.
"""

import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, with_timeout

from engine_cases import TWO_BIT_CODEBOOKS, make_bench, two_bit_bench
from golden.config import NPUConfig
from golden.descriptor import encode_descriptor
from golden.images import load_activation
from golden.layouts import activation_location, groups, pack_words
from golden.sequencer import layer_cycles
from sim import bench_args, reset, unpack_lanes, write_summary


async def read_tensor(dut, descriptor, config):
    """The output tensor of ``descriptor``, read word by word through the host port (one word per cycle)."""
    d = descriptor
    y, x, g = np.meshgrid(np.arange(d.out_height), np.arange(d.out_width), np.arange(groups(d.out_channels, config)),
                          indexing="ij")
    banks, addresses = activation_location(y.ravel(), x.ravel(), g.ravel(), base=d.out_base, pitch=d.out_row_pitch,
                                           width=d.out_width, config=config)
    image = np.zeros((config.lanes, config.act_depth, config.lanes), dtype=np.int8)
    latency = 2
    words = list(zip(banks.tolist(), addresses.tolist()))
    for cycle in range(len(words) + latency):
        await FallingEdge(dut.clk)
        if cycle >= latency:
            bank, address = words[cycle - latency]
            image[bank, address] = unpack_lanes(dut.host__read_data.value.to_unsigned(), 8, config.lanes)
        if cycle < len(words):
            dut.host__bank.value, dut.host__address.value = words[cycle]
    return load_activation(image, d.out_shape, base=d.out_base, pitch=d.out_row_pitch, config=config)


@cocotb.test()
async def engine_matches_golden(dut):
    args = bench_args()
    config = NPUConfig.from_json(args["config"])
    two_bit = args["bench"] == "two_bit"
    cases = two_bit_bench(config, args["seed"])[0] if two_bit else make_bench(args["bench"], config, args["seed"])[0]

    await reset(dut, start=0, host__write=0, weight_load__write=0, bias_load__write=0)

    layers, failures = [], []
    for index, case in enumerate(cases):
        await FallingEdge(dut.clk)
        dut.descriptor.value = encode_descriptor(case.descriptor, config)
        if two_bit:
            dut.codebook.value = pack_words([TWO_BIT_CODEBOOKS[index]], 8)[0]
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        started = time.perf_counter()
        # The cycle model bounds the wait: a design that never finishes fails instead of hanging.
        await with_timeout(RisingEdge(dut.done), 10 * (2 * layer_cycles(case.descriptor, config) + 100), "ns")
        seconds = time.perf_counter() - started
        await ReadOnly()  # the counters change on the same clock edge as done
        counters = {name: getattr(dut, name).value.to_unsigned() for name in ("cycles", "active_cycles", "mac_ops")}
        got = await read_tensor(dut, case.descriptor, config)
        wrong = np.argwhere(got != case.expected)
        if len(wrong):
            y, x, channel = wrong[0]
            message = (f"{case.name}: {len(wrong)} of {got.size} outputs differ; first: channel {channel}, y {y}, "
                       f"x {x}: expected {case.expected[y, x, channel]}, got {got[y, x, channel]}, "
                       f"accumulator {case.acc[y, x, channel]}")
            dut._log.error(message)
            failures.append(message)
        layers.append(dict(name=case.name, kind=case.descriptor.kind, macs=case.descriptor.macs,
                           outputs=int(got.size), mismatches=int(len(wrong)), seconds=seconds, **counters))
    write_summary(args, layers=layers)
    assert not failures, failures[0]
