"""Why the built-in model's weight-bit sweep is not monotonic: the measurements of docs/quantizer.md, one command.

``python tools/bit_sweep_diagnosis.py`` (about 3 minutes on two cores) quantizes the model (default: the built-in
reference model) with the weight methods layer, channel and wess, each with and without bias correction, at W8..W3,
on the quantizer's default split (tools/quantize.py: calibration images first, evaluation images after). It prints
markdown tables of

1. the logit SQNR of every point on the first 500 evaluation images (the report's sweep), with each point's error of
   ``--layer``, of the last weighted layer before the logits, and of the logits split by
   :func:`tools.quantizer.evaluate.layer_errors` into per-channel mean | per-image | spatial parts;
2. the affected points (:data:`POINTS`) on all evaluation images, and the paired bootstrap intervals of their
   differences (:data:`DIFFERENCES`);
3. the logit SQNR of a network with only ``--layer`` taken from another width (:data:`SWAPS`), the DC-gain error
   ``sum(W_q - W) / sum(W)`` of ``--layer``'s output channel ``--channel`` at every width, and the input mean of
   the calibration images beside the darkest input value (the background of Fashion-MNIST).

The points, differences and swaps are the built-in model's bad points (docs/quantizer.md, "Why the bit sweep is not
monotonic").
"""

import os

# As in tools/quantize.py: one evaluation process per core, each with a single-threaded BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402  (after the environment is set)

from cli import OneLineErrorParser, int_at_least  # noqa: E402
from tools.quantizer.build import QuantizationError, build_network, layer_names, mixed_network  # noqa: E402
from tools.quantizer.calibrate import calibrate, channel_means  # noqa: E402
from tools.quantizer.datasets import load_dataset  # noqa: E402
from tools.quantizer.evaluate import evaluate, evaluate_all, float_logits, layer_errors  # noqa: E402
from tools.quantizer.frontend import UnsupportedModelError, load_graph  # noqa: E402
from tools.quantizer.pipeline import DEFAULT_MODEL  # noqa: E402
from tools.quantizer.report import markdown_table  # noqa: E402
from tools.quantizer.statistics import paired_sqnr_bootstrap  # noqa: E402
from tools.quantizer.weights import quantize_weights, sqnr_db  # noqa: E402

__all__ = ["METHODS", "BITS", "SWEEP_IMAGES", "POINTS", "DIFFERENCES", "SWAPS", "main"]

#: The weight methods, each also with bias correction (``+bc``), and the weight bits of the sweep.
METHODS = ("layer", "channel", "wess")
BITS = (8, 7, 6, 5, 4, 3)
#: Evaluation images of the report's bit sweep (tools/quantize.py ``--sweep-images`` default).
SWEEP_IMAGES = 500
#: ``(method, bits)`` evaluated on all evaluation images: the bad points and their neighbours.
POINTS = (("channel", 6), ("channel", 5), ("channel", 4), ("layer", 7), ("layer", 6), ("layer", 5))
#: Pairs of :data:`POINTS` whose SQNR difference gets a paired bootstrap interval.
DIFFERENCES = ((("channel", 4), ("channel", 5)), (("layer", 5), ("layer", 6)))
#: ``(method, base bits, donor bits)``: the base network with only ``--layer`` from the donor width.
SWAPS = (("channel", 6, (5, 4)), ("layer", 7, (6, 5)), ("channel", 5, (6,)), ("layer", 6, (5,)))


def _db(value):
    return "-" if value is None else f"{value:.1f}"


