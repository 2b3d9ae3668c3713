"""cocotb bench: the emitted Verilog of hdl/engine.py runs every layer of a bench on its own; whole outputs compared.

The memories were initialised at build time with all of the bench's layers (tb/engine_cases.py). Per layer the bench
sets the descriptor, pulses ``start`` and waits for ``done`` (the simulator runs freely meanwhile), reads the
performance counters, reads the output tensor back through the host port and compares all of it with the golden
model, naming the first mismatch: layer, channel, y, x, expected, got and the raw accumulator.
"""

import cocotb

from engine_cases import make_bench, two_bit_bench
from engine_io import first_mismatch, read_tensor, run_layer
from golden.config import NPUConfig
from sim import bench_args, reset, write_summary


@cocotb.test()
async def engine_matches_golden(dut):
    args = bench_args()
    config = NPUConfig.from_json(args["config"])
    two_bit = args["bench"] == "two_bit"
    cases = two_bit_bench(config, args["seed"])[0] if two_bit else make_bench(args["bench"], config, args["seed"])[0]

    await reset(dut, start=0, host__write=0, weight_load__write=0, bias_load__write=0, table_load__write=0)

    layers, failures = [], []
    for case in cases:
        counters, seconds = await run_layer(dut, case.descriptor, config)
        got = await read_tensor(dut, case.descriptor, config)
        mismatches, message = first_mismatch(case, got)
        if message:
            dut._log.error(message)
            failures.append(message)
        layers.append(dict(name=case.name, kind=case.descriptor.kind, macs=case.descriptor.macs,
                           outputs=int(got.size), mismatches=mismatches, seconds=seconds, **counters))
    write_summary(args, layers=layers)
    assert not failures, failures[0]
