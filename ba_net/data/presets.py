"""The data presets (``data.transforms``): what is done to each image. :func:`preset` is the one
place that says what a preset means: its train transform, its eval transform, the image size they
produce and the normalization (:data:`PRESETS`: ``notebook`` and ``plain`` at 128 px with ImageNet
statistics, for AlexNet; ``cifar`` at 32 px with CIFAR-10's own, for the CIFAR ResNets, on
CIFAR-100 too; ``imagenet`` at 224 px, and ``imagenet240`` / ``260`` / ``300`` for EfficientNet-B1
to B3, for image folders of any image size). A transform takes the image and a generator; it
never draws from global state."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import cv2
import numpy as np
import paddle
import paddle.vision.transforms.functional as TF

from ba_net.data.datasets import dataset
from ba_net.errors import ConfigError

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet statistics, as the notebook
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SIZE = 128  # the notebook's presets (notebook, plain); each preset states its own size
# CIFAR-10's own statistics (the "cifar" preset): per-channel mean and standard deviation of the
# pixel values / 255 over all 50,000 training images (every pixel of every image pooled), to 4
# places. The often-quoted std (0.2023, 0.1994, 0.2010) is a different quantity, the mean of the
# per-image standard deviations. The embedded 2,000-image sample gives mean (0.4921, 0.4822,
# 0.4465) and std (0.2464, 0.2433, 0.2620) (tests/test_data.py checks the constants against it).
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
CIFAR_PAD = 4  # the zero padding of the cifar preset's random crop


# ----------------------------------------------------------------------------------- transforms
# Each transform maps (HWC uint8 RGB image, numpy Generator) -> CHW float32, normalized.

def to_normalized_chw(img: np.ndarray, mean: np.ndarray = MEAN, std: np.ndarray = STD) -> np.ndarray:
    """ToTensor then Normalize, by default with the notebook's ImageNet constants."""
    return ((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)


def eval_transform(img: np.ndarray, rng=None) -> np.ndarray:
    """Test-time: Resize(128 x 128), ToTensor, Normalize."""
    return to_normalized_chw(cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR))


