"""Experiment configuration: YAML sections, ``-o key=value`` overrides, strict validation.

Every key the engine reads is declared in ``SCHEMA`` with its default, type and allowed values.
A config file or override naming any other key is rejected with the valid keys listed (PaddleClas
would silently create it), and so is a value of the wrong type or out of range.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from ba_net.errors import ConfigError


@dataclass(frozen=True)
class Field:
    default: Any
    kind: str  # int, float, bool, str, list[int], list[str], dict
    doc: str
    nullable: bool = False
    choices: Optional[Callable[[], list]] = None
    minimum: Optional[float] = None
    below: Optional[float] = None  # exclusive upper bound


def _model_names():
    from ba_net.models import list_models

    return list_models(images_only=True)


def _datasets():
    from ba_net.data.datasets import DATASETS

    return list(DATASETS)


def _presets():
    from ba_net.data import PRESETS

    return list(PRESETS)


SCHEMA = {
    "experiment": Field(None, "str", "name of the experiment folder; default: the config file's stem", nullable=True),
    "models": Field(["alexnet", "ba_alexnet"], "list[str]", "registry names of the image models to train", choices=_model_names),
    "model_kwargs": Field({}, "dict", "keyword arguments passed to build_model (e.g. reduction: 16)"),
    "seeds": Field([0], "list[int]", "one run per model and seed"),
    "output_dir": Field("output", "str", "runs go to <output_dir>/<experiment>/<model>/seed<seed>/"),
    "device": Field("auto", "str", "auto (GPU when Paddle has CUDA), cpu or gpu", choices=lambda: ["auto", "cpu", "gpu"]),
    "data": {
        "dataset": Field("cifar10", "str", "cifar10, cifar100 (the 100 fine labels) or imagefolder (ImageNet-style "
                         "files under data.data_dir); the models get as many outputs as it has classes "
                         "(ba_net/data/datasets.py DATASETS)", choices=_datasets),
        "data_dir": Field(None, "str", "the root of data.dataset: imagefolder (read by no other data set): train/ "
                          "and val/ folders of class sub-folders (the ImageNet / torchvision layout), or PaddleClas's "
                          "train_list.txt and val_list.txt ('relative/path label' a line); val/ is the test split. "
                          "Relative paths start at the config file's folder (at the working directory in -o)",
                          nullable=True),
        "data_file": Field(None, "str", "the data set's python tarball (cifar-10-python.tar.gz, "
                           "cifar-100-python.tar.gz); relative paths start at the config file's folder "
                           "(at the working directory in -o); null: $BA_NET_CIFAR10 (or $BA_NET_CIFAR100), "
                           "Paddle's cache, download", nullable=True),
        "download_url": Field(None, "str", "where the data set is downloaded from when no local copy is found "
                              "(a mirror, or the original https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
                              "or cifar-100-python.tar.gz); null: Paddle's mirror", nullable=True),
        "num_workers": Field(2, "int", "DataLoader worker processes (0 = load in the main process)", minimum=0),
        "eval_num_workers": Field(None, "int", "worker processes of the validation loader; null: data.num_workers",
                                  nullable=True, minimum=0),
        "transforms": Field("notebook", "str", "data preset: train and eval transforms, image size, normalization "
                            "(ba_net/data/presets.py PRESETS: notebook and plain 128 px for AlexNet, cifar 32 px for the "
                            "CIFAR ResNets, imagenet 224 px and imagenet240 / 260 / 300 for ImageNet-style folders); "
                            "the models must be built for its image size", choices=_presets),
        "mixup_alpha": Field(0.0, "float", "batch mixup with lambda ~ Beta(alpha, alpha); 0 = off", minimum=0.0),
        "val_split": Field(None, "int", "hold out this many training images (class-stratified, the same for every "
                           "model and seed) to pick the best epoch on; the test split is then only reported. null: "
                           "the best epoch is picked on the test split, as the notebook does (optimistic)",
                           nullable=True, minimum=1),
    },
    "train": {
        "epochs": Field(100, "int", "training epochs", minimum=1),
        "batch_size": Field(128, "int", "images per optimizer step in total (the global batch: each of N "
                            "processes takes batch_size / N)", minimum=1),
        "max_steps_per_epoch": Field(None, "int", "cap on iterations per epoch; null = the whole epoch", nullable=True, minimum=1),
        "log_every": Field(10, "int", "record the train loss every N iterations", minimum=1),
        "amp": Field(False, "bool", "mixed precision (GPU only; refused with a warning on CPU)"),
        "ema_decay": Field(None, "float", "exponential moving average of the weights after every step, evaluated "
                           "and saved beside them (best_ema.pdparams, final_ema.pdparams); e.g. 0.999; null: off "
                           "(trains on the dygraph path)", nullable=True, minimum=0.0, below=1.0),
        "sync_bn": Field(None, "bool", "synchronize BatchNorm statistics across processes (SyncBatchNorm, GPU only); "
                         "null: on when several GPU processes train; false: per-process statistics, averaged "
                         "over the processes before each evaluation", nullable=True),
        "path": Field("fast", "str", "fast: on CPU a static program with oneDNN convolutions (ba_net/accel/paths.py), "
                      "dygraph elsewhere; dygraph: always plain dygraph", choices=lambda: ["fast", "dygraph"]),
    },
    "optimizer": {
        "name": Field("adam", "str", "optimizer", choices=lambda: ["adam", "adamw", "momentum"]),
        "lr": Field(1e-4, "float", "peak learning rate", minimum=0.0),
        "weight_decay": Field(1e-5, "float", "L2 decay (adam, momentum) or decoupled decay (adamw)", minimum=0.0),
        "momentum": Field(0.9, "float", "momentum (momentum optimizer only)", minimum=0.0, below=1.0),
        "nesterov": Field(False, "bool", "Nesterov momentum (momentum optimizer only)"),
    },
    "schedule": {
        "name": Field("cosine", "str", "cosine: per-iteration cosine decay; constant", choices=lambda: ["cosine", "constant"]),
        "warmup_epochs": Field(0.0, "float", "linear warmup length in epochs", minimum=0.0),
        "eta_min": Field(0.0, "float", "final learning rate of the cosine", minimum=0.0),
    },
    "loss": {
        "label_smoothing": Field(0.1, "float", "label smoothing epsilon", minimum=0.0, below=1.0),
    },
}


def defaults(schema: dict = SCHEMA) -> dict:
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in schema.items()}


def _describe(schema: dict) -> str:
    return ", ".join(sorted(schema))


def _coerce(key: str, field: Field, value: Any) -> Any:
    """Check ``value`` against ``field``; return it in canonical form or raise ConfigError."""
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"{key}: must not be null ({field.doc})")
    kind = field.kind

    def fail(what: str):
        raise ConfigError(f"{key}: expected {what}, got {value!r} ({field.doc})")

    if kind == "bool":
        if not isinstance(value, bool):
            fail("true or false")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
    elif kind == "float":
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                fail("a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail("a finite number")
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str) or not value:
            fail("a non-empty string")
    elif kind.startswith("list["):
        item = kind[5:-1]
        if not isinstance(value, list) or not value:
            fail("a non-empty list of " + {"int": "integers", "str": "names"}[item])
        for v in value:
            if item == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                fail("a list of integers")
            if item == "str" and not isinstance(v, str):
                fail("a list of strings")
        if len(set(value)) != len(value):
            fail("a list without repeats")
    elif kind == "dict":
        if not isinstance(value, dict):
            fail("a mapping")
    if field.minimum is not None and value < field.minimum:
        raise ConfigError(f"{key}: must be >= {field.minimum}, got {value!r} ({field.doc})")
    if field.below is not None and value >= field.below:
        raise ConfigError(f"{key}: must be < {field.below}, got {value!r} ({field.doc})")
    if field.choices is not None:
        valid = field.choices()
        for v in value if isinstance(value, list) else [value]:
            if v not in valid:
                raise ConfigError(f"{key}: unknown value {v!r}; choose from {', '.join(valid)}")
    return value


def _merge(base: dict, update: dict, schema: dict, prefix: str = "") -> None:
    if not isinstance(update, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {update!r}")
    for key, value in update.items():
        path = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"unknown key {path!r}; valid keys here: {_describe(schema)}")
        if isinstance(schema[key], dict):
            _merge(base[key], value, schema[key], path + ".")
        else:
            base[key] = _coerce(path, schema[key], value)


def parse_override(text: str) -> dict:
    """'train.epochs=3' -> {'train': {'epochs': 3}} (the value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value (example: -o train.epochs=3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def _anchor_data_file(cfg: dict, folder: Path) -> None:
    """Make a relative ``data.data_file`` (and ``data.data_dir``) absolute: relative to the config
    file's folder when the file set it, to the working directory when an override or ``base`` did,
    so a run means the same data whatever directory it is started from (and its saved config
    names it exactly)."""
    for key in ("data_file", "data_dir"):
        value = cfg["data"][key]
        if value is not None:
            path = Path(value).expanduser()
            cfg["data"][key] = os.path.abspath(folder / path)


def load_config(path: Optional[str | Path] = None, overrides: tuple = (), base: Optional[dict] = None) -> dict:
    """Defaults, then the YAML file (if any), then ``key=value`` overrides; validated throughout."""
    cfg = defaults()
    if base is not None:
        _merge(cfg, base, SCHEMA)
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found; pass an existing file with -c (see experiments/)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read ({exc.__class__.__name__}); check its permissions and encoding") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            if isinstance(exc, yaml.constructor.ConstructorError):  # e.g. !!python/object: safe_load refuses it
                raise ConfigError(f"config file {path} uses a YAML tag that safe loading refuses{where} "
                                  f"({exc.problem}); use plain values") from None
            raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not a {type(data).__name__}")
        _merge(cfg, data, SCHEMA)
        _anchor_data_file(cfg, path.parent)
        if cfg["experiment"] is None:
            cfg["experiment"] = path.stem
    for text in overrides:
        _merge(cfg, parse_override(text), SCHEMA)
    _anchor_data_file(cfg, Path.cwd())
    if cfg["experiment"] is None:
        cfg["experiment"] = "experiment"
    if any(sep in cfg["experiment"] for sep in ("/", "\\")) or cfg["experiment"] in (".", ".."):
        raise ConfigError(f"experiment: {cfg['experiment']!r} must be a plain folder name")
    return cfg


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
