"""MobileNetV3-Large / -Small and their BA forms, from "BA-Net: Bridge Attention for Deep
Convolutional Neural Networks" (Zhao et al., ECCV 2022; official code github.com/zhaoy376/
Bridge-Attention, ``models/mobilenetv3.py`` for the baselines and ``models/BA_mobilenetv3.py``).
Input 224 px (``model.input_size``); smaller sides run too (64 px: a 2 x 2 map before the pool).

Layout (Howard et al. 2019 as the official code builds it, width multiplier 1)::

    features.0: conv 3x3/2 (16) - BN - hardswish
    features.1..: inverted residual blocks, one per config row (k, t, c, SE, HS, s);
                  expansion width ``make_divisible(in * t, 8)``
    conv: 1x1 (the last expansion width) - BN - hardswish;  global average pool
    classifier: Linear (1280 Large / 1024 Small) - hardswish - Dropout(0.2) - Linear

An inverted residual block, ``act`` = hardswish (HS) or ReLU, ``att`` the block's attention::

    expanded (t != 1):   e = conv0(x) = act(BN(pw conv(x)))        d = conv1(e) = BN(dw conv(e))
    not expanded:        d = conv1(x) = BN(dw conv(x))
    then                 out = conv2(act(att(d))) = BN(pw-linear conv(.)), + x if the shape allows

Plain (``mobilenetv3_large`` / ``_small``): ``att`` is the block's SE layer where the row says
SE (hidden ``make_divisible(C // 4, 8)``, both linear layers with bias, ReLU, hard sigmoid). In an
expanded block it weights BN(dw) before the activation, as the official baseline; in a block
without expansion the official baseline applies SE *after* the activation (d = act(BN(dw)),
out = conv2(SE(d))) and so do we (only Small's first block has SE and no expansion).

BA (``ba_mobilenetv3_large`` / ``_small``): in every expanded block with SE, Bridge Attention
replaces SE: ``att(d) = BA(d, [e])`` -- the squeeze sees GAP(e) (the expansion's output, after
its activation) and GAP(d) (BN(dw), before the activation), and the weights multiply d before the
activation. Hidden width C // 6 (``BA_module_mobilenetv3(reduction=6)``: plain floor division,
no make_divisible), ReLU, hard sigmoid. A block without expansion has no bridge and keeps the
plain SE layer, applied as in the official BA code: on BN(dw) before the activation.

Initialisation as the official code: Conv2D Kaiming-normal (fan_out), BatchNorm2D 1 / 0, every
Linear (classifier, SE and BA layers) N(0, 0.01) with zero bias; BA's BN1D 1 / 0.

Converting official weights (Linear weights [out, in]: transpose; BN running statistics
``running_mean`` / ``running_var`` -> ``_mean`` / ``_variance``). Stem, head and classifier keep
their names (features.0.0/.1, conv.0/.1, classifier.0/.3). Blocks, official BA code: the names
are ours (features.i.conv0.0/.1, conv1.0/.1, conv2.0/.1) with ``att`` -> ``attention``::

    features.i.att.pre_fusions.0.0.weight -> features.i.attention.squeeze.0.weight (transposed)
    features.i.att.pre_fusions.0.1.*      -> features.i.attention.norms.0.*
    features.i.att.cur_fusion.0.weight    -> features.i.attention.squeeze.1.weight (transposed)
    features.i.att.cur_fusion.1.*         -> features.i.attention.norms.1.*
    features.i.att.generation.1.weight    -> features.i.attention.excite.weight (transposed)
    features.i.att.fc.0.* / fc.2.*        -> features.i.attention.squeeze.* / excite.* (SE)

Official baseline (one Sequential ``features.i.conv``): expanded blocks conv.0/.1 -> conv0.0/.1,
conv.3/.4 -> conv1.0/.1, conv.5.fc.0/.2 -> attention.squeeze/.excite, conv.7/.8 -> conv2.0/.1;
blocks without expansion conv.0/.1 -> conv1.0/.1, conv.3.fc.0/.2 -> attention.squeeze/.excite,
conv.4/.5 -> conv2.0/.1.

Trainable parameters at 1,000 classes (the official code's): Large 5,483,032, BA-Large
5,478,832; Small 2,542,856, BA-Small 2,536,040.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import paddle
import paddle.nn as nn

from ba_net.attention import create_attention

# k, t, c, SE, HS, s (kernel, expansion, output channels, squeeze-excitation, hardswish, stride)
LARGE = (
    (3, 1, 16, 0, 0, 1), (3, 4, 24, 0, 0, 2), (3, 3, 24, 0, 0, 1),
    (5, 3, 40, 1, 0, 2), (5, 3, 40, 1, 0, 1), (5, 3, 40, 1, 0, 1),
    (3, 6, 80, 0, 1, 2), (3, 2.5, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1), (3, 2.3, 80, 0, 1, 1),
    (3, 6, 112, 1, 1, 1), (3, 6, 112, 1, 1, 1),
    (5, 6, 160, 1, 1, 2), (5, 6, 160, 1, 1, 1), (5, 6, 160, 1, 1, 1),
)
SMALL = (
    (3, 1, 16, 1, 0, 2),
    (3, 4.5, 24, 0, 0, 2), (3, 3.67, 24, 0, 0, 1),
    (5, 4, 40, 1, 1, 2), (5, 6, 40, 1, 1, 1), (5, 6, 40, 1, 1, 1),
    (5, 3, 48, 1, 1, 1), (5, 3, 48, 1, 1, 1),
    (5, 6, 96, 1, 1, 2), (5, 6, 96, 1, 1, 1), (5, 6, 96, 1, 1, 1),
)


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """The TensorFlow MobileNet rounding: ``v`` to the nearest multiple of ``divisor`` (at least
    ``min_value``, default ``divisor``), one ``divisor`` more if that lost over 10 %."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def squeeze_excitation(channels: int, hidden: int, act: str = "relu", gate: str = "sigmoid") -> nn.Layer:
    """A :class:`ba_net.attention.SqueezeExcitation` with exactly ``hidden`` units (MobileNetV3's
    make_divisible widths, e.g. 120 channels -> 32, are no integer reduction)."""
    return create_attention("se", channels, hidden=hidden, act=act, gate=gate)


