"""Which path trains and evaluates: the fast one, or plain dygraph as the fallback.

=====================================  =====================================  ================
                                       ``train.path: fast`` (default)         ``dygraph``
=====================================  =====================================  ================
training, CPU, one process             :class:`ba_net.accel.static_train.           dygraph
                                       StaticTrainer` (a legacy static
                                       program, oneDNN convolutions)
training, GPU or several processes     dygraph (with ``train.amp`` if set)    dygraph
evaluation in tools/compare.py         :class:`ba_net.accel.inference.              dygraph
                                       InferenceRunner` (Paddle Inference)
=====================================  =====================================  ================

:func:`prepare_training` returns a checked trainer or None (dygraph); anything the fast path
cannot do -- GPU, several processes, a model whose program cannot be built, a program whose
output differs from dygraph on a check batch -- falls back to dygraph with a log line saying why.
:func:`eval_model` returns what evaluation should call, usable wherever a model in eval mode is.
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
from typing import Callable, Optional

import paddle

from ba_net.accel.inference import InferenceRunner, export_for_inference
from ba_net.accel.static_train import StaticTrainer

logger = logging.getLogger(__name__)

PATHS = ("fast", "dygraph")


def resolve_path(requested: str, device: str, world: int = 1) -> tuple[str, str]:
    """(path actually used, reason) for ``train.path``: 'static_onednn' or 'dygraph'."""
    if requested == "dygraph":
        return "dygraph", "train.path: dygraph"
    if not device.startswith("cpu"):
        return "dygraph", f"on {device} the fast path is dygraph (with train.amp if set)"
    if world > 1:
        return "dygraph", f"{world} processes: the static program has no gradient all-reduce; dygraph DataParallel"
    try:  # Paddle's internals: the build's oneDNN flag is named differently across 3.x
        from paddle.base import core

        has_onednn = getattr(core, "is_compiled_with_onednn", getattr(core, "is_compiled_with_mkldnn", None))()
    except Exception:  # no such module or function in this Paddle: do not guess
        return "dygraph", "this Paddle does not say whether it was built with oneDNN"
    if not has_onednn:
        return "dygraph", "this Paddle build has no oneDNN"
    return "static_onednn", "legacy static program, oneDNN convolutions"


def plain_reason(exc: Exception) -> str:
    """The first line of Paddle's error message without its C++ source location and error-class
    tag: ``(InvalidType) matmul(): argument ... (at /paddle/.../eager_utils.cc:2308)`` ->
    ``matmul(): argument ...``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\s*\(at /[^)]*\)", "", text)
    return re.sub(r"^\((InvalidType|InvalidArgument|Unimplemented|PreconditionNotMet|NotFound)\)\s*", "", text)


def prepare_training(cfg: dict, model_name: str, model, optimizer, make_optimizer: Callable, loss_fn, *,
                     device: str, world: int = 1, image_shape: Optional[tuple] = None,
                     num_classes: Optional[int] = None) -> Optional[StaticTrainer]:
    """The training step for ``cfg['train']['path']``: a :class:`StaticTrainer`, or None for the
    engine's own dygraph step. ``image_shape`` (the training batch's shape, checked first) defaults
    to ``train.batch_size`` images of the size of the preset ``data.transforms``. A trainer is
    returned only after its program was built and checked against dygraph; any failure is logged
    and leads to None."""
    path, reason = resolve_path(cfg["train"]["path"], device, world)
    if path == "dygraph":
        logger.info("training path: dygraph (%s)", reason)
        return None
    from ba_net.data import dataset, preset

    if image_shape is None:  # the images of the run's preset (data.transforms)
        size = preset(cfg["data"]["transforms"]).image_size
        image_shape = (cfg["train"]["batch_size"], 3, size, size)

    if num_classes is None:  # as the engine builds the model (an image folder's count is known only once read)
        num_classes = dataset(cfg["data"].get("dataset") or "cifar10").num_classes
    try:
        trainer = StaticTrainer(model_name, cfg["model_kwargs"], num_classes, model, optimizer, make_optimizer, loss_fn)
        diff = trainer.check(tuple(image_shape), soft_targets=cfg["data"]["mixup_alpha"] > 0)
    except Exception as exc:  # an op the legacy program cannot express, or a mismatch
        logger.warning("training path: dygraph (%s cannot be traced into the fast path's static program: %s)",
                       model_name, plain_reason(exc))
        return None
    logger.info("training path: fast (%s; check against dygraph: %.1e)", reason, diff)
    return trainer


def eval_model(model, path: str = "fast"):
    """What evaluation should call for ``path`` ('fast' or 'dygraph', as ``train.path``): on
    'fast' an :class:`InferenceRunner` of ``model`` exported with its current weights (the export
    goes to a temporary folder, removed once the predictor has loaded it), else ``model`` itself.
    Falls back to ``model`` (logged) if the export or the predictor fails."""
    if path == "dygraph":
        return model
    if paddle.device.get_device().startswith("gpu"):
        return model  # Paddle Inference on GPU is untested here: dygraph (with AMP if asked) stays
    directory = tempfile.mkdtemp(prefix="ba_net_infer_")
    try:
        return InferenceRunner(export_for_inference(model, directory))
    except Exception as exc:
        logger.warning("eval path: dygraph (export for Paddle Inference failed: %s: %s)", type(exc).__name__, exc)
        return model
    finally:
        shutil.rmtree(directory, ignore_errors=True)


__all__ = ["PATHS", "eval_model", "prepare_training", "resolve_path"]
