"""What the config's ``optimizer`` and ``schedule`` sections build: the optimizer and its
learning-rate scheduler (stepped once per iteration; see :mod:`ba_net.train.schedule`)."""
from __future__ import annotations

import paddle

from ba_net.errors import ConfigError
from ba_net.train.schedule import build_lr_scheduler


def check_schedule(cfg: dict) -> None:
    """Refuse a warmup as long as the training (checked before anything is written)."""
    schedule, epochs = cfg["schedule"], cfg["train"]["epochs"]
    if schedule["name"] == "cosine" and schedule["warmup_epochs"] >= epochs:
        raise ConfigError(f"schedule.warmup_epochs: {schedule['warmup_epochs']} must be smaller than train.epochs "
                          f"({epochs})")


def build_scheduler(cfg: dict, steps_per_epoch: int):
    """schedule.name cosine: per-iteration cosine over the whole training with its warmup;
    constant: optimizer.lr throughout."""
    s = cfg["schedule"]
    if s["name"] == "constant":
        return paddle.optimizer.lr.LambdaDecay(cfg["optimizer"]["lr"], lambda _: 1.0)
    check_schedule(cfg)
    return build_lr_scheduler(cfg["optimizer"]["lr"], steps_per_epoch, cfg["train"]["epochs"], s["warmup_epochs"],
                              s["eta_min"])


def build_optimizer(cfg: dict, params, scheduler):
    """optimizer.name adam (L2 decay), adamw (decoupled decay) or momentum (SGD with momentum, L2
    decay, Nesterov if optimizer.nesterov), on ``scheduler``'s learning rate. ``params`` None
    builds one for a static program."""
    o = cfg["optimizer"]
    if o["name"] == "adam":
        return paddle.optimizer.Adam(scheduler, parameters=params, weight_decay=o["weight_decay"] or None)
    if o["name"] == "adamw":
        return paddle.optimizer.AdamW(scheduler, parameters=params, weight_decay=o["weight_decay"])
    return paddle.optimizer.Momentum(scheduler, momentum=o["momentum"], parameters=params,
                                     use_nesterov=o["nesterov"], weight_decay=o["weight_decay"] or None)


__all__ = ["build_optimizer", "build_scheduler", "check_schedule"]
