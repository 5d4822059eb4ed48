"""The data sets ``data.dataset`` can name, and reading their python tarballs safely.

A :class:`Dataset` is a small description -- tarball name, mirror URL and md5, the members of each
split, the label key, where the class names come from, the environment variable that points at
a copy -- so CIFAR-10 and CIFAR-100 share one reader (:func:`read_split`, in memory, never
extracted, through a restricted unpickler) and one locator (:func:`ba_net.data.locate`).
CIFAR-10's class names are fixed (:data:`CIFAR10_CLASSES`); CIFAR-100's 100 fine class names are
read from its ``meta`` member (:func:`read_class_names`). A run records the names it trained
with in its history.json, so compare, export and predict show them without the tarball."""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ba_net.errors import ConfigError, DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Dataset:
    """One data set: ``splits`` maps 'train' / 'test' to the base names of its members, each a
    pickled dict with ``b'data'`` [N, 3072] uint8 and ``label_key`` [N]; the class names are
    ``classes`` or, when ``names_member`` is set, that member's ``names_key`` list. The image
    folder (``imagefolder``, :mod:`ba_net.data.imagefolder`) has no tarball: ``num_classes`` is
    None (the folder says it when it is read) and ``tarball`` is empty."""

    name: str
    title: str
    tarball: str
    url: str
    md5: str
    env: str
    splits: dict
    label_key: bytes
    num_classes: Optional[int]
    classes: Optional[tuple] = None
    names_member: Optional[str] = None
    names_key: Optional[bytes] = None


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("cifar10", "CIFAR-10", "cifar-10-python.tar.gz",
            "https://dataset.bj.bcebos.com/cifar/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a", "BA_NET_CIFAR10",
            {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}, b"labels", 10,
            classes=CIFAR10_CLASSES),
    Dataset("cifar100", "CIFAR-100", "cifar-100-python.tar.gz",
            "https://dataset.bj.bcebos.com/cifar/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
            "BA_NET_CIFAR100", {"train": ("train",), "test": ("test",)}, b"fine_labels", 100,
            names_member="meta", names_key=b"fine_label_names"),
    Dataset("imagefolder", "image folder", "", "", "", "", {}, b"", None),  # data.data_dir: ba_net.data.imagefolder
)}


def dataset(name: str) -> Dataset:
    """The data set called ``name`` (``data.dataset``); a one-line ConfigError naming the choices."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"data.dataset: unknown data set {name!r}; choose from {', '.join(DATASETS)}") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of bytes, lists and numpy arrays) and nothing else, so a
    hostile file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name}")


def needs_tarball(ds: Dataset) -> None:
    """A one-line DataError for a tarball reader asked for a data set without one (the image folder)."""
    if not ds.tarball:
        raise DataError(f"data.dataset: {ds.name} has no tarball: it is read from data.data_dir "
                        f"(ba_net.data.load_splits, or ba_net.data.test_split for a run's test split)")


def _again(ds: Dataset) -> str:
    return f"download {ds.title} again or point data.data_file at a good copy"


def _read_members(ds: Dataset, path: Path, wanted) -> dict:
    """{base name: bytes} of the ``wanted`` members, read in memory (every member's path is checked)."""
    found = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.name.startswith(("/", "\\")) or ".." in member.name.replace("\\", "/").split("/"):
                    raise DataError(f"{path} has a member with an unsafe path {member.name!r} (absolute or with "
                                    f"'..'): not the {ds.title} tarball; download it again or point "
                                    f"data.data_file at a good copy")
                base = member.name.rsplit("/", 1)[-1]
                if base in wanted and member.isfile():
                    found[base] = tar.extractfile(member).read()  # read in memory, never extracted
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable {ds.title} tarball ({exc.__class__.__name__}: truncated or not "
                        f"a tar.gz); delete it and download again, or point data.data_file at a good copy") from None
    missing = [m for m in wanted if m not in found]
    if missing:
        raise DataError(f"{path} lacks the {ds.title} members {', '.join(missing)}: it is not the python version of "
                        f"{ds.title}; point data.data_file at {ds.tarball} ({ds.url})")
    return found


def _unpickle(ds: Dataset, path: Path, name: str, raw: bytes, kind: str = "batch") -> dict:
    try:
        loaded = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        if not isinstance(loaded, dict):
            raise TypeError("not a dict")
    except Exception as exc:
        raise DataError(f"{path}: member {name} is not a {ds.title} {kind} ({exc.__class__.__name__}); "
                        f"{_again(ds)}") from None
    return loaded


def read_split(ds: Dataset, path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 32, 32, 3] uint8 RGB and labels [N] int64 of ``split`` ('train' or 'test') of
    the ``ds`` tarball at ``path`` (CIFAR-100: the fine labels)."""
    needs_tarball(ds)
    wanted = ds.splits[split]
    found = _read_members(ds, path, wanted)
    images, labels = [], []
    for name in wanted:
        batch = _unpickle(ds, path, name, found[name])
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            lab = np.asarray(batch[ds.label_key], dtype=np.int64)
        except Exception as exc:
            raise DataError(f"{path}: member {name} is not a {ds.title} batch ({exc.__class__.__name__}); "
                            f"{_again(ds)}") from None
        if data.ndim != 2 or data.shape[1] != 3072 or lab.ndim != 1 or len(lab) != len(data) or \
                (len(lab) and (lab.min() < 0 or lab.max() >= ds.num_classes)):
            raise DataError(f"{path}: member {name} has unexpected shape or labels, not {ds.title}; {_again(ds)}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_class_names(ds: Dataset, path: Optional[Path] = None) -> tuple:
    """The ``ds.num_classes`` class names, in label order: fixed ones, or read from the tarball's
    ``names_member`` (CIFAR-100's ``meta``: ``fine_label_names``)."""
    if ds.names_member is None:
        return tuple(ds.classes)
    raw = _read_members(ds, path, (ds.names_member,))[ds.names_member]
    names = _unpickle(ds, path, ds.names_member, raw, "meta member").get(ds.names_key)
    if not isinstance(names, list) or len(names) != ds.num_classes or \
            not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: member {ds.names_member} has no list of {ds.num_classes} "
                        f"{ds.names_key.decode()}; {_again(ds)}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def run_classes(history: dict, config: dict) -> tuple:
    """The class names a run trained with: its history.json's ``classes`` (recorded since
    CIFAR-100), else those of its config's ``data.dataset`` when they are fixed (CIFAR-10: runs
    from before the record). A one-line DataError when neither says."""
    recorded = history.get("classes")
    if isinstance(recorded, list) and recorded:
        return tuple(str(c) for c in recorded)
    ds = dataset((config.get("data") or {}).get("dataset") or "cifar10")
    if ds.classes is None:
        raise DataError(f"the run's history.json records no class names and {ds.title}'s come from its "
                        f"{'folders' if not ds.tarball else 'tarball'}; rerun the run with this version")
    return tuple(ds.classes)


__all__ = ["CIFAR10_CLASSES", "DATASETS", "Dataset", "dataset", "read_class_names", "read_split", "run_classes"]
