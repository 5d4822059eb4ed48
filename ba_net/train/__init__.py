"""Training: one run and the ablation around it.

* :mod:`~ba_net.train.engine`: :func:`~ba_net.train.engine.run_experiment` (every model x seed of a
  config) and :func:`~ba_net.train.engine.train_run` (one run: model, optimizer, resume, epochs,
  checkpoints, history).
* :mod:`~ba_net.train.loops`: the one training loop and the one evaluation loop.
* :mod:`~ba_net.train.optim`, :mod:`~ba_net.train.schedule`, :mod:`~ba_net.train.loss`: what the
  config's ``optimizer``, ``schedule`` and ``loss`` sections build.
* :mod:`~ba_net.train.distributed`, :mod:`~ba_net.train.amp`, :mod:`~ba_net.train.ema`: several
  processes, mixed precision, the weight average.
* :mod:`~ba_net.train.dashboard`: the run's VisualDL log.

May import: :mod:`ba_net.data`, :mod:`ba_net.models`, :mod:`ba_net.attention`, :mod:`ba_net.accel`,
:mod:`ba_net.runs` and the top-level modules; never reports, deploy or the benchmark.
"""
