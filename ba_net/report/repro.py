"""Were a model's seeds run alike? For each model, over its finished runs (the ones in the
statistics): whether their saved config.yaml agree apart from the seed and the keys that only say
where data lives and how it is loaded (``IGNORED_KEYS``: a tarball or image folder moved or read
from another disk is the same data), and which Paddle version and device each run had. Since
where the data lives is not compared, what it is is: the class names each run recorded
(history.json's ``classes``) must agree, or the runs differ ("recorded classes").

The Paddle version and the device are read from the run's history.json (keys ``paddle_version``
and ``device``), else from its config.yaml (same keys; the config's ``device`` is only what was
asked for, e.g. 'auto', so the history's is preferred); "not recorded" when neither has them.
"""
from __future__ import annotations

import logging
from typing import Optional

from ba_net.files import read_json
from ba_net.errors import RunStateError
from ba_net.runs.results import by_model
from ba_net.runs.folder import DATA_LOCATION_KEYS, RunFolder

logger = logging.getLogger(__name__)

# Config keys that may differ between the seeds of a model without changing what a run computes
# (paddle_version is reported on its own). Unlike the engine's resume check, train.path is
# compared: dygraph and static graph are different programs.
IGNORED_KEYS = {("models",), ("seeds",), ("seed",), ("output_dir",), ("device",), ("paddle_version",)} | DATA_LOCATION_KEYS
NOT_RECORDED = "not recorded"


def _flatten(config: dict, prefix=()) -> dict:
    """{('a', 'b'): value} for every leaf of a nested mapping, the ignored keys left out."""
    out = {}
    for key, value in config.items():
        path = prefix + (str(key),)
        if path in IGNORED_KEYS:
            continue
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _seeds(seeds) -> str:
    seeds = list(seeds)
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}"


def _by_value(values: dict) -> str:
    """{seed: value} -> 'v1 (seeds 0, 1), v2 (seed 2)', or 'v' when all agree."""
    groups = {}
    for seed, value in sorted(values.items()):
        groups.setdefault(repr(value) if not isinstance(value, str) else value, []).append(seed)
    if len(groups) == 1:
        return next(iter(groups))
    return ", ".join(f"{value} ({_seeds(seeds)})" for value, seeds in groups.items())


def config_differences(runs) -> list:
    """'key: value (seeds ...), value (seeds ...)' for every config key on which the runs differ;
    a run without a config.yaml is a difference of its own, and so are differing recorded classes."""
    missing = [r.seed for r in runs if not r.config]
    flat = {r.seed: _flatten(r.config) for r in runs if r.config}
    out = [f"config.yaml missing for {_seeds(missing)}"] if missing else []
    for key in sorted({k for f in flat.values() for k in f}):
        values = {seed: f.get(key, "(absent)") for seed, f in flat.items()}
        if len({repr(v) for v in values.values()}) > 1:
            out.append(f"{'.'.join(key)}: {_by_value(values)}")
    classes = {r.seed: tuple(r.history["classes"]) for r in runs if r.history.get("classes")}
    if len(set(classes.values())) > 1:  # the data itself differs, wherever it was read
        named = {s: f"{len(c)} classes {', '.join(c[:3])}{', ...' if len(c) > 3 else ''}" for s, c in classes.items()}
        out.append(f"recorded classes: {_by_value(named)}")
    return out


def _history(run) -> dict:
    try:
        return read_json(RunFolder(run.folder).history, "run history")
    except RunStateError:  # collect_runs has read it already; a file gone since is not recorded
        return {}


def _recorded(run, key: str) -> Optional[str]:
    value = _history(run).get(key) or run.config.get(key)
    if key == "device" and value == "auto":
        value = None
    return None if value in (None, "") else str(value)


def global_batch(run) -> Optional[int]:
    """Images per optimizer step over all processes: history.json's ``global_batch``; for a run
    from before train.batch_size meant the global batch, its batch_size times its world size."""
    history = _history(run)
    if history.get("global_batch"):
        return int(history["global_batch"])
    batch = (run.config.get("train") or {}).get("batch_size")
    return int(batch) * int(history.get("world_size") or 1) if batch else None


def environment(run) -> dict:
    """{'paddle_version', 'device', 'processes'} of one run, "not recorded" where absent."""
    env = {key: _recorded(run, key) or NOT_RECORDED for key in ("paddle_version", "device")}
    return {**env, "processes": str(_history(run).get("world_size") or NOT_RECORDED)}


def model_report(model: str, runs) -> dict:
    """The reproducibility of one model's finished runs."""
    done = [r for r in runs if r.finished]
    envs = {r.seed: environment(r) for r in done}
    diffs = config_differences(done)
    versions = _by_value({s: e["paddle_version"] for s, e in envs.items()}) if done else NOT_RECORDED
    devices = _by_value({s: e["device"] for s, e in envs.items()}) if done else NOT_RECORDED
    processes = _by_value({s: e["processes"] for s, e in envs.items()}) if done else NOT_RECORDED
    batches = {r.seed: global_batch(r) for r in done}
    if len(set(batches.values()) - {None}) > 1:
        raise RunStateError(f"{model}: its seeds ran with different global batches ({_by_value(batches)}), so they "
                            f"are not one recipe and are not pooled; rerun the odd ones with --force and the same "
                            f"train.batch_size")
    differ = [f"config {'; '.join(diffs)}"] if diffs else []
    differ += [f"Paddle {versions}"] if len({e["paddle_version"] for e in envs.values()}) > 1 else []
    differ += [f"device {devices}"] if len({e["device"] for e in envs.values()}) > 1 else []
    return {"model": model, "seeds": [r.seed for r in done], "configs_identical": not diffs,
            "config_differences": diffs, "paddle_version": versions, "device": devices, "processes": processes,
            "global_batch": _by_value({s: NOT_RECORDED if b is None else b for s, b in batches.items()})
            if done else NOT_RECORDED,
            "warning": f"warning: {model}: its seeds' runs differ: {' | '.join(differ)}" if differ else None}


def reproducibility(runs, baseline: str) -> list:
    """:func:`model_report` for every model (baseline first); one warning line per model whose
    seeds differ."""
    reports = [model_report(model, model_runs) for model, model_runs in by_model(runs, baseline).items()]
    for rep in reports:
        if rep["warning"]:
            logger.warning("%s", rep["warning"])
    return reports


__all__ = ["IGNORED_KEYS", "NOT_RECORDED", "config_differences", "environment", "global_batch", "model_report",
           "reproducibility"]
