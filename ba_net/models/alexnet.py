"""AlexNet for 128 px CIFAR-10 input as in the BA-Net notebook, with an attention slot on conv5.

    features: conv1 11x11/4 (48) - pool - conv2 5x5 (128) - pool - conv3 3x3 (192)
              - conv4 3x3 (192) - conv5 3x3 (128) - pool        -> 128 x 3 x 3
    classifier: 1152 -> 2048 -> 2048 -> classes, ReLU and Dropout(0.5) between

The attention slot sits on conv5's output before its ReLU: ``maxpool(relu(attn(x3)))``, where
Bridge Attention (bridged from conv3 and conv4, r = 16) gives ``attn(x3) = x3 * w``.
``apply_attention=False`` reproduces the notebook's defect: the attention is computed (so it
costs time and its BatchNorm statistics move) but its result is thrown away.
"""
from __future__ import annotations

from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ba_net.attention import create_attention


class AlexNet(nn.Layer):
    """The notebook's AlexNet; ``attention`` names a module from :mod:`ba_net.attention`.

    Args:
        num_classes: size of the last layer.
        attention: None for the baseline, else a name accepted by ``create_attention``.
        apply_attention: False gives the notebook's defective BA-AlexNet (weights discarded).
        dropout: dropout probability in the classifier.
        **attn_kwargs: passed to the attention module (reduction, act, gate, ...).

    ``input_size`` (128): the image side it is built for; its classifier takes conv5's 3 x 3 map.
    """

    input_size = 128

    def __init__(
        self,
        num_classes: int,
        attention: Optional[str] = None,
        apply_attention: bool = True,
        dropout: float = 0.5,
        **attn_kwargs,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2D(3, 48, 11, stride=4, padding=5),
            nn.ReLU(),
            nn.MaxPool2D(3, 2),
            nn.Conv2D(48, 128, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2D(3, 2),
        )
        self.conv3 = nn.Conv2D(128, 192, 3, padding=1)
        self.conv4 = nn.Conv2D(192, 192, 3, padding=1)
        self.conv5 = nn.Conv2D(192, 128, 3, padding=1)
        self.pool = nn.MaxPool2D(3, 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * 3 * 3, 2048),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2048, 2048),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2048, num_classes),
        )
        self.apply_attention = apply_attention
        self.attention = None
        if attention is None and attn_kwargs:
            raise TypeError(f"AlexNet without attention takes no attention arguments, got {sorted(attn_kwargs)}")
        if attention is not None:
            if attention == "ba":
                attn_kwargs.setdefault("bridge_channels", (192, 192))
            self.attention = create_attention(attention, 128, **attn_kwargs)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        x1 = F.relu(self.conv3(x))
        x2 = F.relu(self.conv4(x1))
        x3 = self.conv5(x2)
        if self.attention is not None:
            bridged = getattr(self.attention, "bridged", False)
            weighted = self.attention(x3, [x1, x2]) if bridged else self.attention(x3)
            if self.apply_attention:
                x3 = weighted
        return self.classifier(self.pool(F.relu(x3)))


def conv5_size(size: int) -> int:
    size = (size + 2 * 5 - 11) // 4 + 1  # conv1
    size = (size - 3) // 2 + 1  # pool
    return (size - 3) // 2 + 1  # pool (conv2..conv5 keep the size)


__all__ = ["AlexNet", "conv5_size"]
