"""Bridge Attention (BA), from "BA-Net: Bridge Attention for Deep Convolutional Neural
Networks", Zhao et al., ECCV 2022.

BA is a squeeze-excitation style channel attention whose squeeze looks at *several* layers: the
globally pooled outputs of earlier convolutions (the "bridges") are each projected to the same
hidden width and summed with the projection of the current feature, so the channel weights of
the current feature are decided by what the block computed before it.

For features F_1..F_n (bridges, any channel counts) and the current feature X (C channels),
hidden width h = C // r::

    S_i = BN_i(W_i · GAP(F_i))          W_i: C_i -> h, no bias   (one branch per feature, X included)
    w   = gate(W_g · act(S_1 + ... + S_n + S_X))   W_g: h -> C, no bias
    y   = X * w

Defaults follow the paper's ResNet form (r = 16, ReLU, sigmoid); its MobileNetV3 form uses r = 6
with ``gate='hard_sigmoid'`` and its EfficientNet form r = 6 with ``act='swish'``.
The BN over pooled vectors needs more than one sample per batch in training mode.

Cost. What BA costs on a CPU is not its small ops (a Linear and a BatchNorm1D per branch on
[B, C] vectors) but the passes over whole feature maps: the pools (and their gradients, and the
gradient they add to every bridged feature), the product ``x * w``, and, in Paddle Inference, the
residual add that oneDNN can no longer fuse into the convolution before it. With the pools as a
mean over one flattened axis (:func:`ba_net.attention.helpers.global_avg_pool`) a dygraph
BA-ResNet-20 training step (batch 128, 32 px) costs 3-5 % more than ResNet-20's (28-32 % with the
mean over [2, 3]). A "lean" form was measured and not kept: the pooled vectors concatenated, one
batch norm over all branches with concatenated weights and running statistics written back to
each branch (slower in a dygraph step: the concatenations, slices and write-backs outnumber the
ops they replace), and in eval mode the BNs folded into one stacked matmul (no faster in dygraph
or Paddle Inference); the fast path and the exported model were within the noise either way.
"""
from __future__ import annotations

from typing import Sequence

import paddle
import paddle.nn as nn

from ba_net.attention.helpers import expand_like, global_avg_pool, hidden_width, make_activation, make_gate, spatial_size


class BridgeAttention(nn.Layer):
    """Channel weights for a feature from itself and any number of earlier ("bridged") features.

    Args:
        channels: channels C of the current feature (the one that gets weighted).
        reduction: hidden width is ``channels // reduction`` (at least 1).
        act: activation after the fusion sum: relu (default), swish, silu, hardswish, gelu.
        gate: sigmoid (default) or hard_sigmoid.
        bridge_channels: channel counts of the bridged features, in the order they are passed.

    ``forward(x, bridges)`` returns the re-weighted feature ``x * w`` (the contract of every
    module in :func:`ba_net.attention.create_attention`); ``weights(x, bridges)`` returns ``w``
    alone, shaped to broadcast against ``x`` ([B, C, 1, 1] for images, [B, C, 1] for sequences),
    for plots and histograms. Works for inputs of any spatial rank.
    """

    bridged = True  # forward takes the earlier features as a second argument

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        act: str = "relu",
        gate: str = "sigmoid",
        bridge_channels: Sequence[int] = (),
    ):
        super().__init__()
        self.channels = channels
        self.hidden = hidden_width(channels, reduction)
        self.bridge_channels = tuple(int(c) for c in bridge_channels)
        self.squeeze = nn.LayerList(
            [nn.Linear(c, self.hidden, bias_attr=False) for c in self.bridge_channels + (channels,)]
        )
        self.norms = nn.LayerList([nn.BatchNorm1D(self.hidden) for _ in self.squeeze])
        self.act = make_activation(act)
        self.excite = nn.Linear(self.hidden, channels, bias_attr=False)
        self.gate = make_gate(gate)

    def forward(self, x: paddle.Tensor, bridges: Sequence[paddle.Tensor] = ()) -> paddle.Tensor:
        return x * self.weights(x, bridges)

    def weights(self, x: paddle.Tensor, bridges: Sequence[paddle.Tensor] = ()) -> paddle.Tensor:
        """The channel weights in (0, 1) for ``x``, shaped to broadcast against it."""
        features = list(bridges) + [x]
        if len(features) != len(self.squeeze):
            raise ValueError(
                f"BridgeAttention built for {len(self.squeeze) - 1} bridged features, got {len(features) - 1}"
            )
        fused = None
        for feature, squeeze, norm in zip(features, self.squeeze, self.norms):
            s = norm(squeeze(global_avg_pool(feature)))
            fused = s if fused is None else fused + s
        weights = self.gate(self.excite(self.act(fused)))
        return expand_like(weights, x)

    def extra_flops(self, inputs, output) -> int:
        """Work done by functional ops that a per-layer FLOP counter cannot see: the global
        average pools (one add per input element plus one divide per channel, as Paddle counts
        AdaptiveAvgPool), the sums of the branch outputs and the product ``x * w`` (one multiply
        per element of ``x``)."""
        x = inputs[0]
        bridges = list(inputs[1]) if len(inputs) > 1 else []
        pools = sum(int(f.shape[1]) * (spatial_size(f) + 1) for f in bridges + [x])
        return int(x.shape[0]) * (pools + len(bridges) * self.hidden + int(x.shape[1]) * spatial_size(x))
