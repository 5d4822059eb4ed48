"""Run folders, ``<output_dir>/<experiment>/<model>/seed<seed>/``: their layout and what reads and
writes them.

* :mod:`~ba_net.runs.folder`: what the engine writes and checks: the files of a run folder,
  planning a run (new, resume, skip, refuse), weights and resume state.
* :mod:`~ba_net.runs.results`: the one reader of a run folder, :class:`~ba_net.runs.results.Run`
  (history, config, classes, preset, model, weights), for compare, export and predict.
* :mod:`~ba_net.runs.lock`: one writer per run folder.

Writes go through :mod:`ba_net.files` (temporary file, fsync, rename).

May import: :mod:`ba_net.config`, :mod:`ba_net.errors`, :mod:`ba_net.models` and :mod:`ba_net.data`;
never training, reports, deploy or the benchmark.
"""
