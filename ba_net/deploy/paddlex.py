"""PaddleX, the Paddle ecosystem's low-code runner: the ``inference.yml`` an export carries for it,
the pipeline config that points at an export, and :func:`register_paddlex`, the one call that
makes our model name known to it.

An export folder (:mod:`ba_net.deploy.export`) is one PaddleX loads as it is:
``create_model(model_name="BA-Net", model_dir=EXPORT)`` or the image-classification pipeline with
``SubModules.ImageClassification: {model_name: BA-Net, model_dir: EXPORT}``
(:func:`pipeline_config`). PaddleX reads ``inference.json`` + ``inference.pdiparams`` (the graph,
whose output is the class probabilities) and ``inference.yml`` (:func:`inference_config`):

* ``Global.model_name``: :data:`PADDLEX_MODEL_NAME`, the name passed to PaddleX (it refuses a
  folder whose name differs);
* ``PreProcess.transform_ops``: ``ResizeImage`` (``size`` or ``resize_short``, ``interpolation``),
  ``CropImage`` when the transform has a crop, ``NormalizeImage`` (``scale`` 1/255, the preset's
  ``mean`` and ``std``, ``order: ''`` and ``channel_num: 3``, the only values PaddleX's
  classifier accepts) and ``ToCHWImage``. PaddleX reads images as RGB, as ba-net does. These
  steps are exactly the export's ``transform`` (:func:`ba_net.deploy.export.spec_transform`);
* ``PostProcess.Topk``: ``topk`` and ``label_list``, the run's class names.

PaddleX knows only the names it was told: ``BA-Net`` is registered for its static-graph Paddle
engine by :func:`register_paddlex`, a no-op when the name is already known. ``import ba_net``
never imports paddlex (an optional extra: ``pip install -e ".[deploy]"``); without it,
:func:`register_paddlex` logs one line and returns None.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

PADDLEX_MODEL_NAME = "BA-Net"
CONFIG_FILE = "inference.yml"
TOPK = 5  # PostProcess.Topk.topk: PaddleX's default number of classes per image


def inference_config(spec: dict, topk: int = TOPK) -> dict:
    """The ``inference.yml`` of an export whose spec is ``spec`` (its ``transform`` and ``classes``)."""
    t = spec["transform"]
    resize = {k: int(v) for k, v in t["resize"].items() if k in ("size", "resize_short")}
    ops = [{"ResizeImage": {**resize, "interpolation": t["interpolation"], "backend": "cv2"}}]
    if t.get("crop"):
        ops.append({"CropImage": {"size": int(t["crop"])}})
    ops += [{"NormalizeImage": {"scale": 1.0 / 255.0, "mean": [float(v) for v in t["mean"]],
                                "std": [float(v) for v in t["std"]], "order": "", "channel_num": 3}},
            {"ToCHWImage": None}]
    return {"Global": {"model_name": PADDLEX_MODEL_NAME},
            "PreProcess": {"transform_ops": ops},
            "PostProcess": {"Topk": {"topk": min(topk, len(spec["classes"])), "label_list": list(spec["classes"])}}}


def write_inference_config(folder, spec: dict) -> Path:
    """``<folder>/inference.yml`` (:func:`inference_config`), written atomically."""
    import yaml

    from ba_net.files import atomic_write_text

    path = Path(folder) / CONFIG_FILE
    header = (f"# PaddleX: create_model(model_name={PADDLEX_MODEL_NAME!r}, model_dir=<this folder>) after "
              f"ba_net.register_paddlex(); written by tools/export.py ({spec['model']}, preset "
              f"{spec['transform']['preset']})\n")
    atomic_write_text(path, header + yaml.safe_dump(inference_config(spec), sort_keys=False, allow_unicode=True))
    return path


def pipeline_config(export_dir, topk: int = TOPK, batch_size: int = 1) -> dict:
    """The config of PaddleX's image-classification pipeline running the export in ``export_dir``:
    ``create_pipeline(config=pipeline_config(EXPORT))`` (after :func:`register_paddlex`)."""
    return {"pipeline_name": "image_classification",
            "SubModules": {"ImageClassification": {"module_name": "image_classification",
                                                   "model_name": PADDLEX_MODEL_NAME,
                                                   "model_dir": str(Path(export_dir).resolve()),
                                                   "batch_size": int(batch_size), "topk": int(topk)}}}


def register_paddlex() -> Optional[str]:
    """Make :data:`PADDLEX_MODEL_NAME` known to PaddleX's image classifier (its static-graph Paddle
    engine), so ``create_model`` and ``create_pipeline`` accept it; returns the name. A no-op
    when PaddleX knows the name already. Without paddlex (or with one that has no binding
    registry, before 3.7): one log line, and None."""
    try:
        from paddlex.inference.models.bindings import register_predictor_binding_map, try_get_supported_engines
        from paddlex.inference.models.image_classification import ClasRunnerPredictor
    except ImportError as exc:
        logger.warning("paddlex is not usable here (%s): ba-net exports still run with tools/predict.py; "
                       "pip install -e \".[deploy]\" to run them in PaddleX", exc.__class__.__name__ + (
                           f": {exc}" if str(exc) else ""))
        return None
    if try_get_supported_engines(PADDLEX_MODEL_NAME):
        return PADDLEX_MODEL_NAME
    register_predictor_binding_map(ClasRunnerPredictor, {"paddle_static": [PADDLEX_MODEL_NAME]})
    logger.debug("registered %s with PaddleX's image classifier", PADDLEX_MODEL_NAME)
    return PADDLEX_MODEL_NAME


__all__ = ["CONFIG_FILE", "PADDLEX_MODEL_NAME", "TOPK", "inference_config", "pipeline_config", "register_paddlex",
           "write_inference_config"]
