"""The one training loop and the one evaluation loop: :func:`train_epoch` (one pass over the
training loader: a step per batch, through the fast path's ``step_fn``, AMP's scaler or plain
dygraph; mixup; the loss every ``log_every`` iterations; progress lines with ETA) and
:func:`evaluate` (mean loss, top-1 and top-5 accuracy over a loader). Both reduce over data-parallel ranks
(:class:`ba_net.train.distributed.Distributed`); :mod:`ba_net.train.engine` runs them for each epoch."""
from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import paddle

from ba_net.data import loading
from ba_net.train.distributed import Distributed
from ba_net.runtime import Progress

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 15.0


class Evaluation(tuple):
    """What :func:`evaluate` measured: unpacks as ``(loss, acc)``; ``.loss``, ``.acc`` and
    ``.acc5`` (top-5 accuracy: the label among the five highest logits; 1.0 when there are at
    most five classes) by name."""

    def __new__(cls, loss: float, acc: float, acc5: float):
        self = super().__new__(cls, (loss, acc))
        self.loss, self.acc, self.acc5 = loss, acc, acc5
        return self


TOP_K = 5


def evaluate(model, loader, loss_fn, ctx: Optional[Distributed] = None) -> Evaluation:
    """Mean loss, top-1 and top-5 accuracy of ``model`` over ``loader`` (summed over ranks)."""
    ctx = ctx or Distributed()
    model.eval()
    loss_sum = paddle.zeros([], dtype="float64")
    correct = paddle.zeros([], dtype="int64")
    correct5 = paddle.zeros([], dtype="int64")
    count = 0
    with paddle.no_grad():
        for images, labels in loader:
            logits = model(images)
            n = int(labels.shape[0])
            labels = labels.reshape([-1])
            loss_sum += loss_fn(logits, labels).astype("float64") * n
            correct += (logits.argmax(axis=1) == labels).astype("int64").sum()
            top = paddle.topk(logits, k=min(TOP_K, int(logits.shape[1])), axis=1)[1]
            correct5 += (top == labels.reshape([-1, 1]).astype(top.dtype)).astype("int64").sum()
            count += n
    loss_sum, correct, correct5, count = ctx.sum([float(loss_sum), float(correct), float(correct5), count])
    count = max(count, 1)
    return Evaluation(loss_sum / count, correct / count, correct5 / count)


def _step(model, images, target, loss_fn, optimizer, scaler, step_fn):
    """One optimizer step: ``step_fn`` (the fast path), AMP with ``scaler``, or plain dygraph."""
    if step_fn is not None:
        logits, loss = step_fn(images, target)
    elif scaler is not None:
        with paddle.amp.auto_cast():
            logits = model(images)
            loss = loss_fn(logits, target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        logits = model(images)
        loss = loss_fn(logits, target)
        loss.backward()
        optimizer.step()
    optimizer.clear_grad()
    return logits, loss


def train_epoch(model, loader, loss_fn, optimizer, scheduler, *, epoch, seed, mixup_alpha, log_every,
                iter_offset, iters, ctx, num_classes, scaler=None, label="", step_fn=None,
                ema=None) -> tuple[float, float, int]:
    """One pass over ``loader``; returns (mean loss, accuracy, iterations) and appends
    ``{"iter", "loss", "lr"}`` to ``iters`` every ``log_every`` iterations. Raises
    FloatingPointError at the first non-finite loss it sees. ``step_fn(images, target) ->
    (logits, loss)``, when given, does the forward, backward and update (ba_net.accel.paths); ``ema``
    (a :class:`ba_net.train.ema.WeightEMA`), when given, averages the weights after every step."""
    model.train()
    loss_sum = paddle.zeros([], dtype="float64")
    correct = paddle.zeros([], dtype="int64")
    count = 0
    steps = len(loader)
    progress = Progress(steps, PROGRESS_SECONDS, ctx.main)
    step = 0
    for step, (images, labels) in enumerate(loader, start=1):
        labels = labels.reshape([-1])
        target, truth = labels, labels
        if mixup_alpha > 0:
            rng = np.random.default_rng([seed, epoch, step, ctx.rank])
            images, target, truth = loading.mixup(images, labels, mixup_alpha, rng, num_classes)
        lr = optimizer.get_lr()
        logits, loss = _step(model, images, target, loss_fn, optimizer, scaler, step_fn)
        if ema is not None:
            ema.update()
        scheduler.step()
        n = int(labels.shape[0])
        loss_sum += loss.detach().astype("float64") * n
        correct += (logits.detach().argmax(axis=1) == truth).astype("int64").sum()
        count += n
        global_iter = iter_offset + step
        if global_iter % log_every == 0 or step == steps:
            batch_loss = ctx.sum([float(loss)])[0] / ctx.world
            if not math.isfinite(batch_loss):
                raise FloatingPointError(f"non-finite loss {batch_loss} at epoch {epoch} iteration {global_iter}")
            if global_iter % log_every == 0:
                iters.append({"iter": global_iter, "loss": batch_loss, "lr": lr})
            if progress.due(step):
                logger.info("%s step %d/%d  loss %.4f  lr %.3g  %.1f img/s  eta %s", label, step, steps, batch_loss,
                            lr, progress.rate(count * ctx.world), progress.eta(step))
    loss_sum, correct, count = ctx.sum([float(loss_sum), float(correct), count])
    mean_loss = loss_sum / max(count, 1)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"non-finite mean loss at epoch {epoch}")
    return mean_loss, correct / max(count, 1), step


__all__ = ["Evaluation", "evaluate", "train_epoch"]
