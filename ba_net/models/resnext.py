"""The other ResNet-family networks of the ImageNet table of "BA-Net: Bridge Attention for Deep
Convolutional Neural Networks" (Zhao et al., ECCV 2022; official code github.com/zhaoy376/
Bridge-Attention): ResNet-152, ResNeXt-50 / 101 (32x4d) with and without Bridge Attention, and
the SE-ResNet-50 baseline. All are :class:`ba_net.models.resnet.ResNet` with its blocks (input
224 px, ``model.input_size``), so the names, the initialisation and the weight conversion are
those documented in ``resnet.py``.

ResNeXt 32x4d: torchvision's ``resnext50_32x4d`` / ``resnext101_32x4d`` (the official
``models/BA_resnext.py`` has the same layers: conv1 / conv2 (grouped, 32) / conv3 of widths
2 x planes, 2 x planes, 4 x planes). Bridge Attention sits where it sits in the BA-ResNets: it
weights bn3's output, bridged from relu(bn1(conv1)) and relu(bn2(conv2)), r = 16 on 4 x planes
channels, as the official ``BA_module_resnet([planes*2, planes*2], 4*planes)`` is built. Not
taken from the official BA-ResNeXt: its blocks call the module with 3 or 4 arguments (the module
takes 2, so its forward raises TypeError) and expect a (weights, fusion) pair back, and its
``gate1``..``gate4`` layers (bias-free Linear 2h -> h + sigmoid per stage, 43,520 parameters in
ResNeXt-50 / 101) are never used by a working forward; they are left out, so an official state
dict converts once its ``gate*`` entries are dropped.

SE-ResNet-50: the official ``models/se_resnet.py`` (torchvision's ResNet-50 with ``SELayer`` on
bn3's output, r = 16, both linear layers *without* bias, ReLU, sigmoid):
``layerX.Y.se.fc.0.weight`` -> ``layerX.Y.attention.squeeze.weight`` and ``se.fc.2.weight`` ->
``attention.excite.weight`` (both transposed). Its 28,071,976 trainable parameters (1,000
classes) are 16,048 fewer than the usual SE-ResNet-50 with biases (``resnet50(attention="se")``).
"""
from __future__ import annotations

from ba_net.models.resnet import Bottleneck, ResNet


def resnet152(num_classes: int, **kwargs) -> ResNet:
    """ResNet-152: Bottleneck [3, 8, 36, 3]."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, **kwargs)


def ba_resnet152(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNet-152: Bridge Attention (r = 16) in every block."""
    return resnet152(num_classes, attention="ba", **kwargs)


def resnext50_32x4d(num_classes: int, **kwargs) -> ResNet:
    """ResNeXt-50 32x4d: Bottleneck [3, 4, 6, 3], 32 groups of width 4 in the first stage."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **kwargs)


def resnext101_32x4d(num_classes: int, **kwargs) -> ResNet:
    """ResNeXt-101 32x4d: Bottleneck [3, 4, 23, 3], 32 groups of width 4 in the first stage."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, groups=32, width_per_group=4, **kwargs)


def ba_resnext50_32x4d(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNeXt-50 32x4d: Bridge Attention (r = 16) in every block."""
    return resnext50_32x4d(num_classes, attention="ba", **kwargs)


def ba_resnext101_32x4d(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNeXt-101 32x4d: Bridge Attention (r = 16) in every block."""
    return resnext101_32x4d(num_classes, attention="ba", **kwargs)


def se_resnet50(num_classes: int, **kwargs) -> ResNet:
    """SE-ResNet-50 as the official code builds it: SE (r = 16) on bn3's output, bias-free."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, attention="se", bias=False, **kwargs)


__all__ = [
    "ba_resnet152", "ba_resnext50_32x4d", "ba_resnext101_32x4d",
    "resnet152", "resnext50_32x4d", "resnext101_32x4d", "se_resnet50",
]
