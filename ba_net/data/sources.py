"""Where the data is and what is read of it: the tarball (downloaded through
:mod:`ba_net.data.download` when it is nowhere local), its splits in memory, the hold-out of a
validation set.

One path for the data: ``data.dataset`` names a :class:`ba_net.data.datasets.Dataset` (CIFAR-10 or
CIFAR-100), :func:`locate` finds its python tarball (:func:`locate_cifar10` for CIFAR-10),
:func:`read_split` reads one split into memory (no extraction, a restricted unpickler) -- or, for
``imagefolder``, :func:`ba_net.data.imagefolder.read_image_folder` lists the files of
``data.data_dir`` (decoded when indexed) --
:func:`hold_out` sets aside ``data.val_split`` training images, and :mod:`ba_net.data.loading` serves
them in seeded batches. What is done to each image is a *preset* (``data.transforms``), and
:func:`preset` is the one place that says what a preset means: its train transform, its eval
transform, the image size they produce and the normalization (:data:`PRESETS`: ``notebook`` and
``plain`` at 128 px with ImageNet statistics, for AlexNet; ``cifar`` at 32 px with CIFAR-10's
own, for the CIFAR ResNets, on CIFAR-100 too). A transform takes the image and a generator; it
never draws from global state."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from dataclasses import replace
from typing import Optional

import numpy as np

from ba_net.data.datasets import DATASETS, Dataset, dataset, needs_tarball, read_class_names, read_split
from ba_net.data.download import download_file
from ba_net.data.imagefolder import read_image_folder
from ba_net.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CIFAR10_URL = DATASETS["cifar10"].url  # read at each call: point them elsewhere (tests) and locate_cifar10 follows
CIFAR10_MD5 = DATASETS["cifar10"].md5


def paddle_cache_path() -> Path:
    """Where Paddle's own downloader keeps CIFAR-10 (and where :func:`locate_cifar10` downloads it)."""
    from paddle.dataset.common import DATA_HOME

    return Path(DATA_HOME) / "cifar" / "cifar-10-python.tar.gz"


def cache_path(ds: Dataset) -> Path:
    """Where Paddle keeps the tarball of ``ds``: beside CIFAR-10's, in the same folder."""
    return paddle_cache_path().with_name(ds.tarball)


def _how_to_supply(ds: Dataset, cached: Path) -> str:
    return (f"-o data.data_file=PATH, export {ds.env}=PATH, or place {ds.tarball} at {cached} "
            f"(fetch it elsewhere from {ds.url})")


def locate(ds: Dataset, data_file: Optional[str] = None, download: bool = True, url: Optional[str] = None) -> Path:
    """The tarball of ``ds``: ``data_file``, else $``ds.env`` (BA_NET_CIFAR10, BA_NET_CIFAR100),
    else Paddle's cache (:func:`cache_path`), else downloaded into that cache from ``url``
    (default ``ds.url``, Paddle's mirror) by :func:`download_file`, checked against ``ds.md5``.
    The file is not read here: :func:`read_split` refuses a truncated or corrupt one."""
    needs_tarball(ds)
    for value, origin in ((data_file, "data.data_file"), (os.environ.get(ds.env), ds.env)):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise DataError(f"{origin} points to {path}, which is not a file; fix the path or unset it")
            return path
    cached = cache_path(ds)
    if cached.is_file():
        return cached
    if not download:
        raise DataError(f"{ds.title} not found (download disabled); fix one of: {_how_to_supply(ds, cached)}")
    url = url or ds.url
    logger.info("%s not found locally; downloading %s into %s", ds.title, url, cached.parent)
    try:
        return download_file(url, cached, ds.md5)
    except DataError as exc:
        raise DataError(f"{ds.title} not found locally, and {exc}; or supply the file: "
                        f"{_how_to_supply(ds, cached)}") from None


def _cifar10() -> Dataset:
    """CIFAR-10 with the module's :data:`CIFAR10_URL` and :data:`CIFAR10_MD5` as they are now."""
    return replace(DATASETS["cifar10"], url=CIFAR10_URL, md5=CIFAR10_MD5)


def locate_cifar10(data_file: Optional[str] = None, download: bool = True, url: Optional[str] = None) -> Path:
    """:func:`locate` for CIFAR-10."""
    return locate(_cifar10(), data_file, download, url)


def read_cifar10(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 RGB and labels [N] int64 of ``split`` ('train' or 'test')."""
    return read_split(_cifar10(), path, split)


def hold_out(labels: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) of a class-stratified hold-out of ``n`` of ``labels``: each class
    gives its share of ``n`` (largest remainders decide the rounding, ties to the lower class), the
    images drawn at random from a generator seeded by ``seed`` alone, so every model and seed of an
    experiment sees the same split. Both index arrays are sorted."""
    labels = np.asarray(labels)
    if not 0 < n < len(labels):
        raise ConfigError(f"data.val_split: {n} is not between 1 and the {len(labels) - 1} training images that "
                          f"leave one to train on; use a smaller hold-out")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / len(labels)
    share = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - share[i]), i))
    share[order[:n - share.sum()]] += 1
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, share)])
    return np.setdiff1d(np.arange(len(labels)), held), np.sort(held)


def _read(data: dict, wanted=("train", "test")):
    """(data set title, where it was read, {split: (images, labels)} of ``wanted`` and 'classes')
    of a config's data section."""
    ds = dataset(data.get("dataset") or "cifar10")
    if ds.name == "imagefolder":
        folder = read_image_folder(data.get("data_dir"))
        return f"image folder ({folder['layout']})", folder["root"], folder
    path = locate(ds, data.get("data_file"), url=data.get("download_url"))
    return ds.title, path, {**{s: read_split(ds, path, s) for s in wanted},
                            "classes": read_class_names(ds, path)}


def load_splits(data: dict) -> dict:
    """The config's data (its ``data`` section): {'train', 'test'} (images, labels), 'val' when
    ``val_split`` holds training images out (:func:`hold_out`), and 'classes' (the class names of
    ``data.dataset``, in label order). The images of a tarball are read into memory ([N, H, W, 3]
    uint8); those of ``imagefolder`` (``data.data_dir``, :mod:`ba_net.data.imagefolder`: its val
    is the test split) are :class:`~ba_net.data.imagefolder.ImageFiles`, decoded when indexed."""
    title, path, read = _read(data)
    splits = {s: read[s] for s in ("train", "test")}
    if data.get("val_split"):
        images, labels = splits["train"]
        kept, held = hold_out(labels, data["val_split"])
        splits.update(train=(images[kept], labels[kept]), val=(images[held], labels[held]))
    sizes = " / ".join(f"{len(v[0])} {k}" for k, v in splits.items())
    splits["classes"] = read["classes"]
    logger.info("%s from %s: %s images, %d classes%s", title, path, sizes, len(splits["classes"]),
                " (val held out of train: it picks the best epoch)" if "val" in splits else
                " (no data.val_split: the best epoch is picked on test, as the notebook and the paper do)")
    return splits


def test_split(data: dict) -> tuple:
    """(images, labels) of the test split of a config's ``data`` section, whatever the data set:
    a tarball's test members (in memory) or an image folder's val (ImageFiles). For the tools that
    evaluate a finished run (its saved config's data section)."""
    return _read(data, ("test",))[2]["test"]
