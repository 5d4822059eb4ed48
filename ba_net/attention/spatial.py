"""Simple spatial attention (SAM) of the project's notes: one weight per position from the mean
over channels, in the spirit of the spatial gate of CBAM (Woo et al., ECCV 2018)::

    a = gate(conv_k(mean_c(x)) + b)     one input and one output channel, "same" padding
    y = x * a

For series x modality inputs [B, C, length, modalities] the notes use a (3, 1) kernel, which
looks along time only and weighs each modality's samples separately; for images a 7 x 7 kernel is
the default. ``dims=1`` (or a one-element kernel tuple) builds it for [B, C, L] signals.
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn

from ba_net.attention.helpers import check_rank, make_gate, same_conv, spatial_size


class SpatialAttention(nn.Layer):
    """SAM: returns ``x`` re-weighted per position (the same weight for every channel).

    Args:
        channels: channels C of the input (the weights do not depend on it; kept for the
            uniform signature and the FLOP count).
        reduction: unused; accepted so all modules share one signature.
        gate: sigmoid (default) or hard_sigmoid.
        kernel_size: odd int or one odd size per spatial axis, e.g. (3, 1).
        dims: number of spatial axes when ``kernel_size`` is an int.
    """

    def __init__(
        self,
        channels: int,
        reduction: Optional[int] = None,
        gate: str = "sigmoid",
        kernel_size=7,
        dims: int = 2,
    ):
        super().__init__()
        self.channels = channels
        self.conv = same_conv(1, 1, kernel_size, dims, bias=True)
        self.dims = len(self.conv.weight.shape) - 2
        self.gate = make_gate(gate)

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        """The position weights a, [B, 1, *spatial]."""
        check_rank(x, self.dims, "SpatialAttention")
        return self.gate(self.conv(x.mean(axis=1, keepdim=True)))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.weights(x)

    def extra_flops(self, inputs, output) -> int:
        """The mean over channels (adds + one divide per position, as Paddle counts adaptive
        pooling) and the weighting multiply (one per element)."""
        x = inputs[0]
        c, n = int(x.shape[1]), spatial_size(x)
        return int(x.shape[0]) * (n * (c + 1) + c * n)


__all__ = ["SpatialAttention"]
