"""The architectures trained by tools/train_reference.py: the built-in reference model (also the ONNX export fixtures
of tools/make_onnx_fixtures.py) and the ResNet- and MobileNetV3-style results networks (issue 14)."""

import torch
from torch import nn

from tools.quantizer.datasets import FASHION_MNIST_CLASSES

__all__ = ["FashionMobileNet", "FashionResNet", "FashionMobileNetV3", "ARCHITECTURES"]


def _conv_bn(in_channels, out_channels, *, kernel=1, stride=1, groups=1, activation=nn.ReLU6):
    """Conv (no bias: batch norm supplies it) + BatchNorm + an activation (a module class; ``None`` for none),
    MobileNet's unit."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    if activation is not None:
        layers.append(activation())
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
                                  _conv_bn(hidden, channels, activation=None))

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


class _Basic(nn.Module):
    """ResNet basic block: two 3x3 convs (BN; ReLU after the first), Add of the input, ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels, kernel=3, activation=nn.ReLU),
                                  _conv_bn(channels, channels, kernel=3, activation=None))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.body(x))


class FashionResNet(nn.Sequential):
    """ResNet-style CNN, input ``[N, 1, 28, 28]``: stem 3x3 conv 1->16 + ReLU, MaxPool 3x3/2 pad 1 (14x14), basic
    block 16, 3x3 conv /2 16->32 + ReLU (7x7), basic block 32, global average pool, flatten, Linear 32->10."""

    def __init__(self):
        super().__init__(_conv_bn(1, 16, kernel=3, activation=nn.ReLU),
                         nn.MaxPool2d(3, 2, 1),
                         _Basic(16),
                         _conv_bn(16, 32, kernel=3, stride=2, activation=nn.ReLU),
                         _Basic(32),
                         nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(1),
                         nn.Linear(32, len(FASHION_MNIST_CLASSES)))


class _SqueezeExcite(nn.Module):
    """MobileNetV3's squeeze-and-excitation: global pool, 1x1 conv + ReLU, 1x1 conv + HardSigmoid, times the input."""

    def __init__(self, channels, squeeze):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeeze, 1), nn.ReLU(),
                                  nn.Conv2d(squeeze, channels, 1), nn.Hardsigmoid())

    def forward(self, x):
        return x * self.gate(x)


class _Branches(nn.Module):
    """Two branches of 1x1 and 3x3 convs (BN + HardSwish) concatenated along channels."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.one = _conv_bn(in_channels, out_channels, activation=nn.Hardswish)
        self.three = _conv_bn(in_channels, out_channels, kernel=3, activation=nn.Hardswish)

    def forward(self, x):
        return torch.cat([self.one(x), self.three(x)], 1)


class FashionMobileNetV3(nn.Sequential):
    """MobileNetV3-style CNN, input ``[N, 1, 28, 28]``: stem 3x3 conv /2 1->16 + HardSwish (14x14); 3x3 depthwise
    + ReLU, squeeze-excite (HardSigmoid gate), 1x1 16->24; 1x1 expand 24->48 + HardSwish, 3x3 depthwise /2 +
    HardSwish (7x7), squeeze-excite, 1x1 project 48->32; 1x1 and 3x3 branches 32->16 each + HardSwish, concatenated;
    1x1 32->64 + HardSwish; global average pool, flatten, Linear 64->10."""

    def __init__(self):
        super().__init__(_conv_bn(1, 16, kernel=3, stride=2, activation=nn.Hardswish),
                         _conv_bn(16, 16, kernel=3, groups=16, activation=nn.ReLU),
                         _SqueezeExcite(16, 8),
                         _conv_bn(16, 24, activation=None),
                         _conv_bn(24, 48, activation=nn.Hardswish),
                         _conv_bn(48, 48, kernel=3, stride=2, groups=48, activation=nn.Hardswish),
                         _SqueezeExcite(48, 16),
                         _conv_bn(48, 32, activation=None),
                         _Branches(32, 16),
                         _conv_bn(32, 64, activation=nn.Hardswish),
                         nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(1),
                         nn.Linear(64, len(FASHION_MNIST_CLASSES)))


#: ``--arch`` of tools/train_reference.py -> (architecture, file name stem in models/).
ARCHITECTURES = {"mobilenet": (FashionMobileNet, "fmnist_mobilenet"), "resnet": (FashionResNet, "fmnist_resnet"),
                 "mobilenetv3": (FashionMobileNetV3, "fmnist_mobilenetv3")}
