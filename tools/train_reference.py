"""Train the built-in reference model: a small MobileNet-style CNN on Fashion-MNIST, exported to ONNX twice.

``python tools/train_reference.py`` trains on the 60,000-image train split only (the quantizer calibrates and
evaluates on the test split), on the CPU with fixed seeds, and writes:

- ``models/fmnist_mobilenet.onnx``: batch normalisation kept as BatchNormalization nodes (what a user exports from
  a training framework; the quantizer must fold it itself);
- ``models/fmnist_mobilenet_folded.onnx``: batch normalisation folded into the convolutions by the exporter.

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
from torch import nn

from cli import OneLineErrorParser, require_positive
from tools.quantizer.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, load_fashion_mnist, normalize_images
from tools.training import export, onnx_logits, train

__all__ = ["FashionMobileNet", "main"]

_MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def _conv_bn(in_channels, out_channels, *, kernel=1, stride=1, groups=1, relu6=True):
    """Conv (no bias: batch norm supplies it) + BatchNorm + optional ReLU6, MobileNet's unit."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    if relu6:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class _Separable(nn.Sequential):
    """MobileNetV1 depthwise-separable block: 3x3 depthwise then 1x1 pointwise, each with BN + ReLU6."""

    def __init__(self, in_channels, out_channels, *, stride):
        super().__init__(_conv_bn(in_channels, in_channels, kernel=3, stride=stride, groups=in_channels),
                         _conv_bn(in_channels, out_channels))


class _InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise, 1x1 linear projection, Add of the input."""

    def __init__(self, channels, *, expand):
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(_conv_bn(channels, hidden),
                                  _conv_bn(hidden, hidden, kernel=3, groups=hidden),
                                  _conv_bn(hidden, channels, relu6=False))

    def forward(self, x):
        return x + self.body(x)


class FashionMobileNet(nn.Sequential):
    """The reference CNN, input ``[N, 1, 28, 28]``, output 10 logits.

    stem 3x3 conv 1->16 (28x28); separable /2 16->32 (14x14); inverted residual 32 (x2 expansion);
    separable /2 32->64 (7x7); inverted residual 64 (x2); separable 64->128; global average pool; flatten;
    Linear 128->10. Every conv is followed by BatchNorm and ReLU6 except the residual projections.
    """

    def __init__(self):
        super().__init__(_conv_bn(1, 16, kernel=3),
                         _Separable(16, 32, stride=2),
                         _InvertedResidual(32, expand=2),
                         _Separable(32, 64, stride=2),
                         _InvertedResidual(64, expand=2),
                         _Separable(64, 128, stride=1),
                         nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(1),
                         nn.Linear(128, len(FASHION_MNIST_CLASSES)))


def main(argv=None):
    parser = OneLineErrorParser(prog="python tools/train_reference.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=FASHION_MNIST_ROOT,
                        help="folder with the Fashion-MNIST idx .gz files (default: %(default)s)")
    parser.add_argument("--out", default=_MODELS, help="folder the two ONNX files are written to (default: models/)")
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

    model = FashionMobileNet()
    parameters = sum(p.numel() for p in model.parameters())
    print(f"FashionMobileNet: {parameters} parameters; input (pixel/255 - {mean}) / {std}")
    start = time.monotonic()
    train(model, x_train, train_labels, epochs=args.epochs, batch_size=args.batch_size,
          learning_rate=args.lr, seed=args.seed)
    print(f"trained {args.epochs} epochs in {time.monotonic() - start:.0f} s on {args.threads} threads")

    metadata = {"dataset": "fashion-mnist", "input_layout": "NCHW", "input_shape": json.dumps([1, 28, 28]),
                "input_scale": repr(1 / 255), "mean": json.dumps([mean]), "std": json.dumps([std]),
                "classes": json.dumps(list(FASHION_MNIST_CLASSES))}
    paths = {fold: os.path.join(args.out, name)
             for fold, name in ((False, "fmnist_mobilenet.onnx"), (True, "fmnist_mobilenet_folded.onnx"))}
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
    print(f"max |unfolded - folded| logit difference: {np.abs(logits[False] - logits[True]).max():.2e}")
    for fold, path in paths.items():
        top1 = float((logits[fold].argmax(1) == test_labels).mean())
        print(f"float top-1 on the {len(test_labels)} test images (onnxruntime, {os.path.basename(path)}): "
              f"{100 * top1:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
