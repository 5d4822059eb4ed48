"""ImageNet-style data (``data.dataset: imagefolder``): image files under a root ``data.data_dir``,
served through the same loaders as the CIFAR tarballs.

The layout of ROOT, by this rule:

* **label lists** (PaddleClas's format) when ``ROOT/train_list.txt`` exists: it and
  ``ROOT/val_list.txt`` hold one image a line, ``relative/path label`` -- the path relative to
  ROOT, then white space, then the integer label (the last field is the label, so a path may hold
  spaces; blank lines are skipped). Labels run 0..K-1, each with at least one training image, and
  val uses the same labels as train. The name of class k is the folder its training images sit in
  (ImageNet's ``train/n01440764/...`` -> ``n01440764``) when they all sit in one folder of their
  own, else the label itself (``'0'``, ``'1'``, ...). The folders are not scanned.
* **class folders** (torchvision's ``ImageFolder``, the ImageNet layout) otherwise:
  ``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...``. The classes are the sub-folders of
  ``train/`` sorted by name (hidden ones, ``.name``, are skipped), class k the k-th; ``val/`` must
  have the same class folders. A class's images are the files below its folder, sub-folders
  included, whose names end in an image extension (:data:`IMAGE_EXTENSIONS`, any case), sorted by
  path; other files are ignored.

``train`` becomes the training split and ``val`` the test split of :func:`ba_net.data.load_splits`
(ImageNet's val is where the paper reports its accuracy; ``data.val_split`` still holds images
out of train). The splits hold :class:`ImageFiles`, which behave like the image arrays of the
tarballs and decode a file only when it is indexed -- in the loader's workers. Every problem is a
one-line :class:`~ba_net.errors.DataError` naming the path: a missing root, ``val/`` or list, an
empty class folder, train and val class sets that differ, a malformed list line, and, when it is
decoded, an unreadable image."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ba_net.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
TRAIN_LIST, VAL_LIST = "train_list.txt", "val_list.txt"


def decode_image(path: str) -> np.ndarray:
    """The image file at ``path`` as HWC uint8 RGB (OpenCV decodes it, BGR -> RGB; grey and
    16-bit images become 8-bit colour, an alpha channel is dropped). One-line DataError naming
    the file when it cannot be read or decoded."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"cannot read the image {path} ({exc.strerror or type(exc).__name__}); restore the file "
                        f"or remove it from the data") from None
    img = None
    if raw:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # no line of its own: ours says it
        try:
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        finally:
            cv2.utils.logging.setLogLevel(level)
    if img is None:
        raise DataError(f"{path} is not a readable image (empty, truncated or in a format OpenCV cannot decode); "
                        f"replace it or delete it")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class ImageFiles:
    """Image files that stand in for an image array [N, H, W, 3] uint8: ``len()``; ``files[i]``
    (an int) decodes the i-th file (:func:`decode_image`: HWC uint8 RGB, at the file's own size);
    ``files[slice]`` and ``files[index array]`` are the ImageFiles of those files (nothing is
    read). The paths are kept relative to ``root`` in one fixed-width bytes array, so the copies
    forked into the loader's workers share its pages (a list of Python strings would be copied
    into every worker as its reference counts change). ``np.asarray`` refuses one: decoding a
    whole data set at once is never meant."""

    def __init__(self, root, relpaths):
        self.root = str(root)
        self.relpaths = np.asarray(relpaths, dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self.relpaths)

    def path(self, index: int) -> str:
        """The file of image ``index``."""
        return os.path.join(self.root, os.fsdecode(self.relpaths[index]))

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return decode_image(self.path(int(key)))
        return ImageFiles(self.root, self.relpaths[key])

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"ImageFiles of {len(self)} files under {self.root} decode one image when indexed; "
                        f"index them one by one (images of several sizes do not stack)")

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.root})"


def _root(data_dir: Optional[str]) -> Path:
    if not data_dir:
        raise ConfigError("data.dataset: imagefolder reads data.data_dir, which is not set; pass -o data.data_dir=ROOT "
                          "(a folder with train/ and val/ class folders, or train_list.txt and val_list.txt)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data.data_dir: {root} is not a folder (missing, or a file); point it at the folder that "
                        f"holds train/ and val/")
    return root


def _class_folders(folder: Path) -> list:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _files_of_class(root: Path, split: str, name: str) -> list:
    """The image files below ``root/split/name``, relative to root, sorted; DataError when none."""
    folder = root / split / name
    prefix = len(str(root)) + 1
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        base = dirpath[prefix:]
        found.extend(os.fsencode(os.path.join(base, f)) for f in sorted(filenames)
                     if f.lower().endswith(IMAGE_EXTENSIONS))
    if not found:
        raise DataError(f"class folder {folder} holds no image ({', '.join(IMAGE_EXTENSIONS)}); add its images or "
                        f"remove the folder")
    return found


