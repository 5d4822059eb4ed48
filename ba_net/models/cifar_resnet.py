"""The CIFAR-form ResNets of He et al. 2016 (section 4.2) and their BA / SE / ECA / CBAM variants:
a 3x3 stem of 16 channels and three stages of BasicBlocks, input 32 px. The blocks, the attention
slot, the shortcuts, the initialisation and the parameter counts are those of
:mod:`ba_net.models.resnet` (read its docstring first); this file only lays out the CIFAR stages
and names the depths."""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn

from ba_net.models.resnet import BasicBlock, ResNetBase, conv3x3


class CifarResNet(ResNetBase):
    """The CIFAR-form ResNet of He et al. 2016 (section 4.2): 3x3 stem of 16 channels, three
    stages of 16 / 32 / 64 channels with n BasicBlocks each (depth 6n + 2), input 32 px.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110, ...).
        num_classes: size of the last layer.
        attention, min_hidden, zero_init_residual, **attn_kwargs: as :class:`ResNet`.
    """

    input_size = 32

    def __init__(self, depth: int, num_classes: int, attention: Optional[str] = None,
                 min_hidden: int = 1, zero_init_residual: bool = False, **attn_kwargs):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"the CIFAR-form ResNet's depth is 6n + 2 (20, 32, 44, 56, 110, ...), got {depth!r}")
        self._setup_attention(attention, min_hidden, attn_kwargs)
        n = (depth - 2) // 6
        self.depth = depth
        self.inplanes = 16
        self.conv1 = conv3x3(3, 16)
        self.bn1 = nn.BatchNorm2D(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(BasicBlock, 16, n)
        self.layer2 = self._make_layer(BasicBlock, 32, n, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 64, n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(64, num_classes)
        self._init_weights(zero_init_residual)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self._head(x)


def resnet20(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR ResNet-20 (n = 3)."""
    return CifarResNet(20, num_classes, **kwargs)


def resnet32(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR ResNet-32 (n = 5)."""
    return CifarResNet(32, num_classes, **kwargs)


def resnet44(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR ResNet-44 (n = 7)."""
    return CifarResNet(44, num_classes, **kwargs)


def resnet56(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR ResNet-56 (n = 9)."""
    return CifarResNet(56, num_classes, **kwargs)


def resnet110(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR ResNet-110 (n = 18)."""
    return CifarResNet(110, num_classes, **kwargs)


def ba_resnet20(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR BA-ResNet-20: Bridge Attention (r = 16, ``min_hidden`` 1 by default) in every block."""
    return resnet20(num_classes, attention="ba", **kwargs)


def ba_resnet56(num_classes: int, **kwargs) -> CifarResNet:
    """CIFAR BA-ResNet-56: Bridge Attention (r = 16, ``min_hidden`` 1 by default) in every block."""
    return resnet56(num_classes, attention="ba", **kwargs)


__all__ = ["CifarResNet", "ba_resnet20", "ba_resnet56", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
