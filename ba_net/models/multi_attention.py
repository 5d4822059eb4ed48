"""The notes' multi-attention classifier, as a head on AlexNet's convolutional features.

The notes put it on an Xception base; here the base is the notebook's AlexNet up to conv5, and
the head reads conv5's ReLU output (128 x 7 x 7 at 128 px, before the last max pool, so the
spatial attention has a map to work on)::

    F  = relu(conv5(...))                                    [B, 128, 7, 7]
    A  = CBAM(F)                channel gate, then spatial gate
    z  = GWAP(A) + AWA(A)       global weighted average + attention-weighted average, [B, 128]
    logits = Linear(Dropout(ReLU(Linear_512(BN(z)))))

The trunk's layers have AlexNet's names (stem, conv3, conv4, conv5), so AlexNet checkpoints'
feature weights load into it. The head's BatchNorm1D normalizes over the batch: train with
more than one image per batch.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ba_net.attention import CBAM, AttentionWeightedAverage, GlobalWeightedAvgPool
from ba_net.models.alexnet import AlexNet, conv5_size


class MultiAttentionAlexNet(AlexNet):
    """AlexNet's features with the notes' multi-attention head in place of its classifier.

    Args:
        num_classes: size of the last layer.
        reduction: CBAM's channel reduction (16).
        hidden: width of the head's dense layer (512).
        dropout: dropout before the last layer (0.5).
        input_size: image side the model is built for (128); the weighted-average pooling's
            per-position weights need conv5's spatial size.
    """

    def __init__(
        self,
        num_classes: int,
        reduction: int = 16,
        hidden: int = 512,
        dropout: float = 0.5,
        input_size: int = 128,
    ):
        super().__init__(num_classes=num_classes)
        self.input_size = int(input_size)
        size = conv5_size(input_size)
        self.cbam = CBAM(128, reduction)
        self.weighted_pool = GlobalWeightedAvgPool(128, size=(size, size))
        self.attention_pool = AttentionWeightedAverage(128)
        # replaces AlexNet's classifier (and its parameters)
        self.classifier = nn.Sequential(
            nn.BatchNorm1D(128),
            nn.Linear(128, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        x = F.relu(self.conv5(F.relu(self.conv4(F.relu(self.conv3(x))))))
        a = self.cbam(x)
        return self.classifier(self.weighted_pool(a) + self.attention_pool(a))

    def extra_flops(self, inputs, output) -> int:
        """The sum of the two pooled branches (128 adds per image); functional ReLUs count zero."""
        return int(inputs[0].shape[0]) * 128


__all__ = ["MultiAttentionAlexNet"]
