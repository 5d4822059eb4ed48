"""Predictions of a model's saved weights on the test split, for tools/compare.py: the predicted
classes of every finished seed, the confusion matrix, and which run's weights stand for a model in
the figures."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from ba_net.runs.results import Run

logger = logging.getLogger(__name__)


def predict(model, images, batch_size: int = 128, transform=None) -> np.ndarray:
    """Predicted class of every image (HWC uint8) under ``transform``, the eval transform of the
    run's preset (default: the notebook's, 128 px)."""
    import paddle

    from ba_net import data as D

    from ba_net.data.loading import build_loader

    loader = build_loader(images, np.zeros(len(images), dtype=np.int64), transform or D.eval_transform, batch_size,
                            train=False)
    model.eval()
    out = []
    with paddle.no_grad():
        for x, _ in loader:
            out.append(model(x).argmax(axis=1).numpy())
    return np.concatenate(out).astype(np.int64)


def confusion_matrix(truth, predicted, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(truth), np.asarray(predicted)), 1)
    return m


def prediction_run(model_runs) -> Optional[Run]:
    """The run whose weights represent a model: its lowest finished seed that saved weights."""
    return next(iter(prediction_runs(model_runs)), None)


def prediction_runs(model_runs) -> list:
    """Every finished run of a model that saved weights, by seed."""
    return [r for r in sorted(model_runs, key=lambda r: r.seed) if r.finished and r.has_weights]


def predict_runs(model_runs, images, path: str = "fast") -> dict:
    """{seed: (weights file name, predicted classes)} for every finished seed with weights: each
    run's model with its weights (best, else final: :meth:`ba_net.runs.results.Run.build_model`)
    evaluated (``path`` as :func:`ba_net.accel.paths.eval_model`) on the same ``images`` under the
    eval transform of the run's preset."""
    from ba_net.accel.paths import eval_model

    out = {}
    for run in prediction_runs(model_runs):
        model = run.build_model()
        out[run.seed] = (run.weights().name, predict(eval_model(model, path), images, transform=run.preset.eval))
    return out


__all__ = ["confusion_matrix", "predict", "predict_runs", "prediction_run", "prediction_runs"]
