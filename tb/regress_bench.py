"""cocotb bench of the constrained-random regression: random layers on the engine's Verilog, the whole activation
memory checked after each.

The engine is built with empty memories. Before the run the activation memory is filled with random bytes; then per
layer (``golden.stimulus.constrained_random_layer(seed, index)``, until the requested number of outputs) the bench
writes the layer's input into the activation memory and its weights and biases through the load ports, runs it
(descriptor, ``start``, ``done``), checks the counters against the cycle model and the MAC count, and reads back the
**whole** activation memory: the output tensor must equal golden and every other word must be unchanged (no stray
writes; padding lanes of output words are free). The activation banks are read and written through VPI handles
(``activations.bank<i>``, ``hdl/memory.py``'s names): 8,192 words take about 0.05 s, where the host port, one Python
step per word, would take about 0.5 s. A failing layer writes a repro bundle (``tb/regress_cases.write_bundle``) and
the log names the one command that runs it again.

With the argument ``replay`` (a bundle folder) the bench runs only that layer, from memories initialised at build time,
and checks it the same way against ``golden.engine.run_layer`` on the bundle's images.
"""

import dataclasses
from pathlib import Path

import cocotb
import numpy as np

from engine_io import ActivationBanks, first_mismatch, load_words, run_layer
from golden.config import NPUConfig
from golden.engine import run_layer as golden_run_layer
from golden.layouts import (TABLE_ENTRIES, UNWEIGHTED, activation_location, groups, pack_bias_words, pack_words,
                            weight_word_span)
from golden.sequencer import layer_cycles
from golden.stimulus import Case, constrained_random_layer
from regress_cases import compare_memory, layer_coverage, merge_coverage, read_bundle, replay_command, write_bundle
from sim import bench_args, reset, write_summary

#: Repro bundles written per build at most (later failures are only counted).
MAX_BUNDLES = 3


async def load_layer(dut, config, case, images, memory):
    """A layer's input (an add's two) into the activation memory, its weight words (int8, or holding its code words),
    biases and activation table through the load ports.

    Returns the ``(banks, addresses)`` of the input words written.
    """
    d = case.descriptor
    y, x, g = np.meshgrid(np.arange(d.in_height), np.arange(d.in_width), np.arange(groups(d.in_channels, config)),
                          indexing="ij")
    inputs = [(d.in_base, d.in_row_pitch)] + ([(d.in2_base, d.in2_row_pitch)] if d.kind == "add" else [])
    places = [activation_location(y.ravel(), x.ravel(), g.ravel(), base=base, pitch=pitch, width=d.in_width,
                                  config=config) for base, pitch in inputs]
    written = tuple(np.concatenate(axis) for axis in zip(*places))
    memory.write(images.activation, *written)
    if d.table:
        await load_words(dut, "table_load", d.table_base * TABLE_ENTRIES,
                         [int(entry) & 0xFF for entry in images.tables[d.table_base]])
    if d.kind in UNWEIGHTED:
        return written
    first, end = weight_word_span(d, config)
    await load_words(dut, "weight_load", first, pack_words(images.weights[first:end].reshape(end - first, -1), 8))
    biases = slice(d.bias_base, d.bias_base + groups(d.out_channels, config))
    await load_words(dut, "bias_load", d.bias_base,
                     pack_bias_words(images.bias[biases], images.channel_shift[biases], config))
    return written


async def check_layer(dut, config, case, memory, before):
    """Run a loaded layer and check counters and the whole activation memory; ``(record, got, after, message)``."""
    d = case.descriptor
    counters, seconds = await run_layer(dut, d, config)
    after = memory.read()
    got, stray = compare_memory(before, after, d, config)
    mismatches, message = first_mismatch(case, got)
    problems = [message] if message else []
    if stray:
        problems.append(f"{len(stray)} words outside the output changed (stray writes); first: bank {stray[0][0]}, "
                        f"address {stray[0][1]}")
    if counters["cycles"] != layer_cycles(d, config):
        problems.append(f"{counters['cycles']} cycles, the cycle model says {layer_cycles(d, config)}")
    if counters["mac_ops"] != d.macs:
        problems.append(f"{counters['mac_ops']} MACs counted, the layer has {d.macs}")
    record = dict(outputs=int(got.size), mismatches=mismatches, stray=len(stray), seconds=seconds, **counters)
    return record, got, after, "; ".join(problems) or None


