"""Deployment: a finished run exported to a Paddle inference model, checked, and used to predict.

* :mod:`~ba_net.deploy.export`: tools/export.py (the export folder, its ``export.json`` spec, ONNX).
* :mod:`~ba_net.deploy.parity`: the export's logits against the run's own model.
* :mod:`~ba_net.deploy.predict`: tools/predict.py (top-k classes of images through an export or a
  run's weights).

May import: :mod:`ba_net.runs`, :mod:`ba_net.models`, :mod:`ba_net.data`, :mod:`ba_net.accel` and
the top-level modules; never training, reports or the benchmark.
"""
