"""Squeeze-and-Excitation (SE), from "Squeeze-and-Excitation Networks", Hu et al., CVPR 2018.

One weight per channel from the globally pooled feature through a bottleneck MLP::

    s = gate(W2 · act(W1 · GAP(x) + b1) + b2)     W1: C -> C // r, W2: C // r -> C (r = 16)
    y = x * s

Both fully connected layers carry a bias, as in the paper's reference code (``bias=False``: none,
as the BA-Net code's SE-ResNet). ``hidden`` gives the width directly where a network rounds it
(MobileNetV3 and EfficientNet make it a multiple of 8 or a fraction of the block's input). Works
for inputs of any spatial rank ([B, C, H, W] images, [B, C, L] signals).
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn

from ba_net.attention.helpers import expand_like, global_avg_pool, hidden_width, make_activation, make_gate, spatial_size


class SqueezeExcitation(nn.Layer):
    """SE block: returns ``x`` re-weighted per channel.

    Args:
        channels: channels C of the input.
        reduction: hidden width is ``channels // reduction`` (at least 1).
        act: hidden activation (relu by default), see :func:`helpers.make_activation`.
        gate: sigmoid (default) or hard_sigmoid.
        hidden: the hidden width itself (then ``reduction`` is not used).
        bias: whether the two linear layers have biases (default True).
    """

    def __init__(self, channels: int, reduction: int = 16, act: str = "relu", gate: str = "sigmoid",
                 hidden: Optional[int] = None, bias: bool = True):
        super().__init__()
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        self.channels = channels
        self.hidden = hidden if hidden is not None else hidden_width(channels, reduction)
        bias_attr = None if bias else False
        self.squeeze = nn.Linear(channels, self.hidden, bias_attr=bias_attr)
        self.act = make_activation(act)
        self.excite = nn.Linear(self.hidden, channels, bias_attr=bias_attr)
        self.gate = make_gate(gate)

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        """The channel weights s, shaped to broadcast against ``x``."""
        s = self.gate(self.excite(self.act(self.squeeze(global_avg_pool(x)))))
        return expand_like(s, x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.weights(x)

    def extra_flops(self, inputs, output) -> int:
        """The global average pool (adds + one divide per channel, as Paddle counts adaptive
        pooling) and the multiply that applies the weights (one per element)."""
        x = inputs[0]
        n = spatial_size(x)
        return int(x.shape[0]) * self.channels * ((n + 1) + n)


__all__ = ["SqueezeExcitation"]
