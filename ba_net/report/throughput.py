"""Throughput timing, shared by tools/compare.py (:mod:`ba_net.report.compare`) and tools/benchmark.py.

* :func:`median_rate`: images/s of a unit of work, untimed warm-up calls first, the median of the
  timed repeats;
* :func:`forward_rate`: eval-mode forward passes on one synthetic batch;
* :func:`eval_pass_rate`: the notebook's throughput cell, eval passes over a test split through
  the data loader (decoding, resizing and normalizing included).

Whatever ``model`` is -- a dygraph layer or a Paddle Inference runner -- each pass ends with a copy
of the logits to the host, which waits for the device.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ba_net.errors import ConfigError


def median_rate(fn: Callable[[], int], warmup: int, repeats: int) -> dict:
    """``fn()`` does one unit of work and returns how many images it processed; the first
    ``warmup`` calls are untimed. Returns img_s (the median of the ``repeats`` timed calls' rates),
    repeats_img_s and seconds (every timed call)."""
    for _ in range(warmup):
        fn()
    rates, seconds = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        seconds.append(time.perf_counter() - t0)
        rates.append(n / seconds[-1])
    return {"img_s": statistics.median(rates), "repeats_img_s": rates, "seconds": seconds}


def synthetic_batch(batch_size: int, image_size: int = 128, seed: int = 0):
    """A [batch_size, 3, image_size, image_size] float32 tensor of standard normal values."""
    import paddle

    rng = np.random.default_rng(seed)
    return paddle.to_tensor(rng.standard_normal((batch_size, 3, image_size, image_size), dtype=np.float32))


def forward_rate(model, batch_size: int, image_size: int = 128, *, warmup: int = 1, repeats: int = 3,
                 steps: int = 1) -> dict:
    """Images/s of ``model`` in eval mode on one synthetic batch: ``warmup`` untimed repeats, then
    the median of ``repeats`` timed ones of ``steps`` forward passes each (see :func:`median_rate`)."""
    import paddle

    model.eval()
    x = synthetic_batch(batch_size, image_size)

    def run():
        with paddle.no_grad():
            for _ in range(steps):
                model(x).numpy()
        return steps * batch_size

    return median_rate(run, warmup, repeats)


def eval_pass_rate(model, images, labels, batch_size: int, *, warmup_passes: int = 0, repeats: int = 1,
                   max_batches: Optional[int] = None, num_workers: int = 0, transform=None) -> dict:
    """Images/s of eval passes over (images, labels) through the data loader with ``transform``
    (a preset's eval transform; default the notebook's, 128 px): one untimed warm-up batch,
    ``warmup_passes`` untimed passes, then the median of ``repeats`` timed passes of at most
    ``max_batches`` batches. Adds images (per pass) and workers to :func:`median_rate`'s result."""
    import paddle

    from ba_net import data as D

    transform = transform or D.eval_transform
    from ba_net.data.loading import build_loader

    loader = build_loader(images, labels, transform, batch_size, train=False, num_workers=num_workers)
    model.eval()
    counts = []

    def one_pass():
        count = 0
        with paddle.no_grad():
            for step, (x, _) in enumerate(loader):
                if max_batches is not None and step >= max_batches:
                    break
                model(x).numpy()
                count += int(x.shape[0])
        counts.append(count)
        return count

    with paddle.no_grad():  # the warm-up batch
        model(paddle.to_tensor(np.stack([transform(im) for im in images[:batch_size]]))).numpy()
    try:
        result = median_rate(one_pass, warmup_passes, repeats)
    finally:
        loader.close()
    result.update(images=counts[-1], workers=num_workers)
    return result


@dataclass(frozen=True)
class ThroughputSettings:
    """How tools/compare.py measures speed. Forward: eval mode, random input of ``batch_size``
    images at each model's input size (``model.input_size``), ``warmup`` untimed passes, the median
    of ``repeats`` timed passes. Notebook way: one warm-up batch, then a timed eval pass over the
    test split through the data loader with the runs' preset (``max_batches`` caps it;
    ``num_workers`` None = the runs' data.num_workers)."""

    batch_size: int = 128
    warmup: int = 3
    repeats: int = 5
    notebook_way: bool = True
    max_batches: Optional[int] = None
    num_workers: Optional[int] = None

    @classmethod
    def parse(cls, text: Optional[str]) -> "ThroughputSettings":
        """Defaults changed by ``key=value,...`` with integer values (e.g. ``warmup=1,repeats=2``);
        tools/compare.py takes it as --throughput-settings."""
        known = {"batch_size": 1, "warmup": 0, "repeats": 1, "max_batches": 1, "num_workers": 0}
        values = {}
        for item in filter(None, (text or "").replace(" ", "").split(",")):
            key, _, raw = item.partition("=")
            if key == "image_size":
                raise ConfigError("throughput setting 'image_size' cannot be chosen: each model is measured at "
                                  "its input size (model.input_size: 128 px for AlexNet, 32 px for the CIFAR "
                                  f"ResNets); valid settings: {', '.join(known)}")
            if key not in known:
                raise ConfigError(f"throughput setting {key!r} unknown; valid: {', '.join(known)}")
            try:
                values[key] = int(raw)
            except ValueError:
                raise ConfigError(f"throughput setting {item!r}: expected an integer") from None
            if values[key] < known[key]:
                raise ConfigError(f"throughput setting {item!r}: must be >= {known[key]}")
        return cls(**values)


__all__ = ["ThroughputSettings", "eval_pass_rate", "forward_rate", "median_rate", "synthetic_batch"]
