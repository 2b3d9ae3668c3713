"""Export the reference architecture in every form torch writes it, as the front end's test fixtures.

``python tools/make_onnx_fixtures.py`` builds tools/training/models.py's ``FashionMobileNet`` with the weights of the
committed ``models/fmnist_mobilenet.onnx`` as the front end imports them (batch norm folded into each convolution,
float32: :func:`tools.quantizer.frontend.load_graph`), so that every form holds bit-identical weights, and exports it
with torch's legacy exporter (opsets 13 to 21, static batch 1 or a dynamic batch) and with the dynamo exporter
(opset 18 or its default, weights in external data), with the global pool, the flatten and the fully connected head
written the ways PyTorch users write them (:data:`FORMS`). tests/tools/quantizer/test_frontend_exports.py checks
that each fixture quantizes to the same integers as the committed model.

To keep the fixtures small, the weights of every form are stored once: each ``.onnx`` file keeps its exporter's
graph and points (ONNX external data, by offset) into one shared ``weights.bin``, and the dynamo exporter's
debugging notes (stack traces) are dropped. Each also carries the committed
model's ``metadata_props`` (its preprocessing contract), so ``tools/quantize.py --model`` runs on it as on the
original. torch (and onnxscript, for the dynamo exporter) are needed here only.

The folder ``layers`` holds small random-weight networks with the layers beyond the reference architecture
(:data:`LAYER_FORMS`: MaxPool, LeakyReLU, Sigmoid, HardSwish, HardSigmoid, Tanh, squeeze-and-excitation Mul, Concat
(also of inputs off the 8-channel words), ReLU where no layer absorbs it, a 1x1 stride-2 shortcut), each in both
exporters, weights inline (a few kB each); tests/tools/quantizer/test_frontend_exports.py quantizes them and checks
the .tflite exports against LiteRT's reference kernels.
"""

import dataclasses
import hashlib
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from cli import OneLineErrorParser, atomic_folder
from tools.quantizer.frontend import Conv, FullyConnected, fold_batch_norm, load_graph
from tools.quantizer.pipeline import DEFAULT_MODEL
from tools.training.models import FashionMobileNet

__all__ = ["FORMS", "LAYER_FORMS", "LAYER_INPUT", "ResNetStyle", "MobileNetV3Style", "InceptionStyle", "FireStyle",
           "layer_network", "main"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FIXTURES = os.path.join(_ROOT, "tests", "fixtures", "onnx")
#: The shared weights file of the fixtures.
WEIGHTS = "weights.bin"


class _Mean(nn.Module):
    """``x.mean((2, 3), keepdim=...)``: how many models write global average pooling."""

    def __init__(self, keepdim):
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x):
        return x.mean((2, 3), keepdim=self.keepdim)


class _Squeeze(nn.Module):
    """``x.squeeze(3).squeeze(2)``: a flatten of ``[N, C, 1, 1]``."""

    def forward(self, x):
        return x.squeeze(3).squeeze(2)


class _View(nn.Module):
    """``x.view(x.size(0), -1)``: a flatten whose shape is computed from the input's."""

    def forward(self, x):
        return x.view(x.size(0), -1)


class _MatMulAdd(nn.Module):
    """``x @ W.T + b`` written by hand: a fully connected layer exported as MatMul + Add."""

    def __init__(self, linear):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x):
        return x @ self.weight.t() + self.bias


@dataclasses.dataclass(frozen=True)
class Form:
    """One export: ``exporter`` ``legacy`` or ``dynamo``, ``opset`` (``None``: the exporter's default), a dynamic
    batch axis or the static batch 1, and the head: ``pool`` (``adaptive``, ``avgpool``, ``mean``, ``mean-keepdim``),
    ``flatten`` (``flatten``, ``squeeze``, ``view``, ``none`` after a mean without keepdim), ``fc`` (``linear``, ``matmul``)."""
    name: str
    exporter: str
    opset: int
    dynamic: bool
    pool: str = "adaptive"
    flatten: str = "flatten"
    fc: str = "linear"


