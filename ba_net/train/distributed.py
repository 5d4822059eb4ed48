"""What changes when N processes train one run (``paddle.distributed.launch``): rank, world size
and sum-reduction (:class:`Distributed`), the global batch split over the processes
(:func:`per_process_batch`), and BatchNorm's statistics: synchronized across processes during
training where Paddle can (:func:`sync_batch_norm`, GPU only), and averaged over ranks before
each evaluation either way (:meth:`Distributed.average_buffers`). One process is the case N = 1:
every call here is then a no-op."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import paddle
import paddle.distributed as dist

from ba_net.errors import ConfigError

logger = logging.getLogger(__name__)


class Distributed:
    """Rank, world size and sum-reduction; a no-op on one process."""

    def __init__(self):
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list) -> list:
        t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
        if self.world > 1:
            dist.all_reduce(t)
        return [float(v) for v in t.numpy()]

    def average_buffers(self, model) -> None:
        """Make the BatchNorm running statistics (each rank's own, from its shard) the mean over
        ranks on every rank, so that each rank evaluates, and rank 0 saves, the same weights."""
        if self.world == 1:
            return
        frozen = [p for p in model.parameters() if p.stop_gradient]  # Paddle keeps BN statistics as such
        with paddle.no_grad():
            for buf in list(model.buffers()) + frozen:
                if buf.dtype in (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16):
                    dist.all_reduce(buf)
                    buf.set_value(buf / self.world)


def per_process_batch(cfg: dict, world: int) -> int:
    """train.batch_size is the recipe's global batch whatever the number of processes: each of
    ``world`` processes takes an equal share (the union of the shards of a step is the serial
    batch of that step, see loading.SeededBatchSampler)."""
    batch = cfg["train"]["batch_size"]
    if batch % world:
        raise ConfigError(f"train.batch_size: the global batch {batch} does not split evenly over {world} processes; "
                          f"use a multiple of {world} (e.g. {batch // world * world or world}) or another process count")
    return batch // world


def sync_bn_wanted(setting: Optional[bool], world: int, device: str) -> bool:
    """Whether BatchNorm is synchronized across the ``world`` processes (train.sync_bn: null = on
    when several GPU processes train). Paddle's SyncBatchNorm has no CPU kernel: on CPU, null keeps
    per-process statistics with one warning line, true is refused with one line."""
    if world == 1 or setting is False:
        return False
    if device.startswith("gpu"):
        return True
    if setting:
        raise ConfigError(f"train.sync_bn: Paddle's SyncBatchNorm runs only on GPUs, and this {world}-process run "
                          f"is on {device}; set train.sync_bn=false (per-process BatchNorm statistics, averaged "
                          f"over the processes before each evaluation)")
    logger.warning("BatchNorm statistics are per process on %s (SyncBatchNorm is GPU-only): they are averaged over "
                   "the %d processes before each evaluation", device, world)
    return False


def sync_batch_norm(model, wanted: bool):
    """``model`` with its BatchNorm layers replaced by SyncBatchNorm (the same parameters and
    statistics, the same state-dict keys) when ``wanted``; else ``model`` itself."""
    if not wanted:
        return model
    return paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)


__all__ = ["Distributed", "per_process_batch", "sync_batch_norm", "sync_bn_wanted"]