def _parser():
    parser = OneLineErrorParser(prog="python tools/bit_sweep_diagnosis.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 on success, 2 on bad input (one line on stderr).")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="ONNX model with a built-in dataset (default: the built-in reference model "
                             "models/fmnist_mobilenet.onnx)")
    parser.add_argument("--layer", default="conv0",
                        help="weighted layer swapped between widths and whose DC gain is shown (default: %(default)s)")
    parser.add_argument("--channel", type=int_at_least(0, "non-negative"), default=13,
                        help="output channel of --layer for the DC-gain line (default: %(default)s)")
    parser.add_argument("--jobs", type=int_at_least(1, "positive"), default=min(2, os.cpu_count() or 1),
                        help="evaluation processes (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error(f"model file {args.model!r} does not exist")
    try:
        graph = load_graph(args.model)
    except UnsupportedModelError as error:
        parser.error(str(error))
    names = layer_names(graph)
    weighted = {names[node.output]: node for node in graph.nodes if getattr(node, "weights", None) is not None}
    if args.layer not in weighted:
        parser.error(f"--layer {args.layer!r} is not a weighted layer; those are {', '.join(weighted)}")
    weights = weighted[args.layer].weights
    if args.channel >= weights.shape[0]:
        parser.error(f"--channel {args.channel} is not below {args.layer}'s {weights.shape[0]} output channels")
    progress = not args.quiet
    try:
        data = load_dataset(graph, progress=progress)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    # The default split of tools/quantize.py (tools.quantizer.pipeline.run).
    n_cal = data.calibration_images or max(1, min(500, len(data.images) // 5))
    calibration, evaluation = data.images[:n_cal], data.images[n_cal:]
    ranges = calibrate(graph, calibration, progress=progress)
    means = channel_means(graph, calibration, progress=progress)
    try:
        networks = {(method + "+bc" * bc, bits): build_network(
            graph, ranges, method=method, weight_bits=bits, input_range=data.input_range,
            preprocessing=data.contract, bias_correction=means if bc else None)[0]
            for method in METHODS for bc in (False, True) for bits in BITS}
    except QuantizationError as error:
        print(f"error: {error}", file=sys.stderr)         # as tools/quantize.py reports it
        return 2
    sweep = evaluation[:SWEEP_IMAGES]
    logits_layer = names[graph.nodes[-1].output]
    shown = list(dict.fromkeys([args.layer, list(weighted)[-2], logits_layer]))
    errors = layer_errors(graph, networks, sweep, {ir: name for ir, name in names.items() if name in shown})
    lines = [f"Model {os.path.relpath(args.model)}: {len(calibration)} calibration images, {len(evaluation)} "
             f"evaluation images", "",
             f"### 1. Logit SQNR (dB) on the first {len(sweep)} evaluation images", "",
             markdown_table(["method"] + [f"W{bits}" for bits in BITS],
                            [[method] + [_db(errors[method, bits][logits_layer]["sqnr_db"]) for bits in BITS]
                             for method in dict.fromkeys(key[0] for key in networks)]), "",
             "Each layer's output error split into per-channel mean | per-image | spatial parts, dB below the "
             "signal (layer_errors):", "",
             markdown_table(["method", "bits", "layer", "SQNR", "mean", "per image", "spatial"],
                            [[method, f"W{bits}", layer, *(_db(v) for v in errors[method, bits][layer].values())]
                             for (method, bits) in networks for layer in shown]), ""]

    reference = float_logits(args.model, evaluation, progress=progress)
    points = {(method, bits, "uniform", None): networks[method, bits] for method, bits in POINTS}
    logits = {key[:2]: values for key, (values, _) in
              evaluate_all(points, evaluation, batch_size=256, jobs=args.jobs, progress=progress).items()}
    lines += [f"### 2. The affected points on all {len(evaluation)} evaluation images", "",
              markdown_table(["method", "bits", "logit SQNR dB"],
                             [[method, f"W{bits}", f"{sqnr_db(reference, logits[method, bits]):.2f}"]
                              for method, bits in POINTS]), "",
              "Paired bootstrap of the SQNR difference (paired_sqnr_bootstrap, default resamples and seed):", "",
              markdown_table(["difference", "dB", "95 % interval"],
                             [[f"{a[0]} W{a[1]} - {b[0]} W{b[1]}", f"{d:+.2f}", f"[{low:+.2f}, {high:+.2f}]"]
                              for a, b in DIFFERENCES
                              for d, low, high in [paired_sqnr_bootstrap(reference, logits[a], logits[b])]]), ""]

    rows = []
    for method, base, donors in SWAPS:
        for donor in donors:
            mixed = mixed_network(networks[method, base], networks[method, donor], [args.layer])
            got = evaluate(mixed, sweep, batch_size=256, progress=False)
            rows.append([f"{method} W{base}", f"W{donor}", _db(sqnr_db(reference[:len(sweep)], got))])
    gains = [[method] + [f"{100 * error:+.1f}" for error in (
        (quantize_weights(weights, method=method, bits=bits).dequantized() - weights)[args.channel].sum()
        / weights[args.channel].sum() for bits in BITS)] for method in METHODS]
    lines += [f"### 3. {args.layer} from another width, and its channel {args.channel}'s DC-gain error", "",
              f"Logit SQNR (dB, first {len(sweep)} evaluation images) with only {args.layer} from the donor width:",
              "", markdown_table(["network", f"{args.layer} at", "logit SQNR dB"], rows), "",
              f"DC-gain error sum(W_q - W) / sum(W) of {args.layer} channel {args.channel}, %:", "",
              markdown_table(["method"] + [f"W{bits}" for bits in BITS], gains), "",
              f"Input mean of the calibration images {float(means[graph.input][0]):.3f}, darkest input value "
              f"(background) {float(data.images.min()):.3f}", ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
