"""tools/compare.py: the runs of an experiment compared, as tables and figures.

* :mod:`~ba_net.report.compare`: the pipeline (:func:`~ba_net.report.compare.compare_experiment`).
* :mod:`~ba_net.report.stats`, :mod:`~ba_net.report.power`, :mod:`~ba_net.report.evidence`: the
  t-tests over seeds, their power, the sentences and the A/A control.
* :mod:`~ba_net.report.repro`: whether a model's seeds were run alike.
* :mod:`~ba_net.report.predictions`, :mod:`~ba_net.report.per_class`: test-split predictions,
  confusion matrices and per-class accuracy.
* :mod:`~ba_net.report.throughput`: images per second (also used by the benchmark).
* :mod:`~ba_net.report.tables`, :mod:`~ba_net.report.plots`, :mod:`~ba_net.report.attention_figure`:
  what is written.

May import: :mod:`ba_net.runs`, :mod:`ba_net.models`, :mod:`ba_net.attention`, :mod:`ba_net.data`,
:mod:`ba_net.accel` and the top-level modules; never training, deploy or the benchmark.
"""
