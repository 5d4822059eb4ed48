"""Cosine learning-rate schedule stepped every iteration, with an optional linear warmup.

Closed form at step t (the scheduler is stepped once per iteration), warmup W, horizon T::

    t <  W:  lr = start + (base - start) * t / W              (Paddle's LinearWarmup)
    t >= W:  lr = eta_min + (base - eta_min) * (1 + cos(pi * (t - W) / (T - W))) / 2

With W = 0 this is Paddle's CosineAnnealingDecay over T_max = T, computed in closed form rather
than by Paddle's recursion, so a resumed run sees exactly the values of an uninterrupted one.
The notebook's horizon is T = (train images // batch size) * epochs.
"""
from __future__ import annotations

import math

from paddle.optimizer.lr import LRScheduler


class WarmupCosineDecay(LRScheduler):
    """Per-iteration cosine decay from ``learning_rate`` to ``eta_min`` over ``total_steps``,
    after ``warmup_steps`` of linear warmup from ``warmup_start_lr``."""

    def __init__(
        self,
        learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        eta_min: float = 0.0,
        warmup_start_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.eta_min = float(eta_min)
        self.warmup_start_lr = float(warmup_start_lr)
        super().__init__(learning_rate, last_epoch)

    def get_lr(self) -> float:
        t, w = self.last_epoch, self.warmup_steps
        if t < w:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * t / w
        progress = min(1.0, (t - w) / (self.total_steps - w))  # past the horizon: holds eta_min
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * progress)) / 2


def build_lr_scheduler(
    learning_rate: float,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0.0,
    eta_min: float = 0.0,
) -> WarmupCosineDecay:
    """The notebook's schedule: horizon ``steps_per_epoch * epochs`` iterations, plus warmup."""
    total = steps_per_epoch * epochs
    return WarmupCosineDecay(learning_rate, total, int(round(warmup_epochs * steps_per_epoch)), eta_min)
