"""Whole networks on the NPU's RTL: the build of a quantizer output folder, the bench run, repro bundles.

``tools/run_npu.py`` and ``tb/test_network.py`` call :func:`run_network`; the cocotb module ``tb/network_bench.py``
runs the images and compares every layer with golden. A mismatching image leaves a bundle (:func:`write_bundle`):
its input, the layer's expected and actual tensors and accumulators, and the line that names the first difference.
"""

import collections
import json
import tempfile
from pathlib import Path

import numpy as np

from golden.controller import LAYER_OVERHEAD
from golden.images import read_images
from golden.sequencer import layer_cycles
from hdl.controller import Controller
from hdl.top import IMAGE_FILES, to_verilog
from sim import run_bench

__all__ = ["BUNDLES", "Expected", "write_bundle", "host_schedule", "run_network"]

#: Where mismatching images leave their repro bundles (``image-<index in the data set>``).
BUNDLES = Path("build/run_npu")

#: The signals the bench reaches besides the top's ports (``run_bench``'s ``public``): the activation banks' arrays
#: (``hdl.bram.BlockRAM``'s ``mem`` in each ``bank<i>``).
PUBLIC = (("*.activations.bank*", "mem"),)

#: What ``engine_io.first_mismatch`` compares against: a name, the expected tensor and its accumulators.
Expected = collections.namedtuple("Expected", "name expected acc")


def write_bundle(directory, *, x, expected, got, accumulators, mismatch):
    """Write a repro bundle: ``input.npy`` (int8 NHWC image), ``expected.npy`` / ``got.npy`` / ``accumulators.npy``
    (the first mismatching layer's tensors; no accumulators when the logits differ from ``golden.network.run``'s)
    and ``mismatch.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in (("input", x), ("expected", expected), ("got", got), ("accumulators", accumulators)):
        if array is not None:
            np.save(directory / f"{name}.npy", np.asarray(array))
    (directory / "mismatch.json").write_text(json.dumps(mismatch, indent=1) + "\n")


def host_schedule(network, summary):
    """The host layers (``memory.json``'s ``host_layers``) by the engine layer they follow: ``{index: [layer, ..]}``,
    in network order, index -1 for those before the first engine layer. Fused activations and placed concatenations
    belong to their engine layers."""
    engine = {layer["name"]: index for index, layer in enumerate(summary["layers"])}
    host = {layer["name"] for layer in summary["host_layers"]}
    schedule, current = {}, -1
    for layer in network.layers:
        if layer.name in engine:
            current = engine[layer.name]
        elif layer.name in host:
            schedule.setdefault(current, []).append(layer)
    return schedule


def run_network(directory, inputs, logits, *, indices, sim="verilator", bundles=BUNDLES, progress=True):
    """Run int8 ``inputs`` (NHWC batch) on the RTL built from ``directory``; compare with golden.

    ``logits`` are ``golden.network.run``'s outputs for ``inputs``; ``indices`` the images' positions in the data set
    (they name bundles). Returns a dict: ``images`` (per image: ``mismatch`` (None or layer, name, outputs, message,
    bundle), ``prediction``, ``cycles``, ``seconds``, ``counters``), ``layers`` (per layer: name, kind, MACs, RTL
    cycles of the first image, model cycles, utilization), ``model_cycles`` and ``build_seconds``.
    """
    directory = Path(directory).resolve()
    config, _, descriptors, summary = read_images(directory)
    with tempfile.TemporaryDirectory() as scratch:
        np.save(Path(scratch, "inputs.npy"), np.asarray(inputs, dtype=np.int8))
        np.save(Path(scratch, "logits.npy"), np.asarray(logits, dtype=np.int8))
        design, _ = to_verilog(Controller(config), "top", IMAGE_FILES)
        files = {file: (directory / file).read_bytes() for file, _, _ in IMAGE_FILES}
        args = dict(directory=str(directory), inputs=str(Path(scratch, "inputs.npy")),
                    logits=str(Path(scratch, "logits.npy")), indices=[int(i) for i in indices],
                    bundles=str(Path(bundles).resolve()), progress=progress)
        result = run_bench(design, name=f"network_{directory.name}", test_module="network_bench", sim=sim,
                           files=files, clock=True, public=PUBLIC, args=args)
    for image in result["images"]:
        if image["mismatch"]:
            image["bundle"] = str(Path(bundles) / f"image-{indices[image['image']]}")
    first = result["images"][0]["counters"]
    layers = []
    for entry, descriptor, counters in zip(summary["layers"], descriptors, first):
        macs = descriptor.macs
        layers.append(dict(name=entry["name"], kind=descriptor.kind, macs=macs, cycles=counters["cycles"],
                           model_cycles=layer_cycles(descriptor, config),
                           utilization=100.0 * macs / (config.macs * counters["cycles"])))
    return dict(images=result["images"], layers=layers, model_cycles=result["model_cycles"],
                build_seconds=result["build_seconds"], layer_overhead=LAYER_OVERHEAD)
