"""A run folder, ``<output_dir>/<experiment>/<model>/seed<seed>/``: its files, and everything that
reads or writes them apart from the training loop itself.

Its files: ``config.yaml`` (the run's resolved config, :func:`run_config`), ``history.json``
(status running / interrupted / finished / failed, per-epoch metrics, the loss every ``train.log_every``
iterations), ``train.log`` (:class:`RunLog`), ``vdl/`` (:mod:`ba_net.train.dashboard`), ``best.*`` and
``final.*`` (weights ``.pdparams``, optimizer state ``.pdopt``), and until the run finishes
``state.json`` naming the last completed epoch's pair in ``checkpoint/`` (:func:`save_resume_state`).

The engine asks :func:`plan_experiment` whether to start, resume or skip each run; compare, export
and predict read a run through :class:`ba_net.runs.results.Run`; both check history.json through
:func:`read_history`.
``.pdparams`` / ``.pdopt`` files are pickles: they are loaded only from the run folder.
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ba_net.files import atomic_write_json, load_paddle, read_json, remove_temp_files, save_paddle
from ba_net.errors import RunStateError
from ba_net.runtime import package_logger

logger = logging.getLogger(__name__)

STATUSES = ("running", "interrupted", "finished", "failed")  # interrupted: Ctrl-C or SIGTERM; --resume continues it
EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
HELD_OUT_KEYS = ("test_loss", "test_acc")  # epochs of a run with data.val_split: the test split, reported
OPTIONAL_KEYS = HELD_OUT_KEYS + ("ema_val_loss", "ema_val_acc", "ema_test_loss", "ema_test_acc")  # and train.ema_decay
TRAIN_FIX = "rerun with --force to start the run over"  # what the engine's errors about a run folder advise
COMPARE_FIX = "delete the run folder or rerun it with --force"  # and compare's
# Where a run's data lives and how it is loaded: a tarball or image folder moved or read from
# another disk is the same data (resume and compare's reproducibility check both ignore these).
DATA_LOCATION_KEYS = {("data", "data_file"), ("data", "data_dir"), ("data", "download_url"), ("data", "num_workers"),
                      ("data", "eval_num_workers")}
# Keys that may differ between a run's saved config and the current one without changing what
# the run computes (where the data lives, which other runs are in the ablation, the path).
NEUTRAL_KEYS = {("models",), ("seeds",), ("output_dir",), ("device",), ("train", "path")} | DATA_LOCATION_KEYS


@dataclass
class RunFolder:
    """The files of one (model, seed) run."""

    root: Path

    @property
    def config(self): return self.root / "config.yaml"
    @property
    def history(self): return self.root / "history.json"
    @property
    def log(self): return self.root / "train.log"
    @property
    def vdl(self): return self.root / "vdl"
    @property
    def state(self): return self.root / "state.json"  # points at the last completed epoch's checkpoint
    @property
    def checkpoints(self): return self.root / "checkpoint"

    def weights(self, tag: str) -> tuple[Path, Path]:
        """(``<tag>.pdparams``, ``<tag>.pdopt``) for tag best / final."""
        return self.root / f"{tag}.pdparams", self.root / f"{tag}.pdopt"


def run_folder(cfg: dict, model: str, seed: int) -> RunFolder:
    return RunFolder(Path(cfg["output_dir"]) / cfg["experiment"] / model / f"seed{seed}")


def run_config(cfg: dict, model: str, seed: int) -> dict:
    """The resolved config of one run: the experiment's, narrowed to this model and seed."""
    return {**cfg, "models": [model], "seeds": [seed]}


def config_differences(saved: dict, current: dict, prefix=(), _defaults=None) -> list:
    """'key: old -> new' for every key that changes what a run computes. A key the saved config
    lacks counts as its default (a key added to the schema after the run was made, e.g.
    optimizer.nesterov, at its default means what the run did)."""
    if _defaults is None:
        from ba_net.config import defaults

        _defaults = defaults()
    out = []
    for key in sorted(set(saved) | set(current)):
        path = prefix + (key,)
        if path in NEUTRAL_KEYS:
            continue
        default = _defaults.get(key) if isinstance(_defaults, dict) else None
        a, b = saved.get(key, default), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, path, default if isinstance(default, dict) else {})
        elif a != b:
            out.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
    return out


