"""Deployment: a finished run exported to a Paddle inference model, checked, and used to predict.

* :mod:`~ba_net.deploy.export`: tools/export.py (the export folder PaddleX runs as it is, its
  ``export.json`` spec and its one pre-processing, ONNX).
* :mod:`~ba_net.deploy.parity`: the export's probabilities against the run's own model's logits.
* :mod:`~ba_net.deploy.paddlex`: the export's ``inference.yml``, a pipeline config, and
  :func:`~ba_net.deploy.paddlex.register_paddlex` (``ba_net.register_paddlex()``; paddlex is an
  optional extra, imported only there).
* :mod:`~ba_net.deploy.predict`: tools/predict.py (top-k classes of images through an export or a
  run's weights).

May import: :mod:`ba_net.runs`, :mod:`ba_net.models`, :mod:`ba_net.data`, :mod:`ba_net.accel` and
the top-level modules; never training, reports or the benchmark.
"""