def _differ(first: list, second: list) -> str:
    only1, only2 = sorted(set(first) - set(second)), sorted(set(second) - set(first))
    show = (lambda names: ", ".join(map(str, names[:3])) + (" ..." if len(names) > 3 else ""))
    return "; ".join(part for part in (f"only in train: {show(only1)}" if only1 else "",
                                       f"only in val: {show(only2)}" if only2 else "") if part)


def _read_folders(root: Path) -> dict:
    train, val = root / "train", root / "val"
    if not train.is_dir():
        raise DataError(f"{train} is missing: data.data_dir must hold train/ and val/ class folders (or "
                        f"{TRAIN_LIST} and {VAL_LIST})")
    if not val.is_dir():
        raise DataError(f"{val} is missing: data.data_dir must hold val/ beside train/, with the same class folders")
    classes = _class_folders(train)
    if not classes:
        raise DataError(f"{train} has no class folder: put each class's images in a folder of its own")
    val_classes = _class_folders(val)
    if val_classes != classes:
        raise DataError(f"the class folders of {train} and {val} differ ({_differ(classes, val_classes)}); both "
                        f"need the same classes")
    splits = {}
    for split, key in (("train", "train"), ("val", "test")):
        paths, labels = [], []
        for label, name in enumerate(classes):
            files = _files_of_class(root, split, name)
            paths.extend(files)
            labels.append(np.full(len(files), label, dtype=np.int64))
        splits[key] = (ImageFiles(root, paths), np.concatenate(labels))
    return {**splits, "classes": tuple(classes)}


def _read_list(root: Path, name: str) -> tuple:
    path = root / name
    if not path.is_file():
        raise DataError(f"{path} is missing: with {root / TRAIN_LIST} the image folder needs {VAL_LIST} beside it")
    paths, labels = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read ({type(exc).__name__}); it should be UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(None, 1)
        if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()):
            raise DataError(f"{path}, line {number}: expected 'relative/path label' (a label 0, 1, ...), got "
                            f"{line.strip()[:80]!r}")
        paths.append(os.fsencode(parts[0]))
        labels.append(int(parts[1]))
    if not paths:
        raise DataError(f"{path} lists no image; one line 'relative/path label' per image")
    return paths, np.asarray(labels, dtype=np.int64)


def _list_class_names(paths: list, labels: np.ndarray, k: int) -> tuple:
    """Class k's folder name when all its images share one folder and no other class uses it."""
    folders = [os.path.basename(os.path.dirname(os.fsdecode(p))) for p in paths]
    per_class = [set() for _ in range(k)]
    for folder, label in zip(folders, labels):
        per_class[label].add(folder)
    names = [next(iter(s)) if len(s) == 1 else "" for s in per_class]
    if all(names) and len(set(names)) == k:
        return tuple(names)
    return tuple(str(i) for i in range(k))


def _read_lists(root: Path) -> dict:
    train_paths, train_labels = _read_list(root, TRAIN_LIST)
    val_paths, val_labels = _read_list(root, VAL_LIST)
    k = int(train_labels.max()) + 1
    empty = np.flatnonzero(np.bincount(train_labels, minlength=k) == 0)
    if len(empty):
        raise DataError(f"{root / TRAIN_LIST}: class {int(empty[0])} has no image (labels must run 0..{k - 1}, "
                        f"each with images); renumber the labels")
    train_set, val_set = sorted(set(train_labels.tolist())), sorted(set(val_labels.tolist()))
    if train_set != val_set:
        raise DataError(f"the labels of {root / TRAIN_LIST} and {root / VAL_LIST} differ "
                        f"({_differ(train_set, val_set)}); both need the same classes")
    return {"train": (ImageFiles(root, train_paths), train_labels), "test": (ImageFiles(root, val_paths), val_labels),
            "classes": _list_class_names(train_paths, train_labels, k)}


def read_image_folder(data_dir: Optional[str]) -> dict:
    """The image folder at ``data_dir`` (module notes: label lists when ``train_list.txt`` exists,
    else class folders): {'train', 'test'} (ImageFiles, labels int64) -- test is ``val`` -- and
    'classes' (names in label order), plus 'root' and 'layout' ('lists' or 'folders')."""
    root = _root(data_dir)
    if (root / TRAIN_LIST).is_file():
        return {**_read_lists(root), "root": root, "layout": "lists"}
    return {**_read_folders(root), "root": root, "layout": "folders"}


__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "decode_image", "read_image_folder"]