# ------------------------------------------------------------------------------- reading

def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _history_problem(h: dict, model: str, seed: int) -> Optional[str]:
    if h.get("status") not in STATUSES:
        return f"status {h.get('status')!r} is not one of {', '.join(STATUSES)}"
    if h.get("model", model) != model or h.get("seed", seed) != seed:
        return f"it names model {h.get('model')!r} seed {h.get('seed')!r} but lies in {model}/seed{seed}"
    epochs = h.get("epochs")
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        return "'epochs' is not a list of records"
    for e in epochs:
        bad = [k for k in EPOCH_KEYS + OPTIONAL_KEYS if (k in EPOCH_KEYS or k in e) and not _is_number(e.get(k))]
        if bad:
            return f"epoch record {e.get('epoch')!r} lacks a finite {bad[0]}"
    if len({"test_acc" in e for e in epochs}) > 1:
        return "some epoch records have test_acc and some do not"
    if h["status"] == "finished" and not epochs:
        return "status finished but no epoch recorded"
    return None


def read_history(folder: RunFolder, model: str, seed: int, fix: str) -> dict:
    """The run's history.json, checked (a known status, the folder's model and seed, epoch records
    with finite metrics); a torn or corrupt file is a RunStateError ending in ``fix``."""
    try:
        h = read_json(folder.history, "run history")
    except RunStateError as exc:  # missing, torn or not JSON
        raise RunStateError(f"{exc}; {fix}") from None
    problem = _history_problem(h, model, seed)
    if problem:
        raise RunStateError(f"run history {folder.history} is corrupt: {problem}; {fix}")
    return h


