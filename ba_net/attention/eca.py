"""Efficient Channel Attention (ECA), from "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks", Wang et al., CVPR 2020.

Channel weights from a 1-D convolution over the channel axis of the pooled feature, no bottleneck::

    w = gate(conv1d_k(GAP(x)))    one input and one output channel, no bias, zero padding (k-1)/2
    y = x * w

with k chosen from C: t = int(|(log2(C) + b) / gamma|), k = t if t is odd else t + 1
(gamma = 2, b = 1: C = 64 -> 3, C = 128 -> 5, C = 2048 -> 7). Works for any spatial rank.
"""
from __future__ import annotations

import math
from typing import Optional

import paddle
import paddle.nn as nn

from ba_net.attention.helpers import expand_like, global_avg_pool, make_gate, spatial_size


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA's adaptive kernel size: the odd number at or just above |(log2(C) + b) / gamma|."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 == 1 else t + 1


class EfficientChannelAttention(nn.Layer):
    """ECA block: returns ``x`` re-weighted per channel.

    Args:
        channels: channels C of the input (sets the kernel size).
        reduction: unused (ECA has no bottleneck); accepted so all modules share one signature.
        gate: sigmoid (default) or hard_sigmoid.
        kernel_size: fixed odd kernel size instead of the adaptive one.
        gamma, b: the adaptive kernel size's constants.
    """

    def __init__(
        self,
        channels: int,
        reduction: Optional[int] = None,
        gate: str = "sigmoid",
        kernel_size: Optional[int] = None,
        gamma: float = 2,
        b: float = 1,
    ):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        k = eca_kernel_size(channels, gamma, b) if kernel_size is None else int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA kernel size must be odd and positive, got {k}")
        self.channels = channels
        self.kernel_size = k
        self.conv = nn.Conv1D(1, 1, k, padding=(k - 1) // 2, bias_attr=False)
        self.gate = make_gate(gate)

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        """The channel weights w, shaped to broadcast against ``x``."""
        pooled = global_avg_pool(x).unsqueeze(1)  # [B, 1, C]: channels become the conv's length
        w = self.gate(self.conv(pooled)).squeeze(1)
        return expand_like(w, x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.weights(x)

    def extra_flops(self, inputs, output) -> int:
        """The global average pool (as Paddle counts adaptive pooling) and the weighting multiply."""
        x = inputs[0]
        n = spatial_size(x)
        return int(x.shape[0]) * self.channels * ((n + 1) + n)


__all__ = ["EfficientChannelAttention", "eca_kernel_size"]
