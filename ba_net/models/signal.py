"""The notes' networks for 1-D signals and for series x modality inputs.

``EcaCNN1D`` (registered as ``eca_cnn1d``), input [B, 1, 2048] (one channel, 2048 samples)::

    5 x (Conv1D - BN - ReLU - MaxPool(2)):  16 filters k64 s16 (padding 24), then 32, 64, 64, 64 (k3, padding 1)
    after the 2nd stage: x = x + ECA(x)
    Flatten - Linear(100) - ReLU - Linear(classes)

Lengths for 2048 samples: 128 -> 64 -> 32 -> 16 -> 8 -> 4, so the flattened size is 64 * 4.

``SpatialAttentionNet`` (``sam_net``), input [B, 1, length, modalities]: one channel, time along
axis 2, the sensor axes / modalities along axis 3 (e.g. [B, 1, 128, 3] for a 3-axis
accelerometer)::

    per stage: Conv2D(k x 1, stride (2, 1)) - SpatialAttention((3, 1)) - BN - ReLU
    AdaptiveAvgPool2D(1) - Flatten - Linear(classes)

The convolutions look along time only (k x 1 kernels), so modalities are kept apart until the
global pool; the spatial attention weighs every (time, modality) position.
"""
from __future__ import annotations

from typing import Sequence

import paddle
import paddle.nn as nn

from ba_net.attention import EfficientChannelAttention, SpatialAttention


_FIRST_KERNEL, _FIRST_STRIDE, _FIRST_PADDING = 64, 16, 24  # 2048 samples -> 128 steps


def _first_conv_length(length: int) -> int:
    return (length + 2 * _FIRST_PADDING - _FIRST_KERNEL) // _FIRST_STRIDE + 1


def _conv_stage(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1D(cin, cout, kernel, stride=stride, padding=padding),
        nn.BatchNorm1D(cout),
        nn.ReLU(),
        nn.MaxPool1D(2, 2),
    )


class EcaCNN1D(nn.Layer):
    """The notes' 1-D CNN with one residual ECA block; see the module docstring.

    Args:
        num_classes: size of the last layer.
        input_length: samples per signal (2048); must leave at least one step after the pools.
        in_channels: channels of the signal (1).
    """

    def __init__(self, num_classes: int, input_length: int = 2048, in_channels: int = 1):
        super().__init__()
        self.input_shape = (in_channels, input_length)  # one signal: [channels, samples]
        self.stage1 = _conv_stage(in_channels, 16, _FIRST_KERNEL, _FIRST_STRIDE, _FIRST_PADDING)
        self.stage2 = _conv_stage(16, 32, 3)
        self.eca = EfficientChannelAttention(32)
        self.stages = nn.Sequential(_conv_stage(32, 64, 3), _conv_stage(64, 64, 3), _conv_stage(64, 64, 3))
        length = _first_conv_length(input_length) // 2**5  # five max pools of 2
        if length < 1:
            raise ValueError(f"input_length {input_length} is too short for five pooling stages")
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * length, 100), nn.ReLU(), nn.Linear(100, num_classes)
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stage2(self.stage1(x))
        x = x + self.eca(x)
        return self.head(self.stages(x))

    def extra_flops(self, inputs, output) -> int:
        """The residual add around the ECA block (one per element of stage 2's output)."""
        length = _first_conv_length(int(inputs[0].shape[-1])) // 4  # after two max pools
        return int(inputs[0].shape[0]) * 32 * length


class SpatialAttentionNet(nn.Layer):
    """The notes' spatial-attention network for [B, 1, length, modalities] inputs.

    Args:
        num_classes: size of the last layer.
        channels: filters of each stage (16, 32, 64).
        kernel: temporal kernel size of the convolutions (5).
        attention_kernel: the spatial attention's kernel ((3, 1), along time).
        in_channels: input channels (1).
    """

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64),
        kernel: int = 5,
        attention_kernel=(3, 1),
        in_channels: int = 1,
    ):
        super().__init__()
        self.input_shape = (in_channels, "length", "modalities")  # one input: any length and modality count
        layers = []
        cin = in_channels
        for cout in channels:
            layers += [
                nn.Conv2D(cin, cout, (kernel, 1), stride=(2, 1), padding=((kernel - 1) // 2, 0)),
                SpatialAttention(cout, kernel_size=attention_kernel),
                nn.BatchNorm2D(cout),
                nn.ReLU(),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.ndim != 4:
            raise ValueError(f"sam_net expects [B, 1, length, modalities], got {list(x.shape)}")
        return self.head(self.pool(self.features(x)))


__all__ = ["EcaCNN1D", "SpatialAttentionNet"]
