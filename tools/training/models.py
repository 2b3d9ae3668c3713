"""The architecture of the built-in reference model (tools/train_reference.py), for its training and for the ONNX
export fixtures of tools/make_onnx_fixtures.py."""

from torch import nn

from tools.quantizer.datasets import FASHION_MNIST_CLASSES

__all__ = ["FashionMobileNet"]


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
