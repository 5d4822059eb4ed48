"""Run folders, ``<output_dir>/<experiment>/<model>/seed<seed>/``: their layout and what reads and
writes them.

* :mod:`~ba_net.runs.folder`: the files of a run folder, planning a run (new, resume, refuse),
  weights and resume state.
* :mod:`~ba_net.runs.results`: a finished (or stopped) run as compare reads it, and every run of an
  experiment.
* :mod:`~ba_net.files`: crash-safe writes (temporary file, fsync, rename).
* :mod:`~ba_net.runs.lock`: one writer per run folder.

May import: :mod:`ba_net.config`, :mod:`ba_net.errors`, :mod:`ba_net.models` and :mod:`ba_net.data`;
never training, reports, deploy or the benchmark.
"""
