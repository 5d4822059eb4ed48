"""EfficientNet-B0..B3 and their BA forms, from "BA-Net: Bridge Attention for Deep Convolutional
Neural Networks" (Zhao et al., ECCV 2022; official code github.com/zhaoy376/Bridge-Attention,
``models/BA_effcientnet.py``, built on lukemelas' EfficientNet-PyTorch, which is the baseline).

Layout (Tan & Le 2019, as EfficientNet-PyTorch builds it; "same" padding as TensorFlow, the
extra row / column at the end, which Paddle's ``padding="SAME"`` does)::

    conv_stem 3x3/2 (round(32)) - bn0 - swish
    blocks: MBConv rows (repeats, kernel, stride, expand, in, out), SE ratio 0.25, B0:
        (1, 3, 1, 1, 32, 16) (2, 3, 2, 6, 16, 24) (2, 5, 2, 6, 24, 40) (3, 3, 2, 6, 40, 80)
        (3, 5, 1, 6, 80, 112) (4, 5, 2, 6, 112, 192) (1, 3, 1, 6, 192, 320)
        channels round_filters(c * width) (multiples of 8), repeats ceil(r * depth)
    conv_head 1x1 (round(1280)) - bn1 - swish - global average pool - dropout - fc

    B0 width 1.0 depth 1.0 224 px dropout 0.2    B1 1.0 1.1 240 px 0.2
    B2 width 1.1 depth 1.2 260 px dropout 0.3    B3 1.2 1.4 300 px 0.3

BatchNorm momentum 0.01 in PyTorch's sense (Paddle 0.99), epsilon 1e-3; drop connect
(stochastic depth) 0.2 x block index / number of blocks on the blocks with a shortcut.

An MBConv block (inp channels in, oup = inp x expand inside, swish activations)::

    e = swish(bn0(expand_conv(x)))            (expand != 1 only; else e = x)
    d = swish(bn1(depthwise_conv(e)))
    d = attention(d)                          (the slot, before the projection)
    out = bn2(project_conv(d)), + x (with drop connect) when stride 1 and inp == out channels

Plain (``efficientnet_b*``): SE in every block, hidden ``max(1, int(inp * 0.25))`` (the block's
*input* channels), both layers with bias, swish, sigmoid, on the pooled d.
BA (``ba_efficientnet_b*``): every expanded block has Bridge Attention instead, ``BA(d, [e])``:
GAP(e) and GAP(d), both after their swish, hidden oup // 6, swish, sigmoid, as the official
``BA_module_efficientnet([oup], oup, reduction=6)``. The expand-ratio-1 block (the first one) has
no bridge and keeps an SE-shaped gate with the baseline's widths (1x1 convolutions with bias,
swish, sigmoid), which the official code applies to d *unpooled*: ``x * att(x)``, one weight per
position and channel (:class:`PointwiseGate`). Its commented-out lines (and the paper's "blocks
without a bridge keep SE") pool first, but the unpooled gate is what the code runs (the only
BA-EfficientNet of the repository that publishes B0's 71.704 % top-1), so it is our default
(``unpooled_first_gate=None``: on in the BA models). ``unpooled_first_gate=False`` builds the
pooled SE gate instead; both have the same parameters (the counts below hold for either) and the
same weights (reshaped), so they differ only in what the gate sees. The baseline always pools (its
SE is EfficientNet-PyTorch's).

Initialisation as the official code (PyTorch's defaults, nothing re-initialised): Conv2D and
Linear weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BatchNorm 1 / 0.

Converting official weights: drop the leading underscore of every name (``_blocks.3._bn1`` ->
``blocks.3.bn1``, ``_conv_stem``, ``_fc``, ...); Linear weights transpose ([out, in] -> [in,
out]); BN running statistics ``running_mean`` / ``running_var`` -> ``_mean`` / ``_variance``. The
attention: baseline ``_se_reduce`` / ``_se_expand`` (1x1 convs) -> ``attention.squeeze`` /
``attention.excite`` (weight [o, i, 1, 1] -> [i, o]); BA blocks ``att.*`` -> ``attention.*`` as in
``resnet.py`` (pre_fusions.0 -> squeeze.0 / norms.0, cur_fusion -> squeeze.1 / norms.1,
generation.1 -> excite); the first BA block's ``att.0`` / ``att.2`` -> ``attention.squeeze`` /
``attention.excite`` (as they are; reshaped and transposed with ``unpooled_first_gate=False``).

Trainable parameters at 1,000 classes: B0 5,288,548 (EfficientNet-PyTorch), BA-B0 8,418,640,
BA-B1 13,328,308, BA-B2 15,669,908, BA-B3 21,518,832 (official code); B1 7,794,184, B2 9,109,994,
B3 12,233,232 (ours, measured).
"""
from __future__ import annotations

import math
from typing import Optional