#: The forms exported (the committed model itself is legacy, opset 17, dynamic batch, weights inline, BN kept).
FORMS = (
    Form("legacy_op13_batch1", "legacy", 13, False),
    Form("legacy_op17_mean", "legacy", 17, True, pool="mean", flatten="none"),
    Form("legacy_op21_mean_keepdim", "legacy", 21, True, pool="mean-keepdim"),
    Form("legacy_op15_avgpool_squeeze_matmul", "legacy", 15, True, pool="avgpool", flatten="squeeze", fc="matmul"),
    Form("legacy_op13_view", "legacy", 13, True, flatten="view"),
    Form("dynamo_op18_batch1", "dynamo", 18, False),
    Form("dynamo_default_dynamic_mean_matmul", "dynamo", None, True, pool="mean", flatten="none", fc="matmul"),
    Form("dynamo_op18_avgpool_squeeze", "dynamo", 18, False, pool="avgpool", flatten="squeeze"),
)


class ResNetStyle(nn.Module):
    """A small ResNet-style net: conv stem, MaxPool 3x3/2 (padding 1), a residual block with LeakyReLU, a
    squeeze-and-excitation gate with Sigmoid, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, padding=1))
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                   nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1),
                                  nn.Sigmoid())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(8, 4))

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(x + self.block(x))
        return self.head(y * self.gate(y))


class MobileNetV3Style(nn.Module):
    """A small MobileNetV3-style net: conv stem with HardSwish, depthwise conv, a squeeze-and-excitation gate with
    HardSigmoid, a SqueezeNet fire block (two expand branches joined by Concat), Tanh, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8),
                                       nn.ReLU())
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1),
                                  nn.Hardsigmoid())
        self.squeeze = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(12, 8, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                  nn.Linear(8, 4))

    def forward(self, x):
        x = self.depthwise(self.stem(x))
        x = self.squeeze(x * self.gate(x))
        return self.head(torch.cat([self.expand1(x), self.expand3(x)], 1))


