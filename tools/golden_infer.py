"""Run the integer golden model of a quantized network on a user's int8 input tensor; write the int8 output.

``python tools/golden_infer.py build/quantized input.npy -o output.npy`` loads the network the quantizer wrote
(``manifest.json`` + ``network.npz``, golden/network.py) and runs :func:`golden.network.run` on the input. The input
is an int8 ``.npy`` (any integer dtype whose values lie in [-128, 127]) that is already quantized with the network's
input scale and zero point (``manifest.json``, ``tensors.input``). Its layout is NHWC ``(N, H, W, C)`` by default —
the golden model's own layout — or NCHW ``(N, C, H, W)`` with ``--layout nchw`` (ONNX's); one image without the batch
axis (``(H, W, C)`` / ``(C, H, W)``) is a batch of one. The output always has the batch axis: ``(N, classes)`` for a
classifier. ``--layers DIR`` also writes every tensor the network computes as ``DIR/<tensor>.npy`` (int8, NHWC, the
input included), named as in the manifest and as in the .tflite export (tools/tflite_export.py).
"""

import os
import sys

import numpy as np

from cli import OneLineErrorParser, atomic_folder, atomic_path, require_positive
from golden import network as gnet
from tools.quantizer.infer import infer, load_input

__all__ = ["main"]


def _parser():
    parser = OneLineErrorParser(prog="python tools/golden_infer.py", description=__doc__.split("\n\n")[0],
                                epilog="Exit status 0 on success, 2 on bad input (one line on stderr, nothing "
                                       "written).")
    parser.add_argument("network", help="the quantizer's output folder (manifest.json and network.npz)")
    parser.add_argument("input", help="int8 input tensor (.npy), quantized with the network's input scale/zero point")
    parser.add_argument("-o", "--output", required=True, help="where to write the int8 output tensor (.npy)")
    parser.add_argument("--layout", choices=("nhwc", "nchw"), default="nhwc",
                        help="layout of the input tensor (default: %(default)s; the output of a conv layer is "
                             "always NHWC)")
    parser.add_argument("--layers", metavar="DIR", default=None,
                        help="also write every tensor as DIR/<tensor>.npy (DIR must not exist or be empty)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per golden run (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    require_positive(parser, args, "batch_size")
    if args.layers is not None and os.path.exists(args.layers) and \
            (not os.path.isdir(args.layers) or os.listdir(args.layers)):
        parser.error(f"--layers folder {args.layers!r} exists and is not an empty folder")
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_dir):
        parser.error(f"the folder of --output {args.output!r} does not exist")
    try:
        network = gnet.load(args.network)
        x = load_input(args.input, network, layout=args.layout)
    except (ValueError, KeyError) as error:
        parser.error(str(error))
    result = infer(network, x, batch_size=args.batch_size, keep=args.layers is not None, progress=not args.quiet)
    output, tensors = result if args.layers is not None else (result, None)
    # Everything is computed; write each file under a temporary name and rename it into place.
    with atomic_path(args.output) as partial:
        with open(partial, "wb") as f:
            np.save(f, output)
        if tensors is not None:
            with atomic_folder(args.layers) as temporary:
                for name, value in tensors.items():
                    np.save(os.path.join(temporary, f"{name}.npy"), value)
    print(f"wrote {args.output}: int8 {output.shape}" + (f", and {len(tensors)} tensors in {args.layers}"
                                                         if tensors is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