import paddle
import paddle.nn as nn

from ba_net.attention import create_attention
from ba_net.models.mobilenetv3 import squeeze_excitation

# repeats, kernel, stride, expand ratio, input filters, output filters (B0; SE ratio 0.25 everywhere)
BLOCKS = (
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320),
)
# width, depth, input size, dropout
VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
}
SE_RATIO = 0.25


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` to the nearest multiple of ``divisor``, never 10 % below."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled else new)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks per stage scaled by ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def _bn(channels: int) -> nn.BatchNorm2D:
    return nn.BatchNorm2D(channels, momentum=0.99, epsilon=1e-3)


def _conv(inp: int, oup: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2D:
    return nn.Conv2D(inp, oup, kernel, stride=stride, padding="SAME", groups=groups,
                     bias_attr=None if bias else False)


class PointwiseGate(nn.Layer):
    """The official BA code's gate in the expand-ratio-1 block: SE's layers without the pool,
    ``x * sigmoid(excite(swish(squeeze(x))))`` with 1x1 convolutions (with bias), one weight per
    position and channel."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.squeeze = nn.Conv2D(channels, hidden, 1)
        self.act = nn.Swish()
        self.excite = nn.Conv2D(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.gate(self.excite(self.act(self.squeeze(x))))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.weights(x)


class MBConvBlock(nn.Layer):
    """Mobile inverted bottleneck with its attention slot (see the module docstring).

    Args:
        inp, oup: input and output channels; kernel, stride: of the depthwise convolution.
        expand: expansion ratio (1: no expansion convolution).
        attention: None (SE, the baseline) or "ba".
        drop_connect_rate: probability of dropping the residual branch in training.
        unpooled_first_gate: in a BA model's unexpanded block, the official per-position gate.
    """

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand: int,
                 attention: Optional[str] = None, drop_connect_rate: float = 0.0,
                 unpooled_first_gate: bool = False):
        super().__init__()
        hidden = inp * expand
        self.expand = expand != 1
        self.use_bridge = attention == "ba" and self.expand
        self.skip = stride == 1 and inp == oup
        self.drop_connect_rate = float(drop_connect_rate)
        if self.expand:
            self.expand_conv = _conv(inp, hidden, 1)
            self.bn0 = _bn(hidden)
        self.depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self.bn1 = _bn(hidden)
        squeezed = max(1, int(inp * SE_RATIO))
        if self.use_bridge:
            self.attention = create_attention("ba", hidden, reduction=6, act="swish", gate="sigmoid",
                                              bridge_channels=(hidden,))
        elif attention == "ba" and unpooled_first_gate:
            self.attention = PointwiseGate(hidden, squeezed)
        else:
            self.attention = squeeze_excitation(hidden, squeezed, act="swish", gate="sigmoid")
        self.project_conv = _conv(hidden, oup, 1)
        self.bn2 = _bn(oup)
        self.swish = nn.Swish()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        e = self.swish(self.bn0(self.expand_conv(x))) if self.expand else x
        d = self.swish(self.bn1(self.depthwise_conv(e)))
        d = self.attention(d, [e]) if self.use_bridge else self.attention(d)
        out = self.bn2(self.project_conv(d))
        if not self.skip:
            return out
        if self.training and self.drop_connect_rate > 0:
            keep = 1.0 - self.drop_connect_rate
            mask = (paddle.rand([out.shape[0], 1, 1, 1], dtype=out.dtype) < keep).astype(out.dtype)  # traceable
            out = out / keep * mask
        return out + x

    def extra_flops(self, inputs, output) -> int:
        """The residual add, one per output element, when there is a shortcut."""
        return math.prod(int(d) for d in output.shape) if self.skip else 0


class EfficientNet(nn.Layer):
    """EfficientNet scaled by ``width`` and ``depth``, for ``image_size`` px inputs.

    Args:
        width, depth: the compound scaling coefficients; image_size: the input side
            (``model.input_size``; any side runs, the padding is computed per input).
        num_classes: size of the last layer; dropout: before it.
        attention: None (SE, the baseline) or "ba".
        drop_connect_rate: the last block's stochastic-depth rate (0.2).
        unpooled_first_gate: the first (unexpanded) block's gate in a BA model: the official
            code's per-position gate (True; None: True for BA, the default) or a pooled SE (False).
    """

    input_size = 224

    def __init__(self, width: float, depth: float, image_size: int, num_classes: int, dropout: float = 0.2,
                 attention: Optional[str] = None, drop_connect_rate: float = 0.2,
                 unpooled_first_gate: Optional[bool] = None):
        super().__init__()
        if attention not in (None, "ba"):
            raise ValueError(f"EfficientNet takes attention None (SE) or 'ba', got {attention!r}")
        if unpooled_first_gate and attention != "ba":
            raise ValueError("unpooled_first_gate is the BA model's first-block gate; the baseline pools")
        if unpooled_first_gate is None:
            unpooled_first_gate = attention == "ba"  # the official BA code's gate
        self.input_size = int(image_size)
        self.attention_name = attention
        stem = round_filters(32, width)
        self.conv_stem = _conv(3, stem, 3, 2)
        self.bn0 = _bn(stem)
        rows = []
        for repeats, kernel, stride, expand, inp, oup in BLOCKS:
            inp, oup = round_filters(inp, width), round_filters(oup, width)
            for i in range(round_repeats(repeats, depth)):
                rows.append((inp if i == 0 else oup, oup, kernel, stride if i == 0 else 1, expand))
        self.blocks = nn.Sequential(*[
            MBConvBlock(*row, attention=attention, drop_connect_rate=drop_connect_rate * i / len(rows),
                        unpooled_first_gate=unpooled_first_gate)
            for i, row in enumerate(rows)])
        head = round_filters(1280, width)
        self.conv_head = _conv(rows[-1][1], head, 1)
        self.bn1 = _bn(head)
        self.swish = nn.Swish()
        self.avg_pooling = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """PyTorch's default initialisation, which the official models train from."""
        if not paddle.in_dynamic_mode():  # traced into a static program: weights come from the dygraph model
            return
        for m in self.sublayers():
            if isinstance(m, (nn.Conv2D, nn.Linear)):
                shape = [int(d) for d in m.weight.shape]
                fan_in = math.prod(shape[1:]) if isinstance(m, nn.Conv2D) else shape[0]
                bound = 1.0 / math.sqrt(fan_in)
                nn.initializer.Uniform(-bound, bound)(m.weight)
                if m.bias is not None:
                    nn.initializer.Uniform(-bound, bound)(m.bias)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.swish(self.bn0(self.conv_stem(x)))
        x = self.swish(self.bn1(self.conv_head(self.blocks(x))))
        x = paddle.flatten(self.avg_pooling(x), 1)
        return self.fc(self.dropout(x))


def _efficientnet(variant: str, num_classes: int, **kwargs) -> EfficientNet:
    width, depth, size, dropout = VARIANTS[variant]
    kwargs.setdefault("dropout", dropout)
    return EfficientNet(width, depth, size, num_classes, **kwargs)


def efficientnet_b0(num_classes: int, **kwargs) -> EfficientNet:
    """EfficientNet-B0 (224 px) with SE."""
    return _efficientnet("b0", num_classes, **kwargs)


def efficientnet_b1(num_classes: int, **kwargs) -> EfficientNet:
    """EfficientNet-B1 (240 px) with SE."""
    return _efficientnet("b1", num_classes, **kwargs)


def efficientnet_b2(num_classes: int, **kwargs) -> EfficientNet:
    """EfficientNet-B2 (260 px) with SE."""
    return _efficientnet("b2", num_classes, **kwargs)


def efficientnet_b3(num_classes: int, **kwargs) -> EfficientNet:
    """EfficientNet-B3 (300 px) with SE."""
    return _efficientnet("b3", num_classes, **kwargs)


def ba_efficientnet_b0(num_classes: int, **kwargs) -> EfficientNet:
    """BA-EfficientNet-B0: Bridge Attention (r = 6, swish) in every expanded block, the official
    per-position gate in the first (``unpooled_first_gate=False``: a pooled SE there)."""
    return efficientnet_b0(num_classes, attention="ba", **kwargs)


def ba_efficientnet_b1(num_classes: int, **kwargs) -> EfficientNet:
    """BA-EfficientNet-B1: Bridge Attention (r = 6, swish) in every expanded block, the official
    per-position gate in the first (``unpooled_first_gate=False``: a pooled SE there)."""
    return efficientnet_b1(num_classes, attention="ba", **kwargs)


def ba_efficientnet_b2(num_classes: int, **kwargs) -> EfficientNet:
    """BA-EfficientNet-B2: Bridge Attention (r = 6, swish) in every expanded block, the official
    per-position gate in the first (``unpooled_first_gate=False``: a pooled SE there)."""
    return efficientnet_b2(num_classes, attention="ba", **kwargs)


def ba_efficientnet_b3(num_classes: int, **kwargs) -> EfficientNet:
    """BA-EfficientNet-B3: Bridge Attention (r = 6, swish) in every expanded block, the official
    per-position gate in the first (``unpooled_first_gate=False``: a pooled SE there)."""
    return efficientnet_b3(num_classes, attention="ba", **kwargs)


__all__ = [
    "BLOCKS", "EfficientNet", "MBConvBlock", "PointwiseGate", "VARIANTS", "round_filters", "round_repeats",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "ba_efficientnet_b0", "ba_efficientnet_b1", "ba_efficientnet_b2", "ba_efficientnet_b3",
]