def plain_transform(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resize(128 x 128), RandomHorizontalFlip(0.5), ToTensor, Normalize."""
    img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return to_normalized_chw(img)


def _resized_crop_box(rng, height, width, scale, ratio, attempts=10):
    """RandomResizedCrop's box (top, left, height, width), drawn as Paddle (and torchvision) draw
    it; after ``attempts`` misses, the central crop of the image at the nearest allowed aspect
    ratio (the whole image when its own ratio is allowed, as for every square image)."""
    area = height * width
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(attempts):
        target = rng.uniform(*scale) * area
        aspect = np.exp(rng.uniform(*log_ratio))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    h, w = height, width
    if width / height < min(ratio):
        h = int(round(width / min(ratio)))
    elif width / height > max(ratio):
        w = int(round(height * max(ratio)))
    return (height - h) // 2, (width - w) // 2, h, w


def _saturation_as_paddle_cv2(img: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Paddle's cv2-backend ``adjust_saturation``, which the notebook ran, with its two quirks
    kept: it draws a *second* blend factor uniformly from [max(0, 1 - factor), 1 + factor] (from
    NumPy's global generator; here from ``rng``), and computes gray as if the RGB image were BGR."""
    alpha = rng.uniform(max(0.0, 1.0 - factor), 1.0 + factor)
    as_float = img.astype(np.float32)
    gray = cv2.cvtColor(as_float, cv2.COLOR_BGR2GRAY)[..., np.newaxis]
    return (as_float * alpha + gray * (1.0 - alpha)).clip(0, 255).astype(img.dtype)


def _jitter(img: np.ndarray, which: int, factor: float, rng: np.random.Generator) -> np.ndarray:
    if which == 0:
        return TF.adjust_brightness(img, factor)
    if which == 1:
        return TF.adjust_contrast(img, factor)
    return _saturation_as_paddle_cv2(img, factor, rng)


def notebook_transform(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The notebook's train pipeline with Paddle's own image functions: Resize(130),
    ColorJitter(0.5, 0.5, 0.5) in random order, RandomResizedCrop(128, scale 0.4-1),
    RandomHorizontalFlip, RandomRotation(45, nearest), ToTensor, Normalize."""
    img = cv2.resize(img, (130, 130), interpolation=cv2.INTER_LINEAR)
    for k in rng.permutation(3):
        img = _jitter(img, int(k), float(rng.uniform(0.5, 1.5)), rng)
    top, left, h, w = _resized_crop_box(rng, 130, 130, (0.4, 1.0), (3 / 4, 4 / 3))
    img = cv2.resize(img[top:top + h, left:left + w], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = TF.rotate(np.ascontiguousarray(img), float(rng.uniform(-45.0, 45.0)), interpolation="nearest")
    return to_normalized_chw(img)


def cifar_eval_transform(img: np.ndarray, rng=None) -> np.ndarray:
    """The cifar preset's test-time transform: no resize (32 px), ToTensor, Normalize with
    CIFAR-10's mean and std (:data:`CIFAR_MEAN`, :data:`CIFAR_STD`)."""
    return to_normalized_chw(img, CIFAR_MEAN, CIFAR_STD)


def cifar_transform(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The CIFAR recipe of He et al. 2016 (section 4.2) and of the CIFAR ResNet code since:
    RandomCrop(32, padding=4) -- zero padding (black pixels, before normalization) of 4 on every
    side, then a 32 x 32 crop at an offset drawn uniformly from 0..8 on each axis (top, then left)
    -- RandomHorizontalFlip(0.5), ToTensor, Normalize with CIFAR-10's mean and std. No resize."""
    h, w = img.shape[:2]
    padded = np.pad(img, ((CIFAR_PAD, CIFAR_PAD), (CIFAR_PAD, CIFAR_PAD), (0, 0)))
    top, left = (int(v) for v in rng.integers(0, 2 * CIFAR_PAD + 1, size=2))
    img = padded[top:top + h, left:left + w]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return to_normalized_chw(img, CIFAR_MEAN, CIFAR_STD)


# ImageNet's recipe (torchvision's reference training, the official BA-Net main.py, PaddleClas):
# RandomResizedCrop(size, scale 0.08-1, ratio 3/4-4/3) + flip; eval: resize of the short side to
# size / 0.875 (256 for 224; rounded down as timm does) + centre crop; ImageNet mean and std.
IMAGENET_SCALE = (0.08, 1.0)
IMAGENET_RATIO = (3 / 4, 4 / 3)
EVAL_CROP_FRACTION = 0.875


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize with INTER_AREA when shrinking (close to the antialiased bilinear of PIL that
    torchvision's recipe uses; INTER_LINEAR alone would alias), INTER_LINEAR when enlarging."""
    shrink = width <= img.shape[1] and height <= img.shape[0]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def imagenet_transform(img: np.ndarray, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """ImageNet training: RandomResizedCrop(size, scale 0.08-1, ratio 3/4-4/3) of the image at
    its own size, RandomHorizontalFlip(0.5), ToTensor, Normalize (ImageNet mean and std)."""
    top, left, h, w = _resized_crop_box(rng, img.shape[0], img.shape[1], IMAGENET_SCALE, IMAGENET_RATIO)
    img = _resize(img[top:top + h, left:left + w], size, size)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return to_normalized_chw(img)


def imagenet_eval_transform(img: np.ndarray, rng=None, size: int = 224) -> np.ndarray:
    """ImageNet evaluation: the short side resized to int(size / 0.875) (256 for 224), the long
    side in proportion (rounded down, as torchvision's Resize), the centre size x size crop,
    ToTensor, Normalize (ImageNet mean and std)."""
    resize = int(size / EVAL_CROP_FRACTION)
    h, w = img.shape[:2]
    nh, nw = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
    img = _resize(img, nw, nh)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return to_normalized_chw(img[top:top + size, left:left + size])


def _imagenet_preset(name: str, size: int) -> "Preset":
    return Preset(name, partial(imagenet_transform, size=size), partial(imagenet_eval_transform, size=size), size,
                  tuple(MEAN.tolist()), tuple(STD.tolist()),
                  f"ImageNet's: RandomResizedCrop {size} (scale 0.08-1), flip; eval resize {int(size / 0.875)} + "
                  f"centre crop {size}; ImageNet statistics")


@dataclass(frozen=True)
class Preset:
    """What a ``data.transforms`` preset does: ``train(img, rng)`` and ``eval(img)`` map a HWC
    uint8 RGB image to a CHW float32 one of ``image_size`` x ``image_size``, normalized with
    ``mean`` and ``std`` (per channel, of pixel / 255). Every consumer -- the engine's loaders,
    the fast path's traced shape, tools/compare.py's predictions and throughput, the benchmark --
    asks :func:`preset` for these, so a preset is defined here and nowhere else."""

    name: str
    train: Callable
    eval: Callable
    image_size: int
    mean: tuple
    std: tuple
    description: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("notebook", notebook_transform, eval_transform, IMAGE_SIZE, tuple(MEAN.tolist()), tuple(STD.tolist()),
           "the notebook's: Resize 130, ColorJitter, RandomResizedCrop 128, flip, rotation; ImageNet statistics"),
    Preset("plain", plain_transform, eval_transform, IMAGE_SIZE, tuple(MEAN.tolist()), tuple(STD.tolist()),
           "Resize 128 and flip; ImageNet statistics"),
    Preset("cifar", cifar_transform, cifar_eval_transform, 32, tuple(CIFAR_MEAN.tolist()), tuple(CIFAR_STD.tolist()),
           "32 px, no resize: RandomCrop 32 with 4 px zero padding, flip; CIFAR-10's statistics"),
    _imagenet_preset("imagenet", 224),  # ResNets, ResNeXts, MobileNetV3, EfficientNet-B0
    _imagenet_preset("imagenet240", 240),  # EfficientNet-B1
    _imagenet_preset("imagenet260", 260),  # EfficientNet-B2
    _imagenet_preset("imagenet300", 300),  # EfficientNet-B3
)}


def preset(name: str) -> Preset:
    """The preset called ``name`` (``data.transforms``); ConfigError naming the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"data.transforms: unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def presets_of_size(image_size: int) -> list:
    """Names of the presets whose images are ``image_size`` px."""
    return [name for name, p in PRESETS.items() if p.image_size == image_size]


def model_input_size(model) -> Optional[int]:
    """The image side a model is built for (its ``input_size``), None if it does not say."""
    size = getattr(model, "input_size", None)
    return int(size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else None


def check_models_fit(cfg: dict) -> None:
    """Refuse (ConfigError, one line) a config whose models are built for another image size
    than its preset gives, e.g. AlexNet (128 px) with ``data.transforms: cifar`` (32 px). Each
    model's structure is built once (with the config's ``model_kwargs``, weights uninitialised) to
    read its ``input_size``; call it before anything is written."""
    from ba_net.models import build_structure

    p = preset(cfg["data"]["transforms"])
    # an image folder's class count is known once it is read; the input size does not depend on it
    num_classes = dataset(cfg["data"].get("dataset") or "cifar10").num_classes or 1000
    misfits = {}
    for name in cfg["models"]:
        with paddle.utils.unique_name.guard():
            size = model_input_size(build_structure(name, num_classes=num_classes, **cfg["model_kwargs"]))
        if size is not None and size != p.image_size:
            misfits.setdefault(size, []).append(name)
    if misfits:
        size, names = next(iter(misfits.items()))
        fits = presets_of_size(size)
        fix = (f"use data.transforms: {' or '.join(fits)} for {', '.join(names)}" if fits else
               f"no preset gives {size} px images")
        raise ConfigError(f"models: {', '.join(names)} {'is' if len(names) == 1 else 'are'} built for {size} px "
                          f"images, but data.transforms: {p.name} gives {p.image_size} px; {fix}, or train models "
                          f"built for {p.image_size} px in a config of their own")
