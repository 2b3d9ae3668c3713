"""Two-bit weight accuracy table (issue 6): UQ, SPTQ and MSPTQ beside float and 8 bits, on three models, one command.

``python tools/two_bit_table.py`` runs the quantizer's job (tools/quantize.py) on the built-in reference model
(Fashion-MNIST test split: images 0-499 calibrate, the next ``--fashion-eval-images`` evaluate) and on the digit
models models/mnist_mlp.onnx and models/mnist_cnn.onnx (held-out digits: 200 calibrate, 800 evaluate), each with the
weight methods ``--methods`` at 8 bits (uniform grid) and at 2 bits (the uniform grid {-1, 0, 1}, UQ, SPTQ, MSPTQ;
every weighted layer two-bit, and the first and last ones kept at 8 bits). It prints markdown: per model the
accuracy table and the per-layer weight SQNR, then the weight-memory size of the reference model at 8 and at 2 bits
(golden/images.py images). The quantizer's output folders (report.md, results.json) are written under ``--out``.
docs/two_bit.md section 9 holds the output.
"""

import os

# As in tools/quantize.py: one evaluation process per core, each with a single-threaded BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402  (after the environment is set)
import tempfile
import time

from cli import OneLineErrorParser, require_positive
from golden.images import write_images
from tools.quantizer.build import QuantizationError, build_network
from tools.quantizer.calibrate import calibrate
from tools.quantizer.datasets import load_dataset
from tools.quantizer.frontend import UnsupportedModelError, load_graph
from tools.quantizer.pipeline import ALL_METHODS, BIAS_CORRECTION, DEFAULT_MODEL, Job, run
from tools.quantizer.report import markdown_table

