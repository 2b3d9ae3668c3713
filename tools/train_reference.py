"""Train the built-in reference model: a small MobileNet-style CNN on Fashion-MNIST, exported to ONNX twice.

``python tools/train_reference.py`` trains on the 60,000-image train split only (the quantizer calibrates and
evaluates on the test split), on the CPU with fixed seeds, and writes:

- ``models/fmnist_mobilenet.onnx``: batch normalisation kept as BatchNormalization nodes (what a user exports from
  a training framework; the quantizer must fold it itself);
- ``models/fmnist_mobilenet_folded.onnx``: batch normalisation folded into the convolutions by the exporter.

``--arch resnet`` or ``--arch mobilenetv3`` trains the ResNet- or MobileNetV3-style network of
tools/training/models.py instead (MaxPool and residual adds; HardSwish, squeeze-excitation and a Concat) and writes
``models/fmnist_<arch>.onnx``, batch normalisation kept.

Both carry the preprocessing contract in ``metadata_props`` (``dataset``, ``input_layout``, ``input_shape``,
``input_scale``, ``mean``, ``std``, ``classes``; lists as JSON), are checked against torch and against each other in
onnxruntime, and their float top-1 on the 10,000 test images is printed at the end.

torch is needed here only (the optional ``train`` extra); nothing at run time imports this script.
"""

import json
import os
import sys
import time

import numpy as np
import onnx
import torch

from cli import OneLineErrorParser, require_positive
from tools.quantizer.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, load_fashion_mnist, normalize_images
from tools.training import export, onnx_logits, train
from tools.training.models import ARCHITECTURES

__all__ = ["main"]

_MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def main(argv=None):
    parser = OneLineErrorParser(prog="python tools/train_reference.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=FASHION_MNIST_ROOT,
                        help="folder with the Fashion-MNIST idx .gz files (default: %(default)s)")
    parser.add_argument("--out", default=_MODELS, help="folder the two ONNX files are written to (default: models/)")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="mobilenet",
                        help="architecture (tools/training/models.py; default: %(default)s, the reference model)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and flips (default: 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)
    require_positive(parser, args, "epochs", "batch_size", "threads")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, not {args.lr}")
    try:
        train_images, train_labels = load_fashion_mnist("train", args.data)
        test_images, test_labels = load_fashion_mnist("test", args.data)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    if not os.path.isdir(args.out):
        parser.error(f"output folder {args.out!r} does not exist")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    # The train split's pixel statistics, rounded so that the contract reads as plain numbers.
    mean = round(float(train_images.mean(dtype=np.float64)) / 255, 4)
    std = round(float((train_images.astype(np.float64) / 255).std()), 4)
    x_train = normalize_images(train_images, mean=[mean], std=[std])
    x_test = normalize_images(test_images, mean=[mean], std=[std])

    architecture, stem = ARCHITECTURES[args.arch]
    model = architecture()
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{architecture.__name__}: {parameters} parameters; input (pixel/255 - {mean}) / {std}")
    start = time.monotonic()
    train(model, x_train, train_labels, epochs=args.epochs, batch_size=args.batch_size,
          learning_rate=args.lr, seed=args.seed)
    print(f"trained {args.epochs} epochs in {time.monotonic() - start:.0f} s on {args.threads} threads")

    metadata = {"dataset": "fashion-mnist", "input_layout": "NCHW", "input_shape": json.dumps([1, 28, 28]),
                "input_scale": repr(1 / 255), "mean": json.dumps([mean]), "std": json.dumps([std]),
                "classes": json.dumps(list(FASHION_MNIST_CLASSES))}
    forms = ((False, f"{stem}.onnx"), (True, f"{stem}_folded.onnx")) if args.arch == "mobilenet" \
        else ((False, f"{stem}.onnx"),)
    paths = {fold: os.path.join(args.out, name) for fold, name in forms}
    for fold, path in paths.items():
        export(model, path, fold_batch_norm=fold, metadata=metadata)

    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test[:1000])).numpy()
    logits = {fold: onnx_logits(path, x_test) for fold, path in paths.items()}
    for fold, path in paths.items():
        batch_norms = sum(node.op_type == "BatchNormalization" for node in onnx.load(path).graph.node)
        difference = np.abs(logits[fold][:1000] - torch_logits).max()
        print(f"{path}: {os.path.getsize(path)} bytes, {batch_norms} BatchNormalization nodes, "
              f"max |onnxruntime - torch| logit difference {difference:.2e}")
    if True in logits:
        print(f"max |unfolded - folded| logit difference: {np.abs(logits[False] - logits[True]).max():.2e}")
    for fold, path in paths.items():
        top1 = float((logits[fold].argmax(1) == test_labels).mean())
        print(f"float top-1 on the {len(test_labels)} test images (onnxruntime, {os.path.basename(path)}): "
              f"{100 * top1:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