class InceptionStyle(nn.Module):
    """A small Inception/YOLO-style net: a residual block whose 1x1 stride-2 projection shortcut leaves the last row
    and column of its even input unread, YOLO's SPPF (MaxPool 5x5/1 three times, Concat of four), 1x1 and 3x3 branches
    joined by Concat with the ReLU after it, a ReLU after an AvgPool, Tanh then ReLU6, global pool, Linear without
    bias: every ReLU there has no layer to fuse into."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.shortcut = nn.Sequential(nn.Conv2d(8, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
        self.pool = nn.MaxPool2d(5, 1, padding=2)
        self.branch1 = nn.Conv2d(32, 8, 1)
        self.branch3 = nn.Conv2d(32, 8, 3, padding=1)
        self.tanh = nn.Sequential(nn.Conv2d(16, 8, 1), nn.Tanh(), nn.ReLU6())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(8, 4, bias=False))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.down(x) + self.shortcut(x))
        y1 = self.pool(x)
        y2 = self.pool(y1)
        x = torch.cat([x, y1, y2, self.pool(y2)], 1)
        x = torch.relu(torch.cat([self.branch1(x), self.branch3(x)], 1))
        x = torch.relu(nn.functional.avg_pool2d(x, 2))
        return self.head(self.tanh(x))


class FireStyle(nn.Module):
    """A small SqueezeNet-style fire: squeeze 1x1, expand 1x1 (5 channels) and 3x3 (12 channels) joined by Concat with
    the ReLU after it, then MaxPool 3x3/2, a depthwise conv with ReLU6, a 1x1 conv head, global pool, Linear: a
    concatenation whose first input is not a whole number of 8-channel words, and the channel-wise layers after it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.squeeze = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
        self.expand1 = nn.Conv2d(4, 5, 1)
        self.expand3 = nn.Conv2d(4, 12, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.depthwise = nn.Sequential(nn.Conv2d(17, 17, 3, padding=1, groups=17), nn.ReLU6())
        self.head = nn.Sequential(nn.Conv2d(17, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                  nn.Linear(8, 4))

    def forward(self, x):
        x = self.squeeze(self.stem(x))
        x = torch.relu(torch.cat([self.expand1(x), self.expand3(x)], 1))
        return self.head(self.depthwise(self.pool(x)))


#: The layer fixtures (folder ``layers`` of the fixtures): random-weight networks (seeded, batch norm folded) in both
#: exporters; the legacy opset 13 export writes HardSwish as HardSigmoid and Mul.
LAYER_FORMS = (
    ("resnet_style", ResNetStyle, Form("legacy_op13", "legacy", 13, True)),
    ("resnet_style", ResNetStyle, Form("dynamo_op18", "dynamo", 18, False)),
    ("mobilenetv3_style", MobileNetV3Style, Form("legacy_op13", "legacy", 13, True)),
    ("mobilenetv3_style", MobileNetV3Style, Form("dynamo_op18", "dynamo", 18, False)),
    ("inception_style", InceptionStyle, Form("legacy_op13", "legacy", 13, True)),
    ("inception_style", InceptionStyle, Form("dynamo_op18", "dynamo", 18, False)),
    ("fire_style", FireStyle, Form("legacy_op13", "legacy", 13, True)),
    ("fire_style", FireStyle, Form("dynamo_op18", "dynamo", 18, False)),
)

#: The layer fixtures' input, C x H x W.
LAYER_INPUT = (3, 16, 16)


def layer_network(cls, seed=0):
    """``cls()`` with seeded random weights and batch-norm statistics, each batch norm folded into its convolution as
    the front end folds it (so that every exporter writes bit-identical weights), in eval mode."""
    torch.manual_seed(seed)
    model = cls()
    with torch.no_grad():
        for unit in model.modules():
            if not isinstance(unit, nn.Sequential):
                continue
            for index in range(len(unit) - 1):
                conv, norm = unit[index], unit[index + 1]
                if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                    continue
                statistics = [torch.empty(conv.out_channels).uniform_(*bounds)
                              for bounds in ((0.5, 1.5), (-0.2, 0.2), (-0.2, 0.2), (0.5, 2.0))]
                bias = np.zeros(conv.out_channels, np.float32) if conv.bias is None else conv.bias.numpy()
                weights, bias = fold_batch_norm(conv.weight.numpy(), bias, *(t.numpy() for t in statistics),
                                                norm.eps)
                folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                   groups=conv.groups, bias=True)
                folded.weight.copy_(torch.from_numpy(weights))
                folded.bias.copy_(torch.from_numpy(bias))
                unit[index], unit[index + 1] = folded, nn.Identity()
    return model.eval()


def folded_reference(path=DEFAULT_MODEL):
    """``FashionMobileNet`` holding ``path``'s weights as the front end imports them: every convolution with its
    folded float32 weights and bias, batch norm an identity."""
    graph = load_graph(path)
    layers = [node for node in graph.nodes if isinstance(node, (Conv, FullyConnected))]
    model = FashionMobileNet().eval()
    units = [module for module in model.modules()
             if isinstance(module, nn.Sequential) and isinstance(module[0], nn.Conv2d)]
    if len(units) + 1 != len(layers):
        raise ValueError(f"{path}: {len(layers)} weighted layers, the architecture has {len(units) + 1}")
    with torch.no_grad():
        for unit, layer in zip(units, layers):
            old = unit[0]
            conv = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                             groups=old.groups, bias=True)
            conv.weight.copy_(torch.from_numpy(layer.weights))
            conv.bias.copy_(torch.from_numpy(layer.bias))
            unit[0], unit[1] = conv, nn.Identity()
        model[-1].weight.copy_(torch.from_numpy(layers[-1].weights))
        model[-1].bias.copy_(torch.from_numpy(layers[-1].bias))
    return model.eval()


def _with_head(model, form):
    """A copy of ``model`` whose pool, flatten and fully connected layer are written as ``form`` says."""
    pools = {"adaptive": nn.AdaptiveAvgPool2d(1), "avgpool": nn.AvgPool2d(7), "mean": _Mean(False),
             "mean-keepdim": _Mean(True)}
    flattens = {"flatten": nn.Flatten(1), "squeeze": _Squeeze(), "view": _View(), "none": nn.Identity()}
    layers = list(model)
    layers[6], layers[7] = pools[form.pool], flattens[form.flatten]
    if form.fc == "matmul":
        layers[8] = _MatMulAdd(layers[8])
    return nn.Sequential(*layers).eval()