def read_run_config(folder: RunFolder, fix: str) -> dict:
    """The run's config.yaml as a dict ({} when there is none)."""
    import yaml

    if not folder.config.is_file():
        return {}
    try:
        config = yaml.safe_load(folder.config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunStateError(f"run config {folder.config} is unreadable ({exc.__class__.__name__}); {fix}") from None
    if not isinstance(config, dict):
        raise RunStateError(f"run config {folder.config} does not hold a mapping; {fix}")
    return config


# ------------------------------------------------------------------------------ the plan

def new_history(cfg: dict, model: str, seed: int, world: int, device: str) -> dict:
    """The history.json of a run that starts: running, no epoch yet; with how it was launched
    (train.batch_size is the global batch: each of ``world`` processes takes its share)."""
    import paddle

    return {"experiment": cfg["experiment"], "model": model, "seed": seed, "status": "running", "reason": None,
            "best_val_acc": None, "best_epoch": None, "epochs_planned": cfg["train"]["epochs"],
            "world_size": world, "global_batch": cfg["train"]["batch_size"],
            "batch_per_process": cfg["train"]["batch_size"] // world, "device": device,
            "paddle_version": paddle.__version__, "epochs": [], "iters": []}


def plan_experiment(cfg: dict, resume: bool, force: bool, check_locks: bool = True) -> dict:
    """{(model, seed): (folder, action, resume state)} for every run of ``cfg``, in its order
    (:func:`plan_run`; action 'locked' with the owner instead of a state when another live process
    holds the run's lock); with ``resume``, at least one run must have a state to continue.
    ``check_locks`` False (data-parallel ranks other than 0): rank 0's lock, taken by then, is
    its own job's; whether a run is locked is rank 0's call, shared when the run comes up."""
    from ba_net.runs.lock import holder

    plans = {}
    for model in cfg["models"]:
        for seed in cfg["seeds"]:
            folder = run_folder(cfg, model, seed)
            owner = holder(folder.root) if check_locks else None  # another process trains it: not read
            plans[(model, seed)] = (folder, "locked", owner) if owner else \
                (folder, *plan_run(cfg, model, seed, folder, resume, force))
    if resume and not any(p[1] in ("resume", "locked") for p in plans.values()):
        raise RunStateError(f"--resume: no run under {Path(cfg['output_dir']) / cfg['experiment']} has a saved "
                            f"state to continue; drop --resume to start or skip runs as needed")
    return plans


def plan_run(cfg: dict, model: str, seed: int, folder: RunFolder, resume: bool, force: bool):
    """('start' | 'resume' | 'skip', resume state or None) for one run, or RunStateError."""
    if force or not folder.history.exists():
        return "start", None
    history = read_history(folder, model, seed, TRAIN_FIX)
    if folder.config.exists():
        diffs = config_differences(read_run_config(folder, TRAIN_FIX), run_config(cfg, model, seed))
        if diffs:
            raise RunStateError(f"{folder.root} was run with a different config ({'; '.join(diffs[:3])}); "
                                f"use another output_dir/experiment, or --force to overwrite it")
    if history["status"] == "finished":
        return "skip", None
    if history["status"] == "failed":  # resuming would replay the same steps into the same failure
        lr = cfg["optimizer"]["lr"]
        raise RunStateError(f"{folder.root} failed ({history.get('reason', 'no reason recorded')}); resuming would "
                            f"repeat it: rerun with --force and a lower learning rate (e.g. -o optimizer.lr={lr / 10:g})")
    if not folder.state.exists():
        return "start", None  # stopped during its first epoch: nothing worth keeping
    try:
        state = read_json(folder.state, "resume state")
    except RunStateError as exc:
        raise RunStateError(f"{exc}; {TRAIN_FIX}") from None
    check_state(folder, state, cfg["train"]["epochs"])
    if not resume:
        raise RunStateError(f"{folder.root} stopped after epoch {state.get('epoch')} of {cfg['train']['epochs']}: "
                            f"rerun with --resume to continue it, or --force to start it over")
    return "resume", state


def check_state(folder: RunFolder, state: dict, epochs: int) -> None:
    """Refuse a state.json that is incomplete or names files outside the run's checkpoint folder
    (checkpoints are pickles: they are loaded only from the run folder)."""
    def bad(what):
        raise RunStateError(f"resume state {folder.state} is not valid ({what}); {TRAIN_FIX}")

    epoch = state.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        bad(f"epoch {epoch!r} is not between 1 and {epochs}")
    history = state.get("history")
    if not isinstance(history, dict) or not isinstance(history.get("epochs"), list) or \
            len(history["epochs"]) != epoch or not isinstance(history.get("iters"), list):
        bad("its history does not match its epoch")
    inside = folder.checkpoints.resolve()
    for key in ("params", "opt") + (("ema",) if "ema" in state else ()):
        name = state.get(key)
        if not isinstance(name, str) or not name or Path(name).is_absolute() or \
                inside not in (folder.root / name).resolve().parents:
            bad(f"{key} {name!r} is not a file in {folder.checkpoints}")
    if "scaler" in state and not (isinstance(state["scaler"], dict) and isinstance(state["scaler"].get("scale"),
                                                                                   (int, float))):
        bad("its loss-scaler state has no numeric scale")


def prepare_folder(folder: RunFolder, action: str, label: str) -> None:
    """Before a run trains (rank 0 only): a started run gets an empty folder; a resumed one loses
    the temporary files of writes that a kill interrupted."""
    if action == "start" and folder.root.exists():
        shutil.rmtree(folder.root)
    folder.root.mkdir(parents=True, exist_ok=True)
    if action == "resume":
        for tmp in remove_temp_files(folder.root):
            logger.info("%s removed %s, left by an interrupted write", label, tmp.name)


def finish_cleanup(folder: RunFolder) -> None:
    """A finished run whose clean-up was interrupted (killed after history.json said finished)
    still has its resume checkpoint or temporary files: remove them, final.* supersede them."""
    leftovers = remove_temp_files(folder.root)
    if folder.state.exists() or folder.checkpoints.exists():
        leftovers.append(folder.state)
        drop_resume_state(folder)
    if leftovers:
        logger.info("%s: removed %s, left by an interrupted clean-up", folder.root,
                    ", ".join(p.name for p in leftovers))


# --------------------------------------------------------------------------- checkpoints

def load_weights(model, path, what: str = "checkpoint") -> None:
    """Load a ``.pdparams`` into ``model``, refusing one made for another architecture (Paddle
    itself would only warn and keep the current values)."""
    state = load_paddle(path, what)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    got = {k: list(getattr(v, "shape", [])) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        detail = "; ".join(f"{label} {', '.join(keys[:3])}" for label, keys in
                           (("missing", missing), ("unexpected", extra), ("shape differs for", shapes)) if keys)
        raise RunStateError(f"{what} {path} does not fit model {type(model).__name__} ({detail})")
    model.set_state_dict(state)


def save_weights(folder: RunFolder, tag: str, model, optimizer) -> None:
    params, opt = folder.weights(tag)
    save_paddle(params, model.state_dict())
    save_paddle(opt, optimizer.state_dict())


def save_resume_state(folder: RunFolder, epoch: int, model, optimizer, history: dict,
                      scaler: Optional[dict] = None, ema: Optional[dict] = None) -> None:
    """Checkpoint files named by epoch, then state.json pointing at them (atomically), then the
    older checkpoints removed: at every instant state.json names a complete set. ``scaler`` (the
    AMP loss scaler's state, JSON) goes into state.json; ``ema`` (the weight average's state) into
    ``epoch<N>.ema.pdparams`` beside the weights."""
    params = folder.checkpoints / f"epoch{epoch:04d}.pdparams"
    opt = params.with_suffix(".pdopt")
    average = params.with_suffix(".ema.pdparams")
    save_paddle(params, model.state_dict())
    save_paddle(opt, optimizer.state_dict())
    if ema is not None:
        save_paddle(average, ema)
    atomic_write_json(folder.state, {"epoch": epoch, "params": str(params.relative_to(folder.root)),
                                     "opt": str(opt.relative_to(folder.root)), "history": history,
                                     **({"scaler": scaler} if scaler else {}),
                                     **({"ema": str(average.relative_to(folder.root))} if ema is not None else {})})
    for old in folder.checkpoints.glob("epoch*"):
        if old not in (params, opt, average):
            old.unlink(missing_ok=True)


def load_resume_ema(folder: RunFolder, state: dict) -> dict:
    """The weight average saved with the checkpoint ``state``; a RunStateError when it has none."""
    if not state.get("ema"):
        raise RunStateError(f"{folder.root}: its checkpoint has no weight average (train.ema_decay was off when it "
                            f"was saved); {TRAIN_FIX}")
    return load_paddle(folder.root / state["ema"], "resume weight average")


def load_resume_state(folder: RunFolder, state: dict, model, optimizer, optimizer_name: str) -> dict:
    """Weights and optimizer state of the checkpoint ``state`` (checked by :func:`plan_run`) into
    ``model`` and ``optimizer``; returns the history it saved, marked running again."""
    try:
        load_weights(model, folder.root / state["params"], "resume weights")
        opt_state = load_paddle(folder.root / state["opt"], "resume optimizer state")
        try:
            optimizer.set_state_dict(opt_state)
        except Exception as exc:
            raise RunStateError(f"resume optimizer state {folder.root / state['opt']} does not fit the "
                                f"{optimizer_name} optimizer ({exc.__class__.__name__})") from None
    except RunStateError as exc:
        raise RunStateError(f"{exc}; {TRAIN_FIX}") from None
    history = state["history"]
    history["status"], history["reason"] = "running", None
    return history


def drop_resume_state(folder: RunFolder) -> None:
    """Remove state.json and the checkpoint folder (final.* supersede them)."""
    folder.state.unlink(missing_ok=True)
    shutil.rmtree(folder.checkpoints, ignore_errors=True)


class RunLog:
    """Copies the package's log records into the run's train.log while the run lasts."""

    def __init__(self, path: Path, enabled: bool):
        self.handler = None
        if enabled:
            self.handler = logging.FileHandler(path, encoding="utf-8")
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            package_logger().addHandler(self.handler)

    def close(self):
        if self.handler is not None:
            package_logger().removeHandler(self.handler)
            self.handler.close()