@cocotb.test()
async def regression(dut):
    args = bench_args()
    config = NPUConfig.from_json(args["config"])
    await reset(dut, start=0, host__write=0, weight_load__write=0, bias_load__write=0, table_load__write=0)
    memory = ActivationBanks(dut.activations, config)
    if "replay" in args:
        await replay_bundle(dut, config, memory, args)
        return
    seed, build = args["seed"], args["build"]
    # A random background: every word that no layer writes must keep its value.
    shape = (config.lanes, config.act_depth, config.lanes)
    shadow = np.random.default_rng([seed, 1 << 20]).integers(-128, 128, size=shape).astype(np.int8)
    memory.write(shadow, *np.indices(shape[:2]).reshape(2, -1))
    totals = dict(layers=0, outputs=0, cycles=0, sim_seconds=0.0, failures=[])
    coverage = {}
    index = 0
    while totals["outputs"] < args["outputs"]:
        case, images = constrained_random_layer(seed, index, config)
        d = case.descriptor
        # The memory before the layer: what the previous layers left, the layer's input written over it.
        written = await load_layer(dut, config, case, images, memory)
        shadow[written] = images.activation[written]
        record, got, after, problem = await check_layer(dut, config, case, memory, shadow)
        if problem:
            message = f"{build} seed {seed} layer {index}: {problem}"
            if len(totals["failures"]) < MAX_BUNDLES:
                folder = Path(args["bundles"]) / f"fail-{seed}-{build}-{index}"
                write_bundle(folder, config, case, dataclasses.replace(images, activation=shadow.copy()), got, message)
                message += f"; repro bundle {folder}; run it again: {replay_command(folder)}"
            dut._log.error(message)
            totals["failures"].append(message)
        shadow = after
        merge_coverage(coverage, layer_coverage(case, config))
        totals["layers"] += 1
        totals["outputs"] += record["outputs"]
        totals["cycles"] += record["cycles"]
        totals["sim_seconds"] += record["seconds"]
        index += 1
        if index % 100 == 0:
            dut._log.info(f"{build}: {index} layers, {totals['outputs']:,} of {args['outputs']:,} outputs, "
                          f"{len(totals['failures'])} failing")
    write_summary(args, coverage=coverage, **totals)


async def replay_bundle(dut, config, memory, args):
    """Run a repro bundle's layer (memories initialised from the bundle) and check it against golden."""
    _, name, descriptor, images = read_bundle(args["replay"])
    before = images.activation.copy()
    expected, acc = golden_run_layer(descriptor, images, config)
    d = descriptor
    shifts = images.channel_shift[d.bias_base:d.bias_base + groups(d.out_channels, config)].reshape(-1)
    case = Case(name=name, descriptor=d, expected=expected, acc=acc,
                channel_shift=np.zeros(d.out_channels, dtype=np.int64) if d.kind in UNWEIGHTED
                else shifts[:d.out_channels],
                codebook=[d.codebook0, d.codebook1, d.codebook2, d.codebook3] if d.weight_format else None)
    record, _, _, problem = await check_layer(dut, config, case, memory, before)
    message = f"replay of {args['replay']}: {problem or f'{name} passes'}"
    (dut._log.error if problem else dut._log.info)(message)
    write_summary(args, layers=1, outputs=record["outputs"], cycles=record["cycles"], sim_seconds=record["seconds"],
                  failures=[message] if problem else [], coverage={})
