"""Convolutional Block Attention Module (CBAM), from "CBAM: Convolutional Block Attention
Module", Woo et al., ECCV 2018. A channel gate, then a spatial gate, both sigmoid::

    Mc = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))       one shared MLP: C -> C // r -> ReLU -> C
    Ms = sigmoid(BN(conv7x7([mean_c(F'); max_c(F')])))     conv without bias, BN as in the official code
    F' = Mc * F,   F'' = Ms * F'

The MLP's linear layers carry biases (as in the official code). :class:`ChannelGate` and
:class:`SpatialGate` are usable on their own. ``dims=1`` builds the spatial gate for [B, C, L].
"""
from __future__ import annotations

import paddle
import paddle.nn as nn

from ba_net.attention.helpers import (
    channel_max, check_rank, expand_like, global_avg_pool, global_max_pool, hidden_width, make_activation, make_gate,
    same_conv, spatial_size,
)

_NORMS = {1: nn.BatchNorm1D, 2: nn.BatchNorm2D, 3: nn.BatchNorm3D}
# The official code's BatchNorm2d(momentum=0.01) updates the running statistics by 1 % of the
# batch's per step; Paddle's momentum is the share kept, so the same update is momentum 0.99.
BN_MOMENTUM = 0.99


class ChannelGate(nn.Layer):
    """CBAM's channel half: average- and max-pooled descriptors through one shared MLP, summed.

    Args: channels, reduction (hidden width ``channels // reduction``, at least 1), act, gate.
    Works for inputs of any spatial rank.
    """

    def __init__(self, channels: int, reduction: int = 16, act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.channels = channels
        self.hidden = hidden_width(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, self.hidden), make_activation(act), nn.Linear(self.hidden, channels)
        )
        self.gate = make_gate(gate)

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        """Mc, shaped to broadcast against ``x``."""
        avg = global_avg_pool(x)
        mx = global_max_pool(x)
        return expand_like(self.gate(self.mlp(avg) + self.mlp(mx)), x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.weights(x)

    def extra_flops(self, inputs, output) -> int:
        """Average pool (as Paddle counts adaptive pooling; the max pool counts zero as Paddle
        counts max pools), the sum of the two MLP outputs and the weighting multiply."""
        x = inputs[0]
        n = spatial_size(x)
        return int(x.shape[0]) * self.channels * ((n + 1) + 1 + n)


class SpatialGate(nn.Layer):
    """CBAM's spatial half: [mean over channels; max over channels] -> conv (no bias) -> BN -> gate.
    The BN is the official code's (eps 1e-5, torch momentum 0.01, i.e. Paddle momentum 0.99).

    Args: channels (only for the FLOP count), reduction (unused), gate, kernel_size (7, or one
    odd size per axis), dims (spatial axes when ``kernel_size`` is an int).
    """

    def __init__(self, channels: int, reduction=None, gate: str = "sigmoid", kernel_size=7, dims: int = 2):
        super().__init__()
        self.channels = channels
        self.conv = same_conv(2, 1, kernel_size, dims, bias=False)
        self.dims = len(self.conv.weight.shape) - 2
        self.norm = _NORMS[self.dims](1, momentum=BN_MOMENTUM, epsilon=1e-5)
        self.gate = make_gate(gate)

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        """Ms, [B, 1, *spatial]."""
        check_rank(x, self.dims, "SpatialGate")
        pooled = paddle.concat([x.mean(axis=1, keepdim=True), channel_max(x)], axis=1)
        return self.gate(self.norm(self.conv(pooled)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.weights(x)

    def extra_flops(self, inputs, output) -> int:
        """Mean over channels (adds + one divide per position; the max counts zero) and the
        weighting multiply."""
        x = inputs[0]
        c, n = int(x.shape[1]), spatial_size(x)
        return int(x.shape[0]) * (n * (c + 1) + c * n)


class CBAM(nn.Layer):
    """Channel gate then spatial gate; returns the re-weighted feature F''.

    Args:
        channels: channels C of the input.
        reduction: the channel MLP's hidden width is ``channels // reduction`` (r = 16).
        act: the MLP's activation (relu).
        gate: sigmoid (default) or hard_sigmoid, for both gates.
        kernel_size: the spatial gate's kernel (7).
        dims: spatial axes of the input (2 for images, 1 for signals).
    """

    def __init__(self, channels: int, reduction: int = 16, act: str = "relu", gate: str = "sigmoid", kernel_size=7,
                 dims: int = 2):
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction, act=act, gate=gate)
        self.spatial_gate = SpatialGate(channels, gate=gate, kernel_size=kernel_size, dims=dims)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.spatial_gate(self.channel_gate(x))


__all__ = ["CBAM", "ChannelGate", "SpatialGate"]
