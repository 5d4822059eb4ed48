"""The fast CPU paths and the choice between them and plain dygraph.

* :mod:`~ba_net.accel.paths`: which path trains and evaluates (``train.path``), with a fallback to
  dygraph that says why in one log line.
* :mod:`~ba_net.accel.static_train`: the training step as a legacy static program with oneDNN
  convolutions (:class:`~ba_net.accel.static_train.StaticTrainer`).
* :mod:`~ba_net.accel.inference`: a model saved with ``paddle.jit.save`` and run by Paddle Inference
  (evaluation in training and compare; tools/export.py writes the same files).
* :mod:`~ba_net.accel.tracing`: the rewrites both apply while a model is traced.

May import: :mod:`ba_net.models`, :mod:`ba_net.data` (a preset's image size) and the top-level
modules; never training, runs, reports, deploy or the benchmark.
"""
from ba_net.accel.paths import PATHS, eval_model, prepare_training, resolve_path

__all__ = ["PATHS", "eval_model", "prepare_training", "resolve_path"]
