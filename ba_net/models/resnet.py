"""ResNets with an attention slot in every residual block: the BA-ResNets of "BA-Net: Bridge
Attention for Deep Convolutional Neural Networks" (Zhao et al., ECCV 2022) and their baselines.

Two forms, laid out as in torchvision's ``models/resnet.py`` and the official BA-Net code
(``models/BA_resnet.py``), parameter names included (conv1, bn1, layer1.0.conv1, ...,
layer2.0.downsample.0 / .1, fc), so a weight file converts by name:

ImageNet form, :class:`ResNet` (input 224 px)::

    conv1 7x7/2 (64) - bn1 - relu - maxpool 3x3/2
    layer1..layer4: 64 / 128 / 256 / 512 planes, stride 2 at the first block of layers 2-4
    avgpool (global) - fc
    depth 18: BasicBlock [2, 2, 2, 2]   34: BasicBlock [3, 4, 6, 3]
          50: Bottleneck [3, 4, 6, 3]   101: Bottleneck [3, 4, 23, 3]   152: [3, 8, 36, 3]
    ResNeXt ``groups`` x ``width_per_group``: the 3x3 conv grouped, width planes * w / 64 * g
    (32x4d: 2 x planes); ResNet-152, ResNeXt and SE-ResNet-50 builders are in ``resnext.py``.

CIFAR form, :class:`ba_net.models.cifar_resnet.CifarResNet` (He et al. 2016, section 4.2; input
32 px), built from the same blocks in ``cifar_resnet.py``::

    conv1 3x3 (16) - bn1 - relu                      (no max pool)
    layer1..layer3: 16 / 32 / 64 channels, n BasicBlocks each (depth 6n + 2),
                    stride 2 at the first block of layers 2 and 3
    avgpool (global) - fc

Shortcuts where the shape changes are projections, a 1x1 convolution (with the stride) and BN
(option B). The paper's CIFAR table (Table 6) used option A (zero-padded identity, no
parameters), so our CIFAR counts are slightly above its 0.27M / 0.85M: ResNet-20 272,474 and
ResNet-56 855,770 trainable parameters for 10 classes (option A: 269,722 / 853,018).

The attention slot. In a block, Bridge Attention ("ba") weights the last BN's output using the
earlier convolutions' outputs as bridges, as the official code does::

    BasicBlock:  f1 = relu(bn1(conv1(x)));  out = bn2(conv2(f1))
                 out = attention(out, [f1])             # = out * BA([GAP f1], GAP out)
    Bottleneck:  f1 = relu(bn1(conv1(x)));  f2 = relu(bn2(conv2(f1)));  out = bn3(conv3(f2))
                 out = attention(out, [f1, f2])
    then         relu(out + shortcut(x))

SE, ECA and CBAM ("se", "eca", "cbam") re-weight the same tensor at the same place
(``out = attention(out)``), so the variants differ only in the module. Every module comes from
:func:`ba_net.attention.create_attention` and returns the re-weighted feature.

Narrow stages (the CIFAR form). With r = 16, the official BA (and SE, CBAM) gets a hidden width
of 16 // 16 = 1 in the 16-channel stage and 2 in the 32-channel one. We keep that by default
(``min_hidden=1``): it is the official code's behaviour applied to these widths, it gives the
reference counts (BA-ResNet-20 275,582, BA-ResNet-56 865,094), and CIFAR SE-ResNets are commonly
built the same way (r = 16 on 16 channels, width 1), so every attention variant keeps the same r
and the comparison stays like for like. The price: a width-1 module decides its 16 weights from
one ReLU unit, and for inputs where that unit is off every weight is sigmoid(0) = 0.5 (in eval
mode at initialisation a whole small batch can get 0.5 everywhere; in training BN1d centres the
unit over the batch, so it is on for about half of the samples). ``min_hidden=h`` builds each
stage's modules with ``reduction = min(r, channels // h)`` (at least 1) instead, so no module is
narrower than h (``min_hidden=4``: 16 -> 4, 32 -> 4, 64 -> 4 at r = 16; BA-ResNet-20 then has
276,650 parameters); the attention files are not changed, the model picks the reduction per
stage. It is an attention argument: a model without attention refuses it, like ``reduction``.
ECA has no bottleneck and ignores it. For the ImageNet form (64 channels and more)
``min_hidden`` up to 4 changes nothing at r = 16.

Initialisation as torchvision and the official code: every Conv2D Kaiming-normal (fan_out,
ReLU), BatchNorm2D weight 1 / bias 0, every Linear (the head and the attention modules' layers)
with PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, as the reference
models start from. ``zero_init_residual=True`` zeroes the last BN's weight of each block.

Converting the official BA weights (PyTorch Linear weights are [out, in]: transpose them;
Paddle's BN running statistics are ``_mean`` / ``_variance``)::

    layerX.Y.ba.pre_fusions.i.0.weight   -> layerX.Y.attention.squeeze.i.weight (transposed)
    layerX.Y.ba.pre_fusions.i.1.*        -> layerX.Y.attention.norms.i.*
    layerX.Y.ba.cur_fusion.0.weight      -> layerX.Y.attention.squeeze.<n>.weight (n = number of bridges)
    layerX.Y.ba.cur_fusion.1.*           -> layerX.Y.attention.norms.<n>.*
    layerX.Y.ba.generation.1.weight      -> layerX.Y.attention.excite.weight (transposed)

FLOPs: the blocks declare the residual add (one per output element) through ``extra_flops``;
the attention modules declare their own pools and products; ReLUs and max pools count zero.
Each model carries the image side it is built for as ``input_size`` (224 or 32).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import paddle
import paddle.nn as nn

from ba_net.attention import create_attention


def _kaiming_normal_fan_out(weight_shape) -> nn.initializer.KaimingNormal:
    """Kaiming-normal init with fan_out and the ReLU gain, std = sqrt(2 / fan_out), for a conv
    weight [out, in, kh, kw]. The fan_out is passed as the fan the std is computed from, because
    ``KaimingNormal(mode="fan_out")`` does not exist in Paddle 3.0 (``mode`` came in 3.1)."""
    fan_out = int(weight_shape[0]) * math.prod(int(d) for d in weight_shape[2:])
    return nn.initializer.KaimingNormal(fan_in=fan_out, nonlinearity="relu")


def _conv(in_planes: int, out_planes: int, kernel: int, stride: int, padding: int, groups: int = 1) -> nn.Conv2D:
    """A bias-free convolution created with its final init, Kaiming-normal (fan_out, ReLU), so
    building a model draws each weight once (Paddle's Gaussian sampling dominates build time)."""
    conv = nn.Conv2D(in_planes, out_planes, kernel, stride=stride, padding=padding, groups=groups, bias_attr=False,
                     weight_attr=_kaiming_normal_fan_out([out_planes, in_planes // groups, kernel, kernel]))
    conv._kaiming_fan_out = True
    return conv


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2D:
    """3x3 convolution with padding 1, no bias, Kaiming-normal (fan_out) init."""
    return _conv(in_planes, out_planes, 3, stride, 1, groups)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2D:
    """1x1 convolution, no bias, Kaiming-normal (fan_out) init."""
    return _conv(in_planes, out_planes, 1, stride, 0)


def _numel(x: paddle.Tensor) -> int:
    return math.prod(int(d) for d in x.shape)


def _make_attention(attention: Optional[str], channels: int, bridge_channels: Sequence[int],
                    attn_kwargs: Optional[dict], owner: str):
    """The block's attention module (None without attention). Bridge Attention gets the block's
    bridges; the block decides them, so ``bridge_channels`` may not be passed."""
    attn_kwargs = dict(attn_kwargs or {})
    if attention is None:
        if attn_kwargs:
            raise TypeError(f"{owner} without attention takes no attention arguments, got {sorted(attn_kwargs)}")
        return None
    if "bridge_channels" in attn_kwargs:
        raise TypeError(f"{owner} sets Bridge Attention's bridge_channels itself ({tuple(bridge_channels)}); "
                        f"do not pass it")
    if attention == "ba":
        attn_kwargs["bridge_channels"] = tuple(bridge_channels)
    return create_attention(attention, channels, **attn_kwargs)


def _apply_attention(module, out: paddle.Tensor, bridges: Sequence[paddle.Tensor]) -> paddle.Tensor:
    if module is None:
        return out
    if getattr(module, "bridged", False):
        return module(out, list(bridges))
    return module(out)


class BasicBlock(nn.Layer):
    """Two 3x3 convolutions (stride on the first) and a shortcut; the attention slot weights
    bn2's output before the residual add. For "ba" the bridge is relu(bn1(conv1(x))).

    Args:
        inplanes, planes: input and output channels.
        stride: stride of conv1 (and of the projection).
        downsample: the shortcut layer when the shape changes (None: identity).
        attention: None, or a name from :func:`ba_net.attention.create_attention` (ba, se, eca, cbam).
        attn_kwargs: keyword arguments for the attention module (reduction, act, gate, ...).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Layer] = None,
                 attention: Optional[str] = None, attn_kwargs: Optional[dict] = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2D(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2D(planes)
        self.attention = _make_attention(attention, planes, (planes,), attn_kwargs, "BasicBlock")
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x
        f1 = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(f1))
        out = _apply_attention(self.attention, out, [f1])
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)

    def extra_flops(self, inputs, output) -> int:
        """The residual add, one per output element."""
        return _numel(output)


class Bottleneck(nn.Layer):
    """1x1 (width) - 3x3 (width, the stride and the groups here) - 1x1 (4 x planes) and a
    shortcut, width = planes * base_width / 64 * groups (planes for a ResNet, 2 x planes for
    ResNeXt 32x4d); the attention slot weights bn3's output before the residual add. For "ba"
    the bridges are relu(bn1(conv1(x))) and relu(bn2(conv2(.))).

    Args: as :class:`BasicBlock`, plus ``groups`` and ``base_width`` (torchvision's); the output
    has ``planes * 4`` channels.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Layer] = None,
                 attention: Optional[str] = None, attn_kwargs: Optional[dict] = None, groups: int = 1,
                 base_width: int = 64):
        super().__init__()
        out = planes * self.expansion
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2D(width)
        self.conv3 = conv1x1(width, out)
        self.bn3 = nn.BatchNorm2D(out)
        self.relu = nn.ReLU()
        self.attention = _make_attention(attention, out, (width, width), attn_kwargs, "Bottleneck")
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        identity = x
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.relu(self.bn2(self.conv2(f1)))
        out = self.bn3(self.conv3(f2))
        out = _apply_attention(self.attention, out, [f1, f2])
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)

    def extra_flops(self, inputs, output) -> int:
        """The residual add, one per output element."""
        return _numel(output)


def stage_reduction(channels: int, reduction: int = 16, min_hidden: int = 1) -> int:
    """The reduction an attention module on ``channels`` channels is built with so that its
    hidden width is at least ``min_hidden``: ``min(reduction, channels // min_hidden)``, at least
    1. ``min_hidden=1`` leaves ``reduction`` as it is (the official behaviour)."""
    if reduction < 1 or min_hidden < 1:
        raise ValueError(f"reduction and min_hidden must be positive, got {reduction}, {min_hidden}")
    return min(int(reduction), max(1, channels // int(min_hidden)))


class ResNetBase(nn.Layer):
    """Stage building, attention arguments and initialisation shared by both forms."""

    input_size = 224

    def _setup_attention(self, attention, min_hidden, attn_kwargs):
        if attention is None and (attn_kwargs or min_hidden != 1):
            extra = sorted(attn_kwargs) + (["min_hidden"] if min_hidden != 1 else [])
            raise TypeError(f"{type(self).__name__} without attention takes no attention arguments, got {extra}")
        if isinstance(min_hidden, bool) or not isinstance(min_hidden, int) or min_hidden < 1:
            raise ValueError(f"min_hidden must be a positive integer, got {min_hidden!r}")
        self.attention_name = attention
        self.min_hidden = min_hidden
        self._attn_kwargs = dict(attn_kwargs)
        self._reduction = self._attn_kwargs.pop("reduction", 16)

    def _block_attn_kwargs(self, channels: int) -> Optional[dict]:
        if self.attention_name is None:
            return None
        return dict(self._attn_kwargs, reduction=stage_reduction(channels, self._reduction, self.min_hidden))

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        out_channels = planes * block.expansion
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(conv1x1(self.inplanes, out_channels, stride), nn.BatchNorm2D(out_channels))
        kwargs = dict(getattr(self, "block_kwargs", {}), attention=self.attention_name,
                      attn_kwargs=self._block_attn_kwargs(out_channels))
        layers = [block(self.inplanes, planes, stride, downsample, **kwargs)]
        self.inplanes = out_channels
        layers += [block(self.inplanes, planes, **kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        if not paddle.in_dynamic_mode():
            # Traced into a static program (the fast path, ba_net/accel/static_train.py): an initializer
            # called on a static parameter appends its op to the *main* program, which would draw
            # the weights afresh at every step; the program's weights come from the dygraph model.
            return
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                if not getattr(m, "_kaiming_fan_out", False):  # e.g. CBAM's spatial conv
                    _kaiming_normal_fan_out(m.weight.shape)(m.weight)
            elif isinstance(m, nn.BatchNorm2D):
                nn.initializer.Constant(1.0)(m.weight)
                nn.initializer.Constant(0.0)(m.bias)
            elif isinstance(m, nn.Linear):  # PyTorch's default Linear init, as the reference models
                bound = 1.0 / math.sqrt(m.weight.shape[0])
                nn.initializer.Uniform(-bound, bound)(m.weight)
                if m.bias is not None:
                    nn.initializer.Uniform(-bound, bound)(m.bias)
        if zero_init_residual:
            for m in self.sublayers():
                if isinstance(m, Bottleneck):
                    nn.initializer.Constant(0.0)(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.initializer.Constant(0.0)(m.bn2.weight)

    def _head(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(paddle.flatten(self.avgpool(x), 1))


class ResNet(ResNetBase):
    """The ImageNet-form ResNet (7x7 stem, max pool, four stages), input 224 px.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. [2, 2, 2, 2] for ResNet-18.
        num_classes: size of the last layer.
        attention: None, or the attention in every block (ba, se, eca, cbam).
        min_hidden: minimum hidden width of the attention modules (1: the official behaviour).
        zero_init_residual: zero the last BN's weight of each block.
        groups, width_per_group: ResNeXt's cardinality and group width (Bottleneck only).
        **attn_kwargs: passed to every attention module (reduction, act, gate, ...).
    """

    input_size = 224

    def __init__(self, block, layers: Sequence[int], num_classes: int, attention: Optional[str] = None,
                 min_hidden: int = 1, zero_init_residual: bool = False, groups: int = 1,
                 width_per_group: int = 64, **attn_kwargs):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"the ImageNet-form ResNet has 4 stages, got layers={list(layers)}")
        self._setup_attention(attention, min_hidden, attn_kwargs)
        if (groups, width_per_group) != (1, 64):
            if block is not Bottleneck:
                raise ValueError("groups and width_per_group (ResNeXt) need the Bottleneck block")
            self.block_kwargs = {"groups": groups, "base_width": width_per_group}
        self.inplanes = 64
        self.conv1 = _conv(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2D(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self._head(x)


# ImageNet form ------------------------------------------------------------------------------

def resnet18(num_classes: int, **kwargs) -> ResNet:
    """ResNet-18: BasicBlock [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes: int, **kwargs) -> ResNet:
    """ResNet-34: BasicBlock [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet50(num_classes: int, **kwargs) -> ResNet:
    """ResNet-50: Bottleneck [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kwargs)


def resnet101(num_classes: int, **kwargs) -> ResNet:
    """ResNet-101: Bottleneck [3, 4, 23, 3]."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **kwargs)


def ba_resnet18(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNet-18: Bridge Attention (r = 16) in every block."""
    return resnet18(num_classes, attention="ba", **kwargs)


def ba_resnet34(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNet-34: Bridge Attention (r = 16) in every block."""
    return resnet34(num_classes, attention="ba", **kwargs)


def ba_resnet50(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNet-50: Bridge Attention (r = 16) in every block."""
    return resnet50(num_classes, attention="ba", **kwargs)


def ba_resnet101(num_classes: int, **kwargs) -> ResNet:
    """BA-ResNet-101: Bridge Attention (r = 16) in every block."""
    return resnet101(num_classes, attention="ba", **kwargs)


__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "conv1x1", "conv3x3", "stage_reduction",
    "resnet18", "resnet34", "resnet50", "resnet101", "ba_resnet18", "ba_resnet34", "ba_resnet50", "ba_resnet101",
]
