"""Attention-based global pooling of the project's notes: [B, C, *spatial] -> [B, C].

Attention-weighted average, as in DeepMoji ("Using millions of emoji occurrences to learn
any-domain representations...", Felbo et al., EMNLP 2017): a score per position from a learned
vector, softmax over positions (max subtracted), weighted sum::

    s_p = sum_c w_c x_cp  (no bias),   a = exp(s - max s) / sum exp(s - max s),   y_c = sum_p a_p x_cp

Global weighted average pooling: a learned weight per *position*, shared by all channels::

    a = softmax(v)  (v: one logit per position),   y_c = sum_p a_p x_cp

Choice made here: per-position rather than per-channel weights, because a per-channel weight on
a global average is only a rescaling of plain average pooling, while per-position weights let
the network prefer parts of the map (the centre of an image, say). The weights go through a
softmax so they stay positive and sum to 1. The catch: the spatial size is fixed at
construction (``size``). Both modules start as plain global average pooling (zero parameters).
"""
from __future__ import annotations

from typing import Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ba_net.attention.helpers import spatial_size


def _flatten_positions(x: paddle.Tensor) -> paddle.Tensor:
    return x.reshape([x.shape[0], x.shape[1], -1])


class AttentionWeightedAverage(nn.Layer):
    """DeepMoji attention pooling; returns [B, C].

    Args:
        channels: channels C of the input (the length of the score vector w).
        reduction: unused; accepted so all modules share one signature.
    """

    pooling = True  # reduces [B, C, *spatial] to [B, C]

    def __init__(self, channels: int, reduction: Optional[int] = None):
        super().__init__()
        self.channels = channels
        self.weight = self.create_parameter([channels], default_initializer=nn.initializer.Constant(0.0))

    def weights(self, x: paddle.Tensor) -> paddle.Tensor:
        """The attention over positions a, [B, N] (N = number of positions)."""
        scores = (_flatten_positions(x) * self.weight.reshape([1, -1, 1])).sum(axis=1)
        scores = scores - scores.max(axis=-1, keepdim=True)
        e = paddle.exp(scores)
        return e / e.sum(axis=-1, keepdim=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return (_flatten_positions(x) * self.weights(x).unsqueeze(1)).sum(axis=-1)

    def extra_flops(self, inputs, output) -> int:
        """The scores (C multiply-adds per position) and the weighted sum (the same again);
        the softmax counts zero, as Paddle counts its Softmax layer."""
        x = inputs[0]
        return int(x.shape[0]) * 2 * self.channels * spatial_size(x)


class GlobalWeightedAvgPool(nn.Layer):
    """Learned per-position average; returns [B, C].

    Args:
        channels: channels C of the input (only for the FLOP count).
        reduction: unused; accepted so all modules share one signature.
        size: the spatial shape of the input, e.g. (7, 7) — required.
    """

    pooling = True

    def __init__(self, channels: int, reduction: Optional[int] = None, *, size: Sequence[int]):
        super().__init__()
        self.channels = channels
        self.size = tuple(int(s) for s in size)
        self.logits = self.create_parameter(list(self.size), default_initializer=nn.initializer.Constant(0.0))

    def weights(self) -> paddle.Tensor:
        """The position weights a, flattened to [N]."""
        return F.softmax(self.logits.flatten())

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if tuple(x.shape[2:]) != self.size:
            raise ValueError(f"GlobalWeightedAvgPool built for spatial size {self.size}, got {list(x.shape)}")
        return paddle.matmul(_flatten_positions(x), self.weights())

    def extra_flops(self, inputs, output) -> int:
        """The weighted sum (C multiply-adds per position); the softmax counts zero."""
        x = inputs[0]
        return int(x.shape[0]) * self.channels * spatial_size(x)


__all__ = ["AttentionWeightedAverage", "GlobalWeightedAvgPool"]
