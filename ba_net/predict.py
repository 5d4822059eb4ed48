"""Predictions of a model's saved weights on the test split: the predicted classes, the
confusion matrix, and which run's weights stand for a model."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ba_net.runs import Run


def predict(model, images, batch_size: int = 128) -> np.ndarray:
    """Predicted class of every image (HWC uint8) under the eval transform."""
    import paddle

    from ba_net import data as D

    loader = D.build_loader(images, np.zeros(len(images), dtype=np.int64), D.eval_transform, batch_size, train=False)
    model.eval()
    out = []
    with paddle.no_grad():
        for x, _ in loader:
            out.append(model(x).argmax(axis=1).numpy())
    return np.concatenate(out).astype(np.int64)


def confusion_matrix(truth, predicted, num_classes: int = 10) -> np.ndarray:
    """Counts [true class, predicted class]."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(truth), np.asarray(predicted)), 1)
    return m


def prediction_run(model_runs) -> Optional[Run]:
    """The run whose weights represent a model: its lowest finished seed that saved weights."""
    return next((r for r in sorted(model_runs, key=lambda r: r.seed) if r.finished and r.weights()), None)


__all__ = ["confusion_matrix", "predict", "prediction_run"]
