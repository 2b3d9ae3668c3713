"""Quantized layers and networks -> .tflite flatbuffers, written without TensorFlow; LiteRT reference runs.

``python tools/tflite_export.py build/quantized -o m.tflite [--batch N]`` writes the network that the quantizer wrote
(``manifest.json`` + ``network.npz``) as an int8 .tflite model (tools/quantizer/litert.py, docs/litert.md);
``--bench`` runs it with LiteRT's reference kernels beside the golden model on a batch of images, compares every layer,
checks every tensor's quantization parameters against the network and times both.
"""

import os
import sys

from cli import OneLineErrorParser, require_positive, write_file
from golden import network as gnet
from tools.quantizer.datasets import FASHION_MNIST_ROOT, load_fashion_mnist, normalize_images
from tools.quantizer.infer import load_input
from tools.quantizer.litert import benchmark, export_network, format_benchmark

__all__ = ["main"]


def _contract_images(network, count):
    # The first `count` test images of the network's built-in dataset, quantized per its preprocessing contract.
    contract = network.preprocessing
    if contract.get("dataset") != "fashion-mnist":
        raise ValueError("the network's preprocessing names no built-in dataset: give --input")
    pixels, _ = load_fashion_mnist("test", contract.get("data", FASHION_MNIST_ROOT))
    images = normalize_images(pixels[:count], mean=contract["mean"], std=contract["std"],
                              scale=contract["pixel_scale"])
    return gnet.quantize_input(network, images)


def _parser():
    parser = OneLineErrorParser(prog="python tools/tflite_export.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 on success, 2 on bad input (one line on stderr, nothing "
                                       "written).")
    parser.add_argument("network", help="the quantizer's output folder (manifest.json and network.npz)")
    parser.add_argument("-o", "--output", default=None, help="write the network as this .tflite file")
    parser.add_argument("--batch", type=int, default=1,
                        help="batch size of the written model (LiteRT shapes are static; default: %(default)s)")
    parser.add_argument("--bench", action="store_true",
                        help="compare every layer's output of LiteRT BUILTIN_REF and the golden model on a batch, "
                             "check every tensor's quantization parameters, and time both; prints one line (and the "
                             "problems); exit status 1 if anything differs")
    parser.add_argument("--images", type=int, default=1000,
                        help="--bench without --input: the first N test images of the network's dataset "
                             "(default: %(default)s)")
    parser.add_argument("--input", default=None,
                        help="--bench input: an int8 NHWC .npy batch (see tools/golden_infer.py)")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.output is None and not args.bench:
        parser.error("nothing to do: give -o FILE.tflite and/or --bench")
    require_positive(parser, args, "batch", "images")
    if args.output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        parser.error(f"the folder of --output {args.output!r} does not exist")
    try:
        network = gnet.load(args.network)
        model = export_network(network, batch=args.batch) if args.output is not None else None
        if args.bench:
            x = load_input(args.input, network) if args.input is not None else _contract_images(network, args.images)
    except (ValueError, KeyError, OSError) as error:
        parser.error(str(error))
    if model is not None:
        write_file(args.output, model)
        print(f"wrote {args.output}: {len(model)} bytes, batch {args.batch}")
    if args.bench:
        result = benchmark(network, x)
        print(format_benchmark(result))
        if result["mismatches"]:
            print(f"mismatching layers: {', '.join(result['mismatching_layers'])}")
        for problem in result["quantization_problems"]:
            print(problem)
        if result["mismatches"] or result["quantization_problems"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
