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
import shutil
import sys
import tempfile

import numpy as np
from tqdm import tqdm

from golden import network as gnet
from cli import OneLineErrorParser

__all__ = ["infer", "load_input", "main"]


def load_input(path, network, *, layout="nhwc"):
    """Read an int8 input tensor from ``path`` and return it as an ``np.int8`` NHWC batch for ``network``.

    Raises:
        ValueError: for an unreadable file, a non-integer dtype, values outside int8, or a shape that does not match
            the network's input in the given layout.
    """
    if layout not in ("nhwc", "nchw"):
        raise ValueError(f"layout must be 'nhwc' or 'nchw', not {layout!r}")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path!r} as a .npy array: {error}") from None
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"input {path!r} must be an int8 tensor (already quantized), not {x.dtype}")
    if x.size and (x.min() < -128 or x.max() > 127):
        raise ValueError(f"input {path!r} values must lie in [-128, 127], found [{x.min()}, {x.max()}]")
    expected = tuple(network.tensors[gnet.INPUT].shape)
    if x.ndim == len(expected):
        x = x[None]
    if layout == "nchw" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != len(expected) + 1 or x.shape[1:] != expected or not x.shape[0]:
        wanted = expected if layout == "nhwc" or len(expected) != 3 else (expected[2], *expected[:2])
        raise ValueError(f"input {path!r} has shape {x.shape}, the network takes (N, {', '.join(map(str, wanted))}) "
                         f"in {layout.upper()}")
    return np.ascontiguousarray(x, dtype=np.int8)


def infer(network, x, *, batch_size=64, keep=False, progress=False):
    """Golden inference in batches of ``batch_size``: the int8 output, and with ``keep`` also every tensor by name."""
    outputs, kept = [], {}
    for start in tqdm(range(0, len(x), batch_size), desc="golden", unit="batch", disable=not progress, leave=False):
        result = gnet.run(network, x[start:start + batch_size], keep=keep)
        if keep:
            result, trace = result
            for name, value in trace.tensors.items():
                kept.setdefault(name, []).append(np.asarray(value, dtype=np.int8))
        outputs.append(result)
    output = np.concatenate(outputs)
    return (output, {name: np.concatenate(parts) for name, parts in kept.items()}) if keep else output


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
    if args.batch_size < 1:
        parser.error(f"--batch-size must be a positive integer, not {args.batch_size}")
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
    handle, partial = tempfile.mkstemp(dir=output_dir, suffix=".npy")
    temporary = None
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, output)
        if tensors is not None:
            layers = os.path.abspath(args.layers)
            temporary = tempfile.mkdtemp(dir=os.path.dirname(layers), prefix=f".{os.path.basename(layers)}.tmp-")
            for name, value in tensors.items():
                np.save(os.path.join(temporary, f"{name}.npy"), value)
            if os.path.isdir(layers):
                os.rmdir(layers)
            os.rename(temporary, layers)
        os.replace(partial, args.output)
    except BaseException:
        for path in (partial, temporary):
            if path is not None and os.path.exists(path):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        raise
    print(f"wrote {args.output}: int8 {output.shape}" + (f", and {len(tensors)} tensors in {args.layers}"
                                                         if tensors is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