def _export(model, form, path, shape=(1, 28, 28)):
    x = torch.zeros(1, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if form.exporter == "legacy":
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=form.opset, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if form.dynamic else None)
        else:
            torch.onnx.export(model, (x,), path, dynamo=True, opset_version=form.opset, external_data=True,
                              dynamic_shapes=({0: torch.export.Dim("batch")},) if form.dynamic else None,
                              verbose=False)


def _drop_debug_info(model):
    """Remove what the dynamo exporter notes for debugging on each node and tensor (torch stack traces, module
    names): four fifths of its graph file, none of its meaning."""
    graph = model.graph
    for item in (*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer):
        del item.metadata_props[:]
        item.doc_string = ""


class _SharedWeights:
    """The one weights file of all fixtures: every distinct tensor once, found by its bytes."""

    def __init__(self):
        self.blob = bytearray()
        self.offsets = {}

    def externalize(self, model):
        """Point every initializer of ``model`` (loaded, weights in memory) of at least 1 KiB into the shared file;
        smaller ones (shapes, axes, bounds) stay inline, as ONNX's own writer keeps them, for shape inference."""
        for tensor in model.graph.initializer:
            raw = numpy_helper.to_array(tensor).tobytes()
            if len(raw) < 1024:
                continue
            key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(raw).hexdigest())
            if key not in self.offsets:
                self.offsets[key] = len(self.blob)
                self.blob += raw + bytes(-len(raw) % 64)      # 64-byte aligned, as ONNX's writer aligns
            for field in ("raw_data", "float_data", "int64_data", "int32_data", "double_data", "external_data"):
                tensor.ClearField(field)
            for name, value in (("location", WEIGHTS), ("offset", self.offsets[key]), ("length", len(raw))):
                entry = tensor.external_data.add()
                entry.key, entry.value = name, str(value)
            tensor.data_location = onnx.TensorProto.EXTERNAL


def main(argv=None):
    parser = OneLineErrorParser(prog="python tools/make_onnx_fixtures.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model whose weights are exported "
                                                               "(default: models/fmnist_mobilenet.onnx)")
    parser.add_argument("--out", default=_FIXTURES, help="fixture folder, replaced (default: tests/fixtures/onnx)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    reference = folded_reference(args.model)
    metadata = {prop.key: prop.value for prop in onnx.load(args.model, load_external_data=False).metadata_props}
    shared = _SharedWeights()
    models = {}
    with tempfile.TemporaryDirectory() as scratch:
        for form in FORMS:
            folder = os.path.join(scratch, form.name)
            os.mkdir(folder)
            _export(_with_head(reference, form), form, os.path.join(folder, "model.onnx"))
            model = onnx.load(os.path.join(folder, "model.onnx"))
            onnx.helper.set_model_props(model, metadata)
            _drop_debug_info(model)
            shared.externalize(model)
            models[form.name] = model
        for network, cls, form in LAYER_FORMS:
            path = os.path.join(scratch, f"{network}_{form.name}.onnx")
            _export(layer_network(cls), form, path, LAYER_INPUT)
            model = onnx.load(path)
            _drop_debug_info(model)
            models[f"layers/{network}_{form.name}"] = model
    with atomic_folder(args.out) as temporary:
        os.mkdir(os.path.join(temporary, "layers"))
        with open(os.path.join(temporary, WEIGHTS), "wb") as f:
            f.write(shared.blob)
        for name, model in models.items():
            onnx.save(model, os.path.join(temporary, name + ".onnx"))       # layer fixtures: weights inline
            onnx.checker.check_model(os.path.join(temporary, name + ".onnx"))
    for folder, _, names in sorted(os.walk(args.out)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            print(f"{os.path.relpath(path, args.out)}: {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
