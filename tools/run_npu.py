"""Run a quantized network on the NPU's RTL for a few images and compare every layer's output with golden.

``python tools/run_npu.py build/quantized --images 100`` reads the quantizer's output folder (memory images,
``memory.json``, ``network.npz``, ``results.json``), takes the first ``--images`` of the quantizer's evaluation images
(``--first`` skips some; ``--data`` reads them from another folder), builds the NPU (``hdl/controller.py``) with the
folder's images and runs it under Verilator: one ``start`` per image runs every layer; the bench pauses after each
layer (the controller's ``step`` mode, cycles not counted), reads the layer's output tensor and compares it with
``golden.engine.run_layer``, and runs the host layers that follow it (``memory.json``'s ``host_layers``: layers the
engine does not run, e.g. an SE gate's Mul or a concatenation that placement cannot do, computed by
``golden.network.layer_output`` and written into the activation memory; their cycles are not counted); the final
tensor is also compared with ``golden.network.run``'s logits. The first
difference is printed (image, layer, tensor, channel, y, x, expected, got) and a repro bundle is written.

Printed: per layer the RTL's cycle counter beside the cycle model (``golden.controller.program_cycles``), RTL top-1
beside golden top-1, cycles per image, frames per second at ``--clock-mhz`` (default: the Fmax of the newest
``tools/synth.py`` report of the NPU under build/synth) and simulation seconds per image (wall and the simulator
process's CPU, which other jobs on the machine do not inflate). ``--json FILE`` writes the
summary. Exit status 0 when every image matches, 1 on a mismatch, 2 on bad input (one line, nothing written).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from cli import OneLineErrorParser, atomic_path, int_at_least
from golden import network as gnet
from golden.images import read_images
from tools.quantizer.datasets import load_dataset
from tools.quantizer.frontend import load_graph
from tools.quantizer.litert import export_network, run_reference
from tools.quantizer.report import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tb"))

from network_cases import BUNDLES, run_network  # noqa: E402 (tb/ is not a package)
from sim import SIMULATORS  # noqa: E402

__all__ = ["main"]

#: Where tools/synth.py leaves its builds; the newest NPU report there gives the default clock.
SYNTH_BUILDS = Path("build/synth")
#: The clock without a synthesis report of the NPU.
FALLBACK_CLOCK_MHZ = 100.0
#: The folder's files this command needs.
REQUIRED = ("manifest.json", "network.npz", "memory.json", "results.json", "descriptors.hex", "weights.hex", "bias.hex",
            "tables.hex")


def _parser():
    parser = OneLineErrorParser(prog="python tools/run_npu.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 when the RTL matches golden on every image, 1 on a mismatch, "
                                       "2 on bad input.")
    parser.add_argument("directory", type=Path, help="the quantizer's output folder (python tools/quantize.py --out)")
    parser.add_argument("--data", type=Path, help="data folder (default: the one the quantizer read)")
    parser.add_argument("--images", type=int_at_least(1, "positive"), default=16,
                        help="evaluation images to run (default: %(default)s)")
    parser.add_argument("--first", type=int_at_least(0, "non-negative"), default=0,
                        help="evaluation images to skip first (default: %(default)s)")
    parser.add_argument("--clock-mhz", type=float, help="clock for frames per second (default: the median "
                        "Fmax of the newest synthesis of this NPU configuration in build/synth, else 100)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--bundles", type=Path, default=BUNDLES, help=f"repro bundles of mismatches ({BUNDLES})")
    parser.add_argument("--sim", choices=SIMULATORS, default="verilator", help="simulator (default verilator)")
    parser.add_argument("--litert", action="store_true", help="also run the network exported as .tflite under LiteRT's "
                        "reference kernels and compare its logits with the RTL's")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def load_job(directory, *, data=None, first=0, count=1):
    """What a run needs from a quantizer output folder: ``(network, summary, inputs, labels, indices)``.

    ``inputs`` are the int8 NHWC images ``first .. first + count - 1`` of the folder's evaluation images (from
    ``data`` if given), ``indices`` their positions in the data set.

    Raises:
        ValueError / FileNotFoundError: not a quantizer output folder, a network that does not fit its
            configuration, missing data, or fewer evaluation images than asked for.
    """
    if not directory.is_dir():
        raise ValueError(f"{str(directory)!r} is not a folder")
    missing = [name for name in REQUIRED if not (directory / name).is_file()]
    if missing:
        raise ValueError(f"{str(directory)!r} is not a quantizer output folder: no {', '.join(missing)}")
    summary = json.loads((directory / "memory.json").read_text())
    if not summary["fits"]:
        config, needed = summary["config"], summary["words_needed"]
        raise ValueError(f"the network does not fit its configuration (needs {needed['activation']} activation, "
                         f"{needed['weights']} weight, {needed['bias']} bias words; has {config['act_depth']}, "
                         f"{config['weight_depth']}, {config['bias_depth']}): quantize it with larger --act-depth, "
                         "--weight-depth, --bias-depth")
    network = gnet.load(directory)
    results = json.loads((directory / "results.json").read_text())
    model = Path(results["model"])
    if not model.is_file():
        raise FileNotFoundError(f"the quantized model {str(model)!r} (results.json) is gone: its graph gives the "
                                "data's preprocessing")
    if data is None and "data" in network.preprocessing:
        data = network.preprocessing["data"]
    graph = load_graph(model)
    dataset = load_dataset(graph, data, progress=False)
    low, high = results["evaluation"]["images"]
    start = low + first
    if start + count > min(high, len(dataset.labels)):
        raise ValueError(f"the folder has {high - low} evaluation images; --first {first} --images {count} asks for "
                         "more")
    indices = np.arange(start, start + count)
    inputs = gnet.quantize_input(network, dataset.images[indices])
    return network, summary, inputs, dataset.labels[indices], indices


def default_clock(config, builds=SYNTH_BUILDS):
    """``(MHz, source)``: the median Fmax over seeds of the newest synthesis of the NPU with this ``config`` (a dict of
    :class:`golden.config.NPUConfig` fields; tools/synth.py's ``fmax.json`` beside its ``config.json``), else the
    fallback: another configuration's clock would misstate its frames per second."""
    summaries = sorted(builds.glob("controller*/fmax.json"), key=lambda path: path.stat().st_mtime)
    for path in reversed(summaries):
        try:
            if json.loads((path.parent / "config.json").read_text()) == config:
                return float(json.loads(path.read_text())["median"]), str(path)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return FALLBACK_CLOCK_MHZ, "no synthesis report of the NPU in this configuration found"


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.clock_mhz is not None and not args.clock_mhz > 0:
        parser.error(f"--clock-mhz must be positive, not {args.clock_mhz}")
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"the folder of --json {str(args.json)!r} does not exist")
    try:
        network, summary, inputs, labels, indices = load_job(args.directory, data=args.data, first=args.first,
                                                             count=args.images)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    clock, clock_source = (args.clock_mhz, "--clock-mhz") if args.clock_mhz else default_clock(summary["config"])

    golden_logits = gnet.run(network, inputs)
    litert_logits = None
    if args.litert:
        try:
            model = export_network(network)
        except ValueError as error:
            parser.error(f"--litert: the network has no bit-exact .tflite form: {error}")
        litert_logits = np.stack([run_reference(model, [image[None]])[0][0] for image in inputs])
    if summary["host_layers"]:
        print("runs on the host (not in the cycle counts): " + ", ".join(
            f"{layer['name']} ({layer['kind']})" for layer in summary["host_layers"]))
    started = time.perf_counter()
    result = run_network(args.directory, inputs, golden_logits, indices=indices, sim=args.sim,
                         bundles=args.bundles, progress=not args.quiet)
    wall = time.perf_counter() - started

    images = result["images"]
    golden_pred = np.argmax(golden_logits.reshape(len(inputs), -1), axis=1)
    rtl_pred = np.array([image["prediction"] for image in images])
    mismatching = [image for image in images if image["mismatch"]]
    layers = result["layers"]
    print(markdown_table(("layer", "kind", "MACs", "RTL cycles", "model cycles", "utilization %"),
                         [(layer["name"], layer["kind"], f"{layer['macs']:,}", f"{layer['cycles']:,}",
                           f"{layer['model_cycles']:,}", f"{layer['utilization']:.1f}") for layer in layers]))
    cycles = images[0]["cycles"]
    sim_seconds = sum(image["seconds"] for image in images) / len(images)
    cpu_seconds = sum(image["cpu_seconds"] for image in images) / len(images)
    record = {
        "images": len(images),
        "mismatching_images": len(mismatching),
        "rtl_top1": 100.0 * float(np.mean(rtl_pred == labels)),
        "golden_top1": 100.0 * float(np.mean(golden_pred == labels)),
        "cycles_per_image": cycles,
        "model_cycles_per_image": result["model_cycles"],
        "frames_per_second": clock * 1e6 / cycles,
        "clock_mhz": clock,
        "sim_seconds_per_image": sim_seconds,
        "sim_cpu_seconds_per_image": cpu_seconds,
        "build_seconds": result["build_seconds"],
        "simulator": args.sim,
        "first_mismatch": mismatching[0]["mismatch"] if mismatching else None,
    }
    if litert_logits is not None:
        rtl = np.array([image["got"] for image in images])
        record["litert_mismatching_images"] = int(np.sum(np.any(
            rtl != litert_logits.reshape(len(rtl), -1), axis=1)))
        print(f"LiteRT REF (the exported .tflite): {record['litert_mismatching_images']} of {len(rtl)} images' "
              "logits differ from the RTL's")
    print(markdown_table(("images", "mismatching", "RTL top-1 %", "golden top-1 %", "cycles / image",
                          "model cycles", f"frames/s at {clock:.1f} MHz", "sim s / image", "sim CPU s / image"),
                         [(len(images), len(mismatching), f"{record['rtl_top1']:.2f}", f"{record['golden_top1']:.2f}",
                           f"{cycles:,}", f"{result['model_cycles']:,}", f"{record['frames_per_second']:,.1f}",
                           f"{sim_seconds:.2f}", f"{cpu_seconds:.2f}")]))
    print(f"clock: {clock:.2f} MHz ({clock_source}); {args.sim} build {result['build_seconds']:.0f} s, "
          f"run {wall:.0f} s")
    for image in mismatching[:1]:
        print(f"first mismatch: {image['mismatch']['message']}; repro bundle {image['bundle']}; run it again: "
              f"python tools/run_npu.py {args.directory} --first {args.first + image['image']} --images 1")
    if args.json is not None:
        with atomic_path(args.json) as partial:
            Path(partial).write_text(json.dumps(record, indent=1) + "\n")
    return 1 if mismatching or record.get("litert_mismatching_images") else 0


if __name__ == "__main__":
    sys.exit(main())
