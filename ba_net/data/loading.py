"""Seeded loading: images -- in memory, or image files decoded when indexed
(:class:`ba_net.data.imagefolder.ImageFiles`, so in the workers) -- served in batches by a Paddle
DataLoader, reproducible whatever the number of workers or processes. :class:`SeededBatchSampler`
draws each epoch's order from ``(seed, epoch)`` and shards it over data-parallel ranks;
:class:`SeededImages` gives each image's transform (a preset's, :mod:`ba_net.data`) a generator
seeded by ``(seed, epoch, index)``;
:func:`build_loader` puts them together (shared memory only where /dev/shm has room, one OpenCV
thread per worker; a DataError while loading, e.g. an unreadable image, reaches the caller as
its one line, from a worker too); :func:`mixup` mixes a batch."""
from __future__ import annotations

import logging
import queue
import shutil
import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import paddle

from ba_net.errors import DataError

logger = logging.getLogger(__name__)


class LoadFailure(str):
    """What :class:`SeededImages` gives in place of an image that raised a DataError: its message."""


class SeededImages(paddle.io.Dataset):
    """Images (an array, or ImageFiles) whose transform gets a generator seeded by the key
    ``(index, seed, epoch)``. :meth:`load` raises what reading or transforming the image raises;
    indexing, which Paddle's DataLoader does, gives a :class:`LoadFailure` for a DataError
    instead, which :func:`collate` turns into a failure batch: an exception in a DataLoader's
    reader thread hangs Paddle's single-process reader for ever, and a worker's leaves a worker
    that cannot be shut down, so it must not reach them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def load(self, key):
        """(CHW float32 image, label) of ``key`` = ``(index, seed, epoch)``."""
        index, seed, epoch = key
        rng = np.random.default_rng([seed, epoch, index])
        return self.transform(self.images[index], rng).astype(np.float32), self.labels[index]

    def __getitem__(self, key):
        try:
            return self.load(key)
        except DataError as exc:
            return LoadFailure(str(exc))


def collate(items: list) -> list:
    """Paddle's default_collate_fn, unless an item is a :class:`LoadFailure`: then the batch is
    its message alone, as one uint8 array (what workers can pass on), for :func:`raise_failure`."""
    from paddle.io.dataloader.collate import default_collate_fn

    failed = next((item for item in items if isinstance(item, LoadFailure)), None)
    if failed is not None:
        return [np.frombuffer(str(failed).encode("utf-8"), dtype=np.uint8).copy()]
    return default_collate_fn(items)


def raise_failure(batch) -> None:
    """Raise the one-line DataError of a failure batch (:func:`collate`); nothing for a batch."""
    if len(batch) == 1:
        message = batch[0].numpy() if hasattr(batch[0], "numpy") else np.asarray(batch[0])
        raise DataError(message.astype(np.uint8).tobytes().decode("utf-8", "replace"))


class SeededBatchSampler(paddle.io.BatchSampler):
    """Batches of ``(index, seed, epoch)`` keys for :class:`SeededImages` (the key seeds the
    image's augmentation). The order of an epoch depends only on ``(seed, epoch)``: a permutation
    when ``shuffle``, else 0..n-1. With ``drop_last`` the order is first cut to a whole number of
    ``batch_size x world`` images. Under data parallel every rank draws the same order and takes
    every ``world``-th image from position ``rank`` on, so ranks never share an image, and every
    rank gets the same number of full batches when ``drop_last`` (evaluation, without it, covers
    every image once across the ranks). ``max_steps`` caps the batches per epoch."""

    def __init__(self, n, batch_size, seed=0, shuffle=True, drop_last=True, rank=0, world=1, max_steps=None):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.shuffle, self.drop_last, self.rank, self.world = shuffle, drop_last, rank, world
        self.max_steps = max_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.drop_last:
            order = order[: (self.n // (self.batch_size * self.world)) * self.batch_size * self.world]
        return order[self.rank::self.world]

    def __iter__(self):
        idx = self._indices()
        for step, start in enumerate(range(0, len(idx), self.batch_size)):
            if self.max_steps is not None and step >= self.max_steps:
                return
            yield [(int(i), self.seed, self.epoch) for i in idx[start:start + self.batch_size]]

    def __len__(self):
        n = len(self._indices())
        steps = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return steps if self.max_steps is None else min(steps, self.max_steps)


SHM = Path("/dev/shm")


def shared_memory_fits(num_workers: int, batch_bytes: int, shm: Path = SHM) -> bool:
    """Whether the batches in flight (2 per worker, twice for safety) fit in free ``/dev/shm``
    (Docker's default is 64 MB, where a loader with shared memory dies)."""
    try:
        free = shutil.disk_usage(shm).free
    except OSError:
        return False
    return free >= 4 * num_workers * batch_bytes


class SeededLoader(paddle.io.DataLoader):
    """Paddle's DataLoader (its ``collate_fn`` :func:`collate`) whose failure batches raise their
    DataError in the caller's thread (:func:`raise_failure`). Without workers the batches come
    from :func:`_prefetched`, not Paddle's single-process reader, which waits for ever on a batch
    its thread failed to make (any exception in a transform)."""

    def __iter__(self):
        if self.num_workers == 0:
            return _prefetched(self.dataset, self.batch_sampler)
        return self._checked(super().__iter__())

    def close(self) -> None:
        """End the worker processes. They persist across epochs, and Paddle's reader thread keeps
        them alive until the process exits: a loader that is done with (a run's end, a failure)
        is closed, or every run of an experiment, or every failed cell of a notebook, would leave
        its workers behind. The loader can be iterated again afterwards (new workers)."""
        iterator, self._iterator = getattr(self, "_iterator", None), None
        shutdown = getattr(iterator, "_try_shutdown_all", None)  # Paddle 3.0-3.3
        if shutdown is not None:
            shutdown()

    def _checked(self, batches):
        """The workers' batches, each checked (:func:`raise_failure`); on an exception (a failure
        batch, an interrupt) the workers are ended with it."""
        try:
            for batch in batches:
                raise_failure(batch)
                yield batch
        except (Exception, KeyboardInterrupt):
            self.close()
            raise


PREFETCH = 2  # batches made ahead, as Paddle's single-process reader


def _prefetched(dataset, batch_sampler, depth: int = PREFETCH):
    """The batches of ``batch_sampler`` over ``dataset`` without workers: fetched and collated
    (:func:`collate`) in a thread, ``depth`` ahead -- as Paddle's own reader does, so loading
    overlaps the step -- and made tensors here (on the current device, as Paddle's); whatever the
    thread raises, and a failure batch's DataError, is raised here."""
    made = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                made.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for keys in batch_sampler:
                if not put(("batch", collate([dataset[k] for k in keys]))):
                    return
            put(("end", None))
        except BaseException as exc:  # raised in the consumer's thread
            put(("error", exc))

    thread = threading.Thread(target=produce, name="ba_net-loader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = made.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            raise_failure(value)
            yield [paddle.to_tensor(v) for v in value]
    finally:
        stop.set()
        thread.join()


def build_loader(images, labels, transform, batch_size, seed=0, train=True, num_workers=0,
                 rank=0, world=1, max_steps=None, image_size=128) -> paddle.io.DataLoader:
    """A DataLoader over ``images`` (an array [N, H, W, 3] uint8, or ImageFiles); train: shuffled,
    drop_last; eval: in order, all images.
    Workers use shared memory when /dev/shm has room for it (else one warning line, and pipes),
    and one OpenCV thread each: they run in parallel already, and a pool per worker would
    oversubscribe the cores. That is set here, before the workers fork, not in each worker:
    resizing OpenCV's pool in a child forked while the parent's pool was alive deadlocks."""
    sampler = SeededBatchSampler(len(images), batch_size, seed, shuffle=train, drop_last=train,
                                 rank=rank, world=world, max_steps=max_steps)
    if num_workers > 0:
        cv2.setNumThreads(1)  # inherited by the forked workers; the main process only collates batches
    shared = num_workers > 0 and shared_memory_fits(num_workers, batch_size * 3 * image_size * image_size * 4)
    if num_workers > 0 and not shared:
        logger.warning("/dev/shm has too little free space for %d loader workers' batches: passing them without "
                       "shared memory (slower; enlarge it, e.g. docker run --shm-size=2g)", num_workers)
    return SeededLoader(
        SeededImages(images, labels, transform), batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
        persistent_workers=num_workers > 0, use_shared_memory=shared,
    )


def mixup(x: paddle.Tensor, y: paddle.Tensor, alpha: float, rng: np.random.Generator, num_classes: int):
    """Batch mixup: x' = lam x + (1 - lam) x[perm], soft targets mixed alike; also returns the
    dominant label of each mixed image (for train accuracy)."""
    lam = float(rng.beta(alpha, alpha))
    perm = paddle.to_tensor(rng.permutation(int(x.shape[0])))
    onehot = paddle.nn.functional.one_hot(y.reshape([-1]), num_classes)
    x = lam * x + (1.0 - lam) * paddle.gather(x, perm)
    soft = lam * onehot + (1.0 - lam) * paddle.gather(onehot, perm)
    dominant = y.reshape([-1]) if lam >= 0.5 else paddle.gather(y.reshape([-1]), perm)
    return x, soft, dominant


__all__ = ["LoadFailure", "SeededBatchSampler", "SeededImages", "SeededLoader", "build_loader", "collate", "mixup",
           "raise_failure", "shared_memory_fits"]