__all__ = ["MODELS", "QUANTIZER_ROWS", "quantize_job", "accuracy_table", "weight_sqnr_table", "weight_memory", "main"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: ``(name, model)`` of the three models; ``None`` is the built-in reference model.
MODELS = (("fmnist_mobilenet", None), ("mnist_mlp", os.path.join(_ROOT, "models", "mnist_mlp.onnx")),
          ("mnist_cnn", os.path.join(_ROOT, "models", "mnist_cnn.onnx")))

#: The rows of the accuracy table: ``(label, weight bits, quantizer, first/last layer bits)``.
QUANTIZER_ROWS = (("W8, uniform", 8, "uniform", None),
                  ("W2, uniform {-1, 0, 1}", 2, "uniform", None),
                  ("W2, uniform {-1, 0, 1}, first/last W8", 2, "uniform", 8),
                  ("W2, UQ {±1, ±3}·Δ/2", 2, "uq", None),
                  ("W2, UQ, first/last W8", 2, "uq", 8),
                  ("W2, SPTQ {±1, ±4}·Δ/2", 2, "sptq", None),
                  ("W2, SPTQ, first/last W8", 2, "sptq", 8),
                  ("W2, MSPTQ {±1, ±4}·Δ/2", 2, "msptq", None),
                  ("W2, MSPTQ, first/last W8", 2, "msptq", 8))


def quantize_job(model, out, methods, *, jobs, eval_images=None, progress=True):
    """The quantizer job of one model's table: float and ``methods`` at W8 (uniform) and W2 (uniform, UQ, SPTQ, MSPTQ;
    all layers two-bit and first/last layers 8-bit), no bit sweep, no per-layer traces.

    Its results.json records the tools/quantize.py command line that runs the same job.
    """
    argv = ([] if model is None else ["--model", os.path.relpath(model)]) + [
        "--out", out, "--methods", ",".join(["float"] + list(methods)), "--weight-quantizer", "uniform,uq,sptq,msptq",
        "--weight-bits", "8,2", "--first-last-8bit", "both", "--sweep-bits", "none", "--trace-images", "0",
        "--jobs", str(jobs)] + ([] if eval_images is None else ["--eval-images", str(eval_images)]) + (
        [] if progress else ["--quiet"])
    return Job(out=out, model=model, methods=("float",) + tuple(methods),
               weight_quantizers=("uniform", "uq", "sptq", "msptq"), weight_bits=(8, 2), first_last_bits=(None, 8),
               trace_images=0, jobs=jobs, eval_images=eval_images, progress=progress,
               command="python tools/quantize.py" + "".join(f" {a}" for a in argv))


def accuracy_table(results, methods):
    """Markdown: one row per :data:`QUANTIZER_ROWS` entry, one column per method, cells ``top-1 % / logit SQNR dB``."""
    by_key = {(r["method"], r["weight_bits"], r["weight_quantizer"], r["first_last_bits"]): r for r in results}
    float_row = by_key[("float", None, None, None)]
    rows = [["float (onnxruntime)"] + [f"{float_row['top1']:.2f}"] + [""] * (len(methods) - 1)]
    for label, bits, quantizer, first_last in QUANTIZER_ROWS:
        cells = []
        for method in methods:
            r = by_key[(method, bits, quantizer, first_last)]
            cells.append(f"{r['top1']:.2f} / {r['logit_sqnr_db']:.1f}")
        rows.append([label] + cells)
    return markdown_table(["weights"] + list(methods), rows)


def weight_sqnr_table(results, methods):
    """Markdown: the weight SQNR (dB) of every weighted layer at 8 bits and with each two-bit quantizer (all layers
    two-bit), for each method (a ``+bc`` method only without its plain one: bias correction keeps the weights)."""
    by_key = {(r["method"], r["weight_bits"], r["weight_quantizer"], r["first_last_bits"]): r for r in results}
    methods = [m for m in methods if not (m.endswith(BIAS_CORRECTION) and m.removesuffix(BIAS_CORRECTION) in methods)]
    columns = [(method, bits, quantizer) for method in methods
               for bits, quantizer in ((8, "uniform"), (2, "uq"), (2, "sptq"), (2, "msptq"))]
    layers = list(by_key[(methods[0], 8, "uniform", None)]["weight_sqnr_db"])
    header = ["layer"] + [f"{method} {'W8' if bits == 8 else quantizer.upper()}" for method, bits, quantizer in columns]
    rows = []
    for layer in layers:
        cells = []
        for method, bits, quantizer in columns:
            value = by_key[(method, bits, quantizer, None)]["weight_sqnr_db"][layer]
            cells.append("inf" if value is None else f"{value:.2f}")
        rows.append([layer] + cells)
    means = []
    for method, bits, quantizer in columns:
        values = [v for v in by_key[(method, bits, quantizer, None)]["weight_sqnr_db"].values() if v is not None]
        means.append(f"{sum(values) / len(values):.2f}")
    return markdown_table(header, rows + [["mean"] + means])


def weight_memory(*, calibration_images=32):
    """Weight memory of the reference model's ROM images at 8 bits and with two-bit MSPTQ layers (``write_images``).

    Returns a list of ``(label, summary)``: W8 (every layer int8), W2 (every layer codes) and W2 with the first and
    last layers int8, the W2 networks placed for the engine with the two-bit decoder (``weight_code_bits`` 2, one
    weight memory of int8 words and code words); the summary holds ``words_needed`` and ``weight_memory_bits``. The sizes depend only on the
    layer shapes and on which layers are two-bit (the activation ranges of a few images suffice).
    """
    graph = load_graph(DEFAULT_MODEL)
    dataset = load_dataset(graph, progress=False)
    ranges = calibrate(graph, dataset.images[:calibration_images], progress=False)
    out = []
    for label, bits, quantizer, first_last in (("W8 (int8)", 8, "uniform", None), ("W2 (MSPTQ codes)", 2, "msptq", None),
                                               ("W2, first/last W8", 2, "msptq", 8)):
        network, _ = build_network(graph, ranges, method="wess", weight_bits=bits, weight_quantizer=quantizer,
                                   first_last_bits=first_last, input_range=dataset.input_range)
        weights = sum(layer.weights.size for layer in network.layers if hasattr(layer, "weights"))
        two_bit = sum(layer.weights.size for layer in network.layers if getattr(layer, "codebook", None) is not None)
        with tempfile.TemporaryDirectory() as directory:
            summary = write_images(network, directory)
        out.append((label, dict(summary, weights=weights, two_bit_weights=two_bit)))
    return out


def _memory_table(entries):
    lanes = entries[0][1]["config"]["lanes"]
    word_bits = 8 * lanes * lanes
    rows = []
    for label, summary in entries:
        bits = summary["weight_memory_bits"]
        dense = 8 * (summary["weights"] - summary["two_bit_weights"]) + 2 * summary["two_bit_weights"]
        rows.append([label, bits["int8_layers"] // word_bits, bits["two_bit_layers"] // word_bits,
                     summary["words_needed"]["weights"], f"{bits['stored'] // 8:,}", f"{dense // 8:,}"])
    return markdown_table(["weights", "int8 layers' words", "two-bit layers' words (4 code words each)",
                           f"weight memory words ({word_bits} bits)", "weight memory bytes",
                           "weights x bits / 8 (no padding)"], rows)


def _parser():
    parser = OneLineErrorParser(prog="python tools/two_bit_table.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 on success, 2 on bad input (one line on stderr).")
    parser.add_argument("--out", default=os.path.join("build", "two_bit_table"),
                        help="folder of the quantizer's output folders, one per model (default: %(default)s)")
    parser.add_argument("--methods", default="layer,wess,wess+bc",
                        help="weight methods of tools/quantize.py, comma-separated (default: %(default)s)")
    parser.add_argument("--fashion-eval-images", type=int, default=1000,
                        help="evaluation images of the Fashion-MNIST model, after its 500 calibration images "
                             "(default: %(default)s; the digit models use all 800)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="evaluation processes (default: %(default)s)")
    parser.add_argument("--memory-only", action="store_true",
                        help="print only the weight-memory sizes of the reference model")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    require_positive(parser, args, "fashion_eval_images", "jobs")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out!r} exists and is not a folder")
    methods = [method.strip() for method in args.methods.split(",") if method.strip()]
    unknown = [method for method in methods if method not in ALL_METHODS[1:]]
    if not methods or unknown or len(set(methods)) != len(methods):
        parser.error(f"--methods must be distinct weight methods from {', '.join(ALL_METHODS[1:])}, "
                     f"not {args.methods!r}")
    lines = []
    if not args.memory_only:
        for name, model in MODELS:
            started = time.perf_counter()
            job = quantize_job(model, os.path.join(args.out, name), methods, jobs=args.jobs, progress=not args.quiet,
                               eval_images=args.fashion_eval_images if model is None else None)
            try:
                summary = run(job)
            except (UnsupportedModelError, QuantizationError, ValueError, FileNotFoundError) as error:
                print(f"error: {error}", file=sys.stderr)         # as tools/quantize.py reports it
                return 2
            lines += [f"### {name}: {summary['dataset']}, calibration images {summary['calibration']['images'][0]}-"
                      f"{summary['calibration']['images'][1] - 1}, evaluation images "
                      f"{summary['evaluation']['images'][0]}-{summary['evaluation']['images'][1] - 1} "
                      f"({summary['evaluation']['count']}), {time.perf_counter() - started:.0f} s", "",
                      f"`{summary['command']}`", "",
                      "top-1 % / logit SQNR dB (integer golden model, int8 activations):", "",
                      accuracy_table(summary["results"], methods), "",
                      "Weight SQNR (dB) per layer, every weighted layer at the given quantizer:", "",
                      weight_sqnr_table(summary["results"], methods), ""]
    lines += ["### Weight memory of the reference model (golden.images.write_images, wess)", "",
              _memory_table(weight_memory()), ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