def _conv_bn(inp: int, oup: int, kernel: int, stride: int = 1, groups: int = 1, act: Optional[nn.Layer] = None):
    layers = [nn.Conv2D(inp, oup, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias_attr=False),
              nn.BatchNorm2D(oup)]
    return nn.Sequential(*layers, *([act] if act is not None else []))


def _activation(hardswish: bool) -> nn.Layer:
    return nn.Hardswish() if hardswish else nn.ReLU()


class InvertedResidual(nn.Layer):
    """Expansion (1x1, unless ``hidden == inp``) - depthwise k x k (the stride) - attention -
    activation - 1x1 projection, with the identity shortcut when stride is 1 and inp == oup.

    Args:
        inp, hidden, oup: input, expansion and output channels.
        kernel, stride: of the depthwise convolution.
        use_se: the config row's SE flag (the attention slot is used).
        hardswish: hardswish activations (else ReLU).
        bridge: Bridge Attention instead of SE in an expanded block.
    """

    def __init__(self, inp: int, hidden: int, oup: int, kernel: int, stride: int, use_se: bool,
                 hardswish: bool, bridge: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.identity = stride == 1 and inp == oup
        self.expand = inp != hidden
        self.use_bridge = bridge and use_se and self.expand
        # the plain baseline's SE in a block without expansion comes after the activation
        self.attention_after_act = use_se and not self.expand and not bridge
        if self.expand:
            self.conv0 = _conv_bn(inp, hidden, 1, act=_activation(hardswish))
        self.conv1 = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        if self.use_bridge:
            self.attention = create_attention("ba", hidden, reduction=6, act="relu", gate="hard_sigmoid",
                                              bridge_channels=(hidden,))
        elif use_se:
            self.attention = squeeze_excitation(hidden, make_divisible(hidden // 4, 8), gate="hard_sigmoid")
        else:
            self.attention = None
        self.act = _activation(hardswish)
        self.conv2 = _conv_bn(hidden, oup, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.expand:
            e = self.conv0(x)
            out = self.conv1(e)
        else:
            out = self.conv1(x)
        if self.use_bridge:
            out = self.act(self.attention(out, [e]))
        elif self.attention is None:
            out = self.act(out)
        elif self.attention_after_act:
            out = self.attention(self.act(out))
        else:
            out = self.act(self.attention(out))
        out = self.conv2(out)
        return x + out if self.identity else out

    def extra_flops(self, inputs, output) -> int:
        """The residual add, one per output element, when there is a shortcut."""
        return math.prod(int(d) for d in output.shape) if self.identity else 0


class MobileNetV3(nn.Layer):
    """MobileNetV3 from a config of (k, t, c, SE, HS, s) rows.

    Args:
        cfgs: the block rows (:data:`LARGE`, :data:`SMALL`).
        mode: "large" (1280-unit classifier) or "small" (1024).
        num_classes: size of the last layer.
        attention: None (the SE baseline) or "ba" (Bridge Attention in the expanded SE blocks).
        dropout: before the last layer (0.2).
    """

    input_size = 224

    def __init__(self, cfgs: Sequence[Sequence[float]], mode: str, num_classes: int,
                 attention: Optional[str] = None, dropout: float = 0.2):
        super().__init__()
        if mode not in ("large", "small"):
            raise ValueError(f"mode must be 'large' or 'small', got {mode!r}")
        if attention not in (None, "ba"):
            raise ValueError(f"MobileNetV3 takes attention None (SE) or 'ba', got {attention!r}")
        self.attention_name = attention
        inp = make_divisible(16, 8)
        layers = [_conv_bn(3, inp, 3, 2, act=nn.Hardswish())]
        for k, t, c, use_se, use_hs, s in cfgs:
            oup = make_divisible(c, 8)
            hidden = make_divisible(inp * t, 8)
            layers.append(InvertedResidual(inp, hidden, oup, k, s, bool(use_se), bool(use_hs), attention == "ba"))
            inp = oup
        self.features = nn.Sequential(*layers)
        self.conv = _conv_bn(inp, hidden, 1, act=nn.Hardswish())
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        width = {"large": 1280, "small": 1024}[mode]
        self.classifier = nn.Sequential(nn.Linear(hidden, width), nn.Hardswish(), nn.Dropout(dropout),
                                        nn.Linear(width, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        if not paddle.in_dynamic_mode():  # traced into a static program: weights come from the dygraph model
            return
        for m in self.sublayers():
            if isinstance(m, nn.Conv2D):
                fan_out = int(m.weight.shape[0]) * math.prod(int(d) for d in m.weight.shape[2:])
                nn.initializer.Normal(0.0, math.sqrt(2.0 / fan_out))(m.weight)
            elif isinstance(m, nn.BatchNorm2D):
                nn.initializer.Constant(1.0)(m.weight)
                nn.initializer.Constant(0.0)(m.bias)
            elif isinstance(m, nn.Linear):
                nn.initializer.Normal(0.0, 0.01)(m.weight)
                if m.bias is not None:
                    nn.initializer.Constant(0.0)(m.bias)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.avgpool(self.conv(self.features(x)))
        return self.classifier(paddle.flatten(x, 1))


def mobilenetv3_large(num_classes: int, **kwargs) -> MobileNetV3:
    """MobileNetV3-Large with its SE layers."""
    return MobileNetV3(LARGE, "large", num_classes, **kwargs)


def mobilenetv3_small(num_classes: int, **kwargs) -> MobileNetV3:
    """MobileNetV3-Small with its SE layers."""
    return MobileNetV3(SMALL, "small", num_classes, **kwargs)


def ba_mobilenetv3_large(num_classes: int, **kwargs) -> MobileNetV3:
    """BA-MobileNetV3-Large: Bridge Attention (r = 6, hard sigmoid) in the expanded SE blocks."""
    return mobilenetv3_large(num_classes, attention="ba", **kwargs)


def ba_mobilenetv3_small(num_classes: int, **kwargs) -> MobileNetV3:
    """BA-MobileNetV3-Small: Bridge Attention (r = 6, hard sigmoid) in the expanded SE blocks."""
    return mobilenetv3_small(num_classes, attention="ba", **kwargs)


__all__ = [
    "InvertedResidual", "LARGE", "MobileNetV3", "SMALL", "make_divisible", "squeeze_excitation",
    "ba_mobilenetv3_large", "ba_mobilenetv3_small", "mobilenetv3_large", "mobilenetv3_small",
]
