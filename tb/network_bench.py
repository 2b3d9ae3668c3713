"""cocotb bench: a quantized network's memory images run on the NPU (hdl/controller.py), image after image.

Per image the bench writes the int8 input into the activation memory, starts the whole program once in ``step`` mode and,
at each pause (and at ``done`` for the last layer), reads the layer's output tensor (both through VPI: ``engine_io.ActivationBanks``) and compares it with
``golden.engine.run_layer`` on the golden images (a tensor with gaps, docs/memory.md section 1: its own channels, not
the gap lanes, which hold anything); then, still paused, it runs the host layers that follow that layer
in the network (``memory.json``'s ``host_layers``, ``network_cases.host_schedule``: ``golden.network.layer_output`` on
the golden images, inputs read with ``golden.images.load_placed``, the result written into the activation memory where
the planner placed it). The last tensor is
compared with ``golden.network.run``'s logits too. Then it reads the per-layer counters and the program's cycle counter. ``tb/network_cases.py`` launches it and
turns the summary into tables, JSON and repro bundles.
"""

import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge
from tqdm import tqdm

from engine_io import ActivationBanks, first_mismatch, read_counters, start_program, tensor_words, wait_for
from golden.controller import LAYER_OVERHEAD, program_cycles
from golden.engine import run_layer
from golden.images import MemoryImages, load_placed, read_images, store_activation
from golden.network import INPUT, layer_output, load
from golden.sequencer import layer_cycles
from network_cases import Expected, host_schedule, write_bundle
from sim import bench_args, reset, write_summary


@cocotb.test()
async def network_matches_golden(dut):
    args = bench_args()
    config, images, descriptors, summary = read_images(args["directory"])
    names = [layer["name"] for layer in summary["layers"]]
    source = summary["tensors"][INPUT]
    inputs = np.load(args["inputs"])
    logits = np.load(args["logits"]).reshape(len(inputs), -1)
    budget = 2 * program_cycles(descriptors, config) + 1000

    network = load(args["directory"])
    schedule = host_schedule(network, summary)
    await reset(dut, start=0, step=0, resume=0, host__write=0, weight_load__write=0, bias_load__write=0,
                table_load__write=0, descriptor_load__write=0, counter_address=0, layer_count=len(descriptors))
    memory = ActivationBanks(dut.engine.activations, config)
    results = []
    for index, x in enumerate(tqdm(inputs, desc="images", unit="image", disable=not args["progress"])):
        started, started_cpu = time.perf_counter(), time.process_time()
        golden = MemoryImages(activation=np.zeros_like(images.activation), weights=images.weights, bias=images.bias,
                              channel_shift=images.channel_shift, tables=images.tables)
        store_activation(golden.activation, x, base=source["base"], pitch=source["row_pitch"], config=config)
        memory.write(golden.activation, *tensor_words(x.shape, source["base"], source["row_pitch"], config))
        _run_host(schedule.get(-1, []), network, golden, memory, summary["tensors"], config)
        await start_program(dut, len(descriptors), step=1)
        mismatch, got = None, None
        for layer, descriptor in enumerate(descriptors):
            last = layer == len(descriptors) - 1
            await wait_for(dut, "done" if last else "paused", budget)
            expected, acc = run_layer(descriptor, golden, config)
            got = memory.tensor(descriptor.out_shape, base=descriptor.out_base, pitch=descriptor.out_row_pitch,
                                skew=descriptor.out_skew)
            channels = summary["tensors"].get(summary["layers"][layer].get("output"), {}).get("channels")
            if channels is not None:    # a tensor with gaps: its own channels (the gap lanes hold anything)
                expected, acc, got = expected[..., channels], acc[..., channels], got[..., channels]
            count, message = first_mismatch(Expected(f"image {args['indices'][index]}, layer {layer} {names[layer]}",
                                                     expected, acc), got)
            if message and mismatch is None:
                mismatch = dict(layer=layer, name=names[layer], outputs=count, message=message)
                write_bundle(Path(args["bundles"]) / f"image-{args['indices'][index]}", x=x, expected=expected,
                             got=got, accumulators=acc, mismatch=mismatch)
            if layer in schedule:       # the host layers after this one, while the controller waits
                got = _run_host(schedule[layer], network, golden, memory, summary["tensors"], config)
            if not last:
                dut.resume.value = 1
                await FallingEdge(dut.clk)
                dut.resume.value = 0
        if mismatch is None and not np.array_equal(got.reshape(-1), logits[index]):
            # The RTL matched the descriptor-by-descriptor golden run, which then disagrees with the network's.
            mismatch = dict(layer=len(descriptors) - 1, name=names[-1],
                            outputs=int(np.sum(got.reshape(-1) != logits[index])),
                            message=f"image {args['indices'][index]}: the program's output differs from "
                                    "golden.network.run's logits")
            write_bundle(Path(args["bundles"]) / f"image-{args['indices'][index]}", x=x, expected=logits[index],
                         got=got.reshape(-1), accumulators=None, mismatch=mismatch)
        error = int(dut.error.value)
        cycles = int(dut.cycles.value)
        counters = [await read_counters(dut, layer) for layer in range(len(descriptors))]
        results.append(dict(image=index, mismatch=mismatch, error=error, cycles=cycles,
                            prediction=int(np.argmax(got.reshape(-1))), counters=counters,
                            got=got.reshape(-1).tolist(), seconds=time.perf_counter() - started,
                            cpu_seconds=time.process_time() - started_cpu))
        if mismatch:
            dut._log.error(mismatch["message"])
    model = [layer_cycles(d, config) + LAYER_OVERHEAD for d in descriptors]
    write_summary(args, images=results, model_layer_cycles=model, model_cycles=program_cycles(descriptors, config))


def _run_host(layers, network, golden, memory, tensors, config):
    """Run host layers on the golden images (inputs read where the planner placed them) and write each output into
    the golden images and the RTL's activation memory; returns the last output (``None`` for none)."""
    flattened = {layer.output: layer.input for layer in network.layers if layer.kind == "flatten"}
    output = None
    for layer in layers:
        values = {}
        for name in layer.inputs:
            tensor = load_placed(golden.activation, tensors[flattened.get(name, name)], config)
            values[name] = tensor.reshape(1, *network.tensors[name].shape)
        place = tensors[layer.output]
        output = layer_output(network, layer, values)[0].reshape(place["shape"])
        store_activation(golden.activation, output, base=place["base"], pitch=place["row_pitch"], config=config)
        memory.write(golden.activation, *tensor_words(tuple(place["shape"]), place["base"], place["row_pitch"], config))
    return output
