"""tools/benchmark.py --loader DATA_DIR: images per second of the data pipeline alone -- decode
(OpenCV) and augment (the ``imagenet`` preset's training transform, 224 px: RandomResizedCrop,
flip, normalization) of real image files -- for 0, 1, 2, 4, ... loader workers up to the usable
cores, so a user can size ``data.num_workers`` for a GPU: the images per second the GPU trains,
divided by the per-worker rate, is how many workers keep it fed.

What is measured: :func:`ba_net.data.loading.build_loader` over files of the image folder's train
split (its JPEG files when it has any, as ImageNet; up to ``files`` of them, drawn with a fixed
seed), exactly as training serves them: seeded batches, collation and the passage from the
workers through shared memory included. The first pass over the files is not timed (the workers
start, the files reach the page cache); then whole passes are timed until ``min_images`` images
and ``min_seconds`` seconds are reached. The disk is therefore not measured: a cold ImageNet on a
network disk can be slower than this. Every worker, and the main process at 0 workers, uses one
OpenCV thread, as in training with workers.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from ba_net.data import preset, read_image_folder
from ba_net.data.loading import build_loader
from ba_net.errors import ConfigError
from ba_net.files import atomic_write_json
from ba_net.runtime import usable_cpus

logger = logging.getLogger(__name__)

PRESET = "imagenet"  # 224 px
BATCH = 32
FILES = 1024
MIN_IMAGES = 512
MIN_SECONDS = 2.0
JPEG = (".jpg", ".jpeg")


def worker_counts(cores: int) -> list:
    """0, 1, 2, 4, 8, ... up to ``cores``, and ``cores`` itself."""
    counts, n = [0], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [max(cores, 1)]


def sample_files(data_dir: str, files: int = FILES, seed: int = 0):
    """(ImageFiles, labels, formats): up to ``files`` files of the train split of the image
    folder at ``data_dir`` -- only its JPEG files when it has any -- drawn with ``seed``, in
    folder order; ``formats`` says which ('JPEG' or 'all formats')."""
    images, labels = read_image_folder(data_dir)["train"]
    names = [os.fsdecode(p).lower() for p in images.relpaths]
    jpeg = np.flatnonzero([n.endswith(JPEG) for n in names])
    pool, formats = (jpeg, "JPEG") if len(jpeg) else (np.arange(len(images)), "all formats")
    chosen = np.sort(np.random.default_rng(seed).permutation(pool)[:files])
    return images[chosen], labels[chosen], formats


def measure_loader(images, labels, workers: int, batch_size: int = BATCH, preset_name: str = PRESET,
                   min_images: int = MIN_IMAGES, min_seconds: float = MIN_SECONDS) -> dict:
    """Images per second through a training loader with ``workers`` workers (module notes)."""
    p = preset(preset_name)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    loader = build_loader(images, labels, p.train, batch_size, seed=0, train=True, num_workers=workers,
                          image_size=p.image_size)
    try:
        for _ in loader:  # untimed: workers start, files reach the page cache
            pass
        done, epoch, start = 0, 1, time.perf_counter()
        while done < min_images or time.perf_counter() - start < min_seconds:
            loader.batch_sampler.set_epoch(epoch)
            for batch, _ in loader:
                done += int(batch.shape[0])
            epoch += 1
        seconds = time.perf_counter() - start
    finally:
        loader.close()
        cv2.setNumThreads(threads)
    rate = done / seconds
    return {"workers": workers, "images": done, "seconds": round(seconds, 3), "img_s": round(rate, 1),
            "img_s_per_worker": round(rate / max(workers, 1), 1)}


def loader_benchmark(data_dir: str, workers=None, batch_size: int = BATCH, files: int = FILES,
                     min_images: int = MIN_IMAGES, min_seconds: float = MIN_SECONDS) -> dict:
    """Every row of the loader table: :func:`measure_loader` for each of ``workers`` (default
    :func:`worker_counts` of the usable cores) on :func:`sample_files` of ``data_dir``."""
    cores = usable_cpus()
    images, labels, formats = sample_files(data_dir, files)
    batch_size = min(batch_size, len(images))
    rows = []
    for w in workers if workers is not None else worker_counts(cores):
        rows.append(measure_loader(images, labels, w, batch_size, PRESET, min_images, min_seconds))
        logger.info("loader: %d worker(s): %.1f img/s", w, rows[-1]["img_s"])
    return {"data_dir": str(data_dir), "files": len(images), "formats": formats, "batch_size": batch_size,
            "preset": PRESET, "image_size": preset(PRESET).image_size, "cores": cores, "rows": rows}


def format_loader_table(result: dict) -> str:
    """The printed table: one row per worker count."""
    lines = [f"decode + augment ({result['preset']} preset, train transform, {result['image_size']} px) of "
             f"{result['files']} {result['formats']} files of {result['data_dir']}/train, batch "
             f"{result['batch_size']}, {result['cores']} usable cores",
             "", f"{'workers':>7}  {'img/s':>8}  {'img/s per worker':>16}"]
    lines += [f"{r['workers']:>7}  {r['img_s']:>8.1f}  {r['img_s_per_worker']:>16.1f}" for r in result["rows"]]
    lines += ["", "0 workers: the main process decodes. Files from the page cache (the disk is not measured); "
              "data.num_workers ~ the images/s the GPU trains / the per-worker rate."]
    return "\n".join(lines)


def loader_command(args) -> int:
    """tools/benchmark.py --loader DATA_DIR: the table, and DIR/loader.json (``--out DIR``,
    default output)."""
    batch = args.batch_size if args.batch_size is not None else BATCH
    if batch < 1:
        raise ConfigError("--batch-size must be at least 1")
    quick = getattr(args, "quick", False)
    result = loader_benchmark(args.loader, batch_size=batch, files=64 if quick else FILES,
                              workers=[0, 1] if quick else None, min_images=32 if quick else MIN_IMAGES,
                              min_seconds=0.0 if quick else MIN_SECONDS)
    result["command"] = getattr(args, "command", "")
    out = Path(args.out or "output") / "loader.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print(format_loader_table(result))
    print(f"\nJSON: {out}")
    return 0


__all__ = ["format_loader_table", "loader_benchmark", "loader_command", "measure_loader", "sample_files",
           "worker_counts"]
