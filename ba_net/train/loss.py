"""Label-smoothing cross entropy that takes integer labels or soft targets (for mixup).

With target distribution q (one-hot for an integer label), smoothing eps and C classes::

    loss = (1 - eps) * sum_c q_c * (-log p_c) + eps * mean_c(-log p_c)

For integer labels this is the notebook's ``(1 - eps) * NLL(target) + eps * mean(-log p)``.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class LabelSmoothingCrossEntropy(nn.Layer):
    """Mean over the batch of the label-smoothed cross entropy.

    ``forward(logits [B, C], target)`` with target of shape [B] or [B, 1] (integer class ids) or
    [B, C] (float class probabilities, rows summing to 1).
    """

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing

    def forward(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        logp = F.log_softmax(logits.astype("float32"), axis=-1)
        if target.dtype in (paddle.int32, paddle.int64):
            nll = -paddle.take_along_axis(logp, target.reshape([-1, 1]).astype("int64"), axis=1).squeeze(1)
        else:
            nll = -(target.astype("float32") * logp).sum(axis=-1)
        smooth = -logp.mean(axis=-1)
        return ((1.0 - self.smoothing) * nll + self.smoothing * smooth).mean()
