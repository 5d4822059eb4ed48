"""The data: which data sets exist (:mod:`~ba_net.data.datasets`), where a data set's tarball is and
what is read of it (:mod:`~ba_net.data.sources`, downloading through :mod:`~ba_net.data.download`;
ImageNet-style image folders through :mod:`~ba_net.data.imagefolder`),
what is done to each image (:mod:`~ba_net.data.presets`) and how images reach a model in seeded
batches (:mod:`~ba_net.data.loading`).

One path for the data: ``data.dataset`` names a :class:`Dataset`; :func:`load_splits` finds its
tarball, reads the train and test splits into memory (an image folder's files are listed, and
decoded when indexed: :class:`ImageFiles`) and holds out ``data.val_split`` images;
:func:`~ba_net.data.loading.build_loader` serves them through the preset ``data.transforms``.

May import: :mod:`ba_net.errors`, :mod:`ba_net.runtime` and :mod:`ba_net.models` (to read a
model's input size). Nothing here knows about training, runs or reports.
"""
from ba_net.data.datasets import CIFAR10_CLASSES, DATASETS, Dataset, dataset, read_class_names, read_split, run_classes
from ba_net.data.imagefolder import IMAGE_EXTENSIONS, ImageFiles, decode_image, read_image_folder
from ba_net.data.presets import (CIFAR_MEAN, CIFAR_STD, MEAN, PRESETS, STD, Preset, check_models_fit,
                                 cifar_eval_transform, cifar_transform, eval_transform, imagenet_eval_transform,
                                 imagenet_transform, model_input_size, notebook_transform, plain_transform, preset,
                                 presets_of_size, to_normalized_chw)
from ba_net.data.sources import hold_out, load_splits, locate, locate_cifar10, read_cifar10, test_split

__all__ = ["CIFAR10_CLASSES", "CIFAR_MEAN", "CIFAR_STD", "DATASETS", "Dataset", "IMAGE_EXTENSIONS", "ImageFiles",
           "MEAN", "PRESETS", "Preset", "STD", "check_models_fit", "cifar_eval_transform", "cifar_transform", "dataset",
           "decode_image", "eval_transform", "hold_out", "imagenet_eval_transform", "imagenet_transform",
           "load_splits", "locate", "locate_cifar10", "model_input_size", "notebook_transform", "plain_transform",
           "preset", "presets_of_size", "read_class_names", "read_cifar10", "read_image_folder", "read_split",
           "run_classes", "test_split", "to_normalized_chw"]
