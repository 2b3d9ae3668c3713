"""cocotb bench: the emitted Verilog of hdl/controller.py runs a whole program with one ``start``.

``program`` (tb/engine_cases.py ``program_bench``, memories initialised at build time): the program run freely, then
every layer's output read through the host port and compared with golden, each layer's stored counters and the total
``cycles`` read; the same program in ``step`` mode, each layer's output read while the controller is paused; then the
middle descriptor corrupted through ``descriptor_load`` and the program run again: it must stop with the error
(``done`` awaited within a bound, never a hang). ``network``: a quantizer output folder (``args["images"]``) whose
memories the Verilog holds (inline or ``$readmemh``); the input written through the host port, the program run, the
network's output and the counters read back.
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from engine_cases import corrupt_layer, program_bench
from engine_io import read_counters, read_tensor, start_program, wait_for, write_tensor
from golden.config import NPUConfig
from golden.controller import CHECKS, program_cycles
from golden.images import read_images
from golden.network import INPUT
from sim import bench_args, reset, write_summary

#: Cycles a run may take beyond the controller's cycle model before the bench calls it a hang.
SLACK = 100


@cocotb.test()
async def controller_runs_programs(dut):
    args = bench_args()
    config = NPUConfig.from_json(args["config"])
    await reset(dut, start=0, step=0, resume=0, host__write=0, weight_load__write=0, bias_load__write=0,
                table_load__write=0, descriptor_load__write=0)
    if args["bench"] == "network":
        await _network(dut, args)
    else:
        await _program(dut, config, args)


async def _run(dut, descriptors, config):
    """Read-back after a free run: the total cycles, every layer's output and stored counters."""
    await start_program(dut, len(descriptors))
    await wait_for(dut, "done", 2 * program_cycles(descriptors, config) + SLACK)
    result = dict(error=int(dut.error.value), cycles=dut.cycles.value.to_unsigned(), outputs=[], counters=[])
    for layer, d in enumerate(descriptors):
        result["outputs"].append((await read_tensor(dut, d, config)).tolist())
        result["counters"].append(await read_counters(dut, layer))
    return result


async def _program(dut, config, args):
    descriptors = program_bench(config, args["seed"])[0]
    run = await _run(dut, descriptors, config)

    # Step mode: each layer's output read while paused; the pauses are long and not counted.
    await start_program(dut, len(descriptors), step=1)
    stepped = []
    for d in descriptors[:-1]:
        await wait_for(dut, "paused", 2 * program_cycles([d], config) + SLACK)
        stepped.append((await read_tensor(dut, d, config)).tolist())
        dut.resume.value = 1
        await FallingEdge(dut.clk)
        dut.resume.value = 0
    await wait_for(dut, "done", 2 * program_cycles(descriptors[-1:], config) + SLACK)
    stepped.append((await read_tensor(dut, descriptors[-1], config)).tolist())
    step_cycles = dut.cycles.value.to_unsigned()

    # A corrupt descriptor in the middle: the program stops there with the error.
    layer, word, _ = corrupt_layer(descriptors, config, args["seed"])
    dut.descriptor_load__address.value, dut.descriptor_load__data.value = layer, word
    dut.descriptor_load__write.value = 1
    await FallingEdge(dut.clk)
    dut.descriptor_load__write.value = 0
    await start_program(dut, len(descriptors))
    await wait_for(dut, "done", 2 * program_cycles(descriptors[:layer + 1], config) + SLACK)
    error = dict(error=int(dut.error.value), layer=dut.error_layer.value.to_unsigned(),
                 check=CHECKS[dut.error_check.value.to_unsigned()])
    write_summary(args, run=run, stepped=stepped, step_cycles=step_cycles, error=error)


async def _network(dut, args):
    config, images, descriptors, summary = read_images(args["images"])
    placed = summary["tensors"][INPUT]
    x = np.asarray(args["input"])
    await write_tensor(dut, x, base=placed["base"], pitch=placed["row_pitch"], config=config)
    await start_program(dut, len(descriptors))
    await wait_for(dut, "done", 2 * program_cycles(descriptors, config) + SLACK)
    write_summary(args, error=int(dut.error.value), cycles=dut.cycles.value.to_unsigned(),
                  output=(await read_tensor(dut, descriptors[-1], config)).tolist(),
                  counters=[await read_counters(dut, layer) for layer in range(len(descriptors))])
