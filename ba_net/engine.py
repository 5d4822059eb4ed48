"""The training engine: one training loop, one evaluation loop, and the ablation around them.

``run_experiment(cfg)`` trains every (model, seed) of a config into
``<output_dir>/<experiment>/<model>/seed<seed>/``; see :class:`RunFolder` for the files of a run.
A finished run is skipped when the ablation runs again; a run that stopped mid-way is continued
with ``resume=True`` from its last completed epoch, bit-for-bit as if it had never stopped (the
seed fixes the initial weights, the data order, each image's augmentation and the dropout masks
of every epoch). Under ``paddle.distributed.launch`` metrics are reduced across ranks and only
rank 0 writes files.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import paddle
import paddle.distributed as dist

from ba_net import accel
from ba_net import data as D
from ba_net.checkpoint import (atomic_write_json, atomic_write_text, load_paddle, read_json, remove_temp_files,
                               save_paddle, write_error)
from ba_net.config import dump_config
from ba_net.errors import BaNetError, ConfigError, OutputError, RunStateError
from ba_net.loss import LabelSmoothingCrossEntropy
from ba_net.models import build_model
from ba_net.runtime import select_device
from ba_net.schedule import build_lr_scheduler

logger = logging.getLogger(__name__)

# Keys that may differ between a run's saved config and the current one without changing what
# the run computes (where the data lives, how it is loaded, which other runs are in the ablation).
_NEUTRAL_KEYS = {("models",), ("seeds",), ("output_dir",), ("device",), ("data", "data_file"), ("data", "num_workers"),
                 ("train", "path")}
PROGRESS_SECONDS = 15.0
_WRITE_FIX = ("free disk space or make the folder writable, or choose another output_dir; a run stopped this way "
              "continues with --resume")


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


def _config_differences(saved: dict, current: dict, prefix=()) -> list:
    out = []
    for key in sorted(set(saved) | set(current)):
        path = prefix + (key,)
        if path in _NEUTRAL_KEYS:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, path)
        elif a != b:
            out.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
    return out


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2**31 - 1))


# ------------------------------------------------------------------------------------- loops

class _Distributed:
    """Rank, world size and sum-reduction; a no-op on one process."""

    def __init__(self):
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list) -> list:
        t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
        if self.world > 1:
            dist.all_reduce(t)
        return [float(v) for v in t.numpy()]


def evaluate(model, loader, loss_fn, ctx: Optional[_Distributed] = None) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``loader`` (summed over ranks)."""
    ctx = ctx or _Distributed()
    model.eval()
    loss_sum = paddle.zeros([], dtype="float64")
    correct = paddle.zeros([], dtype="int64")
    count = 0
    with paddle.no_grad():
        for images, labels in loader:
            logits = model(images)
            n = int(labels.shape[0])
            loss_sum += loss_fn(logits, labels).astype("float64") * n
            correct += (logits.argmax(axis=1) == labels.reshape([-1])).astype("int64").sum()
            count += n
    loss_sum, correct, count = ctx.sum([float(loss_sum), float(correct), count])
    return loss_sum / max(count, 1), correct / max(count, 1)


class _Progress:
    """Periodic progress lines with ETA for one epoch (time-based, so long epochs stay visible)."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.start = self.last = time.time()

    def update(self, step: int, images: int, loss: float, lr: float) -> None:
        now = time.time()
        if not self.enabled or (now - self.last < PROGRESS_SECONDS and step < self.total):
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / step * (self.total - step)
        logger.info("%s step %d/%d  loss %.4f  lr %.3g  %.1f img/s  eta %s",
                    self.label, step, self.total, loss, lr, images / max(elapsed, 1e-9), _hms(eta))


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_epoch(model, loader, loss_fn, optimizer, scheduler, *, epoch, seed, mixup_alpha, log_every,
                iter_offset, iters, ctx, scaler=None, label="", step_fn=None) -> tuple[float, float, int]:
    """One pass over ``loader``; returns (mean loss, accuracy, iterations) and appends
    ``{"iter", "loss", "lr"}`` to ``iters`` every ``log_every`` iterations. Raises
    FloatingPointError at the first non-finite loss it sees. ``step_fn(images, target) ->
    (logits, loss)``, when given, does the forward, backward and update (ba_net.accel)."""
    model.train()
    loss_sum = paddle.zeros([], dtype="float64")
    correct = paddle.zeros([], dtype="int64")
    count = 0
    steps = len(loader)
    progress = _Progress(label, steps, ctx.main)
    step = 0
    for step, (images, labels) in enumerate(loader, start=1):
        labels = labels.reshape([-1])
        target, truth = labels, labels
        if mixup_alpha > 0:
            rng = np.random.default_rng([seed, epoch, step, ctx.rank])
            images, target, truth = D.mixup(images, labels, mixup_alpha, rng)
        lr = optimizer.get_lr()
        if step_fn is not None:
            logits, loss = step_fn(images, target)
        elif scaler is not None:
            with paddle.amp.auto_cast():
                logits = model(images)
                loss = loss_fn(logits, target)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            logits = model(images)
            loss = loss_fn(logits, target)
            loss.backward()
            optimizer.step()
        optimizer.clear_grad()
        scheduler.step()
        n = int(labels.shape[0])
        loss_sum += loss.detach().astype("float64") * n
        correct += (logits.detach().argmax(axis=1) == truth).astype("int64").sum()
        count += n
        global_iter = iter_offset + step
        if global_iter % log_every == 0 or step == steps:
            batch_loss = ctx.sum([float(loss)])[0] / ctx.world
            if not math.isfinite(batch_loss):
                raise FloatingPointError(f"non-finite loss {batch_loss} at epoch {epoch} iteration {global_iter}")
            if global_iter % log_every == 0:
                iters.append({"iter": global_iter, "loss": batch_loss, "lr": lr})
            progress.update(step, count * ctx.world, batch_loss, lr)
    loss_sum, correct, count = ctx.sum([float(loss_sum), float(correct), count])
    mean_loss = loss_sum / max(count, 1)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"non-finite mean loss at epoch {epoch}")
    return mean_loss, correct / max(count, 1), step


# ------------------------------------------------------------------------------------ one run

def _build_optimizer(cfg: dict, params, scheduler):
    o = cfg["optimizer"]
    if o["name"] == "adam":
        return paddle.optimizer.Adam(scheduler, parameters=params, weight_decay=o["weight_decay"] or None)
    if o["name"] == "adamw":
        return paddle.optimizer.AdamW(scheduler, parameters=params, weight_decay=o["weight_decay"])
    return paddle.optimizer.Momentum(scheduler, momentum=o["momentum"], parameters=params,
                                     weight_decay=o["weight_decay"] or None)


def _build_scheduler(cfg: dict, steps_per_epoch: int):
    s = cfg["schedule"]
    if s["name"] == "constant":
        return paddle.optimizer.lr.LambdaDecay(cfg["optimizer"]["lr"], lambda _: 1.0)
    epochs = cfg["train"]["epochs"]
    warmup = s["warmup_epochs"]
    if warmup >= epochs:
        raise ConfigError(f"schedule.warmup_epochs: {warmup} must be smaller than train.epochs ({epochs})")
    return build_lr_scheduler(cfg["optimizer"]["lr"], steps_per_epoch, epochs, warmup, s["eta_min"])


def _vdl_writer(folder: RunFolder, history: dict, hparams: dict):
    """A fresh VisualDL log holding everything ``history`` has so far (VisualDL shows only the
    newest log file of a folder, so a resumed run rewrites its log rather than adding one)."""
    from visualdl import LogWriter

    shutil.rmtree(folder.vdl, ignore_errors=True)
    run_name = f"{history['experiment']}/{history['model']}/seed{history['seed']}"
    writer = LogWriter(logdir=str(folder.vdl), file_name="vdlrecords.run.log", display_name=run_name)
    writer.add_hparams(hparams, ["hparam/best_val_acc", "hparam/final_val_acc", "hparam/final_train_acc"])
    for it in history["iters"]:
        _log_iter(writer, it)
    for ep in history["epochs"]:
        _log_epoch(writer, ep)
    return writer


def _log_iter(writer, it: dict) -> None:
    writer.add_scalar("loss/train_iter", it["loss"], it["iter"])
    writer.add_scalar("lr", it["lr"], it["iter"])


def _log_epoch(writer, ep: dict) -> None:
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"),
                     ("acc/train", "train_acc"), ("acc/val", "val_acc"), ("lr/epoch", "lr")):
        writer.add_scalar(tag, ep[key], ep["epoch"])


def _hparams(cfg: dict, model: str, seed: int) -> dict:
    return {"model": model, "seed": seed, "epochs": cfg["train"]["epochs"], "batch_size": cfg["train"]["batch_size"],
            "optimizer": cfg["optimizer"]["name"], "lr": cfg["optimizer"]["lr"],
            "weight_decay": cfg["optimizer"]["weight_decay"], "label_smoothing": cfg["loss"]["label_smoothing"],
            "transforms": cfg["data"]["transforms"], "mixup_alpha": cfg["data"]["mixup_alpha"]}


def _new_history(cfg: dict, model: str, seed: int, ctx: _Distributed, device: str) -> dict:
    return {"experiment": cfg["experiment"], "model": model, "seed": seed, "status": "running", "reason": None,
            "best_val_acc": None, "best_epoch": None, "epochs_planned": cfg["train"]["epochs"],
            "world_size": ctx.world, "device": device, "epochs": [], "iters": []}


class _RunLog:
    """Copies the package's log records into the run's train.log while the run lasts."""

    def __init__(self, path: Path, enabled: bool):
        self.handler = None
        if enabled:
            self.handler = logging.FileHandler(path, encoding="utf-8")
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logging.getLogger("ba_net").addHandler(self.handler)

    def close(self):
        if self.handler is not None:
            logging.getLogger("ba_net").removeHandler(self.handler)
            self.handler.close()


def train_run(cfg: dict, model_name: str, seed: int, folder: RunFolder, splits: dict, *,
              resume_state: Optional[dict] = None, device: str = "cpu", label: str = "") -> dict:
    """Train one (model, seed); returns its history (status finished or failed)."""
    # Parameter and optimizer-state names come from Paddle's global name counter; a fresh
    # counter per run makes them identical in every process, so resume state always matches.
    with paddle.utils.unique_name.guard():
        return _train_run(cfg, model_name, seed, folder, splits, resume_state, device, label)


def _train_run(cfg, model_name, seed, folder, splits, resume_state, device, label) -> dict:
    ctx = _Distributed()
    t = cfg["train"]
    paddle.seed(seed)
    model = build_model(model_name, num_classes=len(D.CLASSES), **cfg["model_kwargs"])
    train_loader = D.build_loader(*splits["train"], D.TRAIN_TRANSFORMS[cfg["data"]["transforms"]], t["batch_size"],
                                  seed=seed, train=True, num_workers=cfg["data"]["num_workers"], rank=ctx.rank,
                                  world=ctx.world, max_steps=t["max_steps_per_epoch"])
    val_loader = D.build_loader(*splits["test"], D.eval_transform, t["batch_size"], train=False,
                                num_workers=0, rank=ctx.rank, world=ctx.world)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size: {t['batch_size']} x {ctx.world} process(es) exceeds the "
                          f"{len(splits['train'][0])} training images; use a smaller batch")
    scheduler = _build_scheduler(cfg, steps_per_epoch)
    optimizer = _build_optimizer(cfg, model.parameters(), scheduler)
    loss_fn = LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"])
    scaler = None
    if t["amp"]:
        if device.startswith("gpu"):
            scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**15)
        else:
            logger.warning("train.amp needs a GPU; training in float32 on %s", device)

    history = _new_history(cfg, model_name, seed, ctx, device)
    start_epoch = 1
    if resume_state is not None:
        try:
            load_weights(model, folder.root / resume_state["params"], "resume weights")
            opt_state = load_paddle(folder.root / resume_state["opt"], "resume optimizer state")
            try:
                optimizer.set_state_dict(opt_state)
            except Exception as exc:
                raise RunStateError(f"resume optimizer state {folder.root / resume_state['opt']} does not fit the "
                                    f"{cfg['optimizer']['name']} optimizer ({exc.__class__.__name__})") from None
        except RunStateError as exc:
            raise RunStateError(f"{exc}; rerun with --force to start the run over") from None
        history = resume_state["history"]
        history["status"], history["reason"] = "running", None
        start_epoch = resume_state["epoch"] + 1
        logger.info("%s resuming after epoch %d (best val acc %.4f)", label, resume_state["epoch"],
                    history["best_val_acc"] or 0.0)
    train_model = paddle.DataParallel(model) if ctx.world > 1 else model
    fast = accel.prepare_training(cfg, model_name, model, optimizer, lambda p: _build_optimizer(cfg, p, scheduler),
                                  loss_fn, device=device, world=ctx.world)  # None: dygraph steps

    writer = None
    if ctx.main:
        atomic_write_text(folder.config, dump_config(run_config(cfg, model_name, seed)))
        atomic_write_json(folder.history, history)
        try:
            writer = _vdl_writer(folder, history, _hparams(cfg, model_name, seed))
        except OSError as exc:
            raise write_error(exc.filename or folder.vdl, exc, fix=_WRITE_FIX) from None
    iter_offset = (start_epoch - 1) * steps_per_epoch
    try:
        for epoch in range(start_epoch, t["epochs"] + 1):
            t0 = time.time()
            paddle.seed(_derived_seed(seed, epoch, ctx.rank))  # dropout masks of this epoch
            train_loader.batch_sampler.set_epoch(epoch)
            n_iters_before = len(history["iters"])
            lr = optimizer.get_lr()
            try:
                train_loss, train_acc, steps = train_epoch(
                    train_model, train_loader, loss_fn, optimizer, scheduler, epoch=epoch, seed=seed,
                    mixup_alpha=cfg["data"]["mixup_alpha"], log_every=t["log_every"], iter_offset=iter_offset,
                    iters=history["iters"], ctx=ctx, scaler=scaler, label=f"{label} epoch {epoch}/{t['epochs']}",
                    step_fn=fast)
            except FloatingPointError as exc:
                return _fail(history, str(exc), folder, ctx, label)
            iter_offset += steps
            if fast is not None:
                fast.sync()  # trained state -> model and optimizer, for evaluation and checkpoints
            val_loss, val_acc = evaluate(fast.eval_model if fast else train_model, val_loader, loss_fn, ctx)
            if not math.isfinite(val_loss):
                return _fail(history, f"non-finite validation loss {val_loss} at epoch {epoch}", folder, ctx, label)
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                      "val_acc": val_acc, "lr": lr, "time_s": round(time.time() - t0, 3)}
            history["epochs"].append(record)
            improved = history["best_val_acc"] is None or val_acc > history["best_val_acc"]
            if improved:
                history["best_val_acc"], history["best_epoch"] = val_acc, epoch
            logger.info("%s epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f%s  %.1fs", label, epoch,
                        t["epochs"], train_loss, train_acc, val_loss, val_acc, " (best)" if improved else "",
                        record["time_s"])
            if ctx.main:
                for it in history["iters"][n_iters_before:]:
                    _log_iter(writer, it)
                _log_epoch(writer, record)
                if improved:
                    _save_weights(folder, "best", model, optimizer)
                _save_resume_state(folder, epoch, model, optimizer, history)
                atomic_write_json(folder.history, history)
        history["status"] = "finished"
        if ctx.main:
            _save_weights(folder, "final", model, optimizer)
            last = history["epochs"][-1]
            for tag, value in (("hparam/best_val_acc", history["best_val_acc"]),
                               ("hparam/final_val_acc", last["val_acc"]), ("hparam/final_train_acc", last["train_acc"])):
                writer.add_scalar(tag, value, last["epoch"])
            atomic_write_json(folder.history, history)
            folder.state.unlink(missing_ok=True)  # final.* supersede the resume checkpoint
            shutil.rmtree(folder.checkpoints, ignore_errors=True)
        return history
    finally:
        if writer is not None:
            writer.close()


def _fail(history: dict, reason: str, folder: RunFolder, ctx: _Distributed, label: str) -> dict:
    """Mark the run failed (reason in history.json and the log); the files of the last completed
    epoch (state.json, its checkpoint, best.*) are left as they are."""
    history["status"], history["reason"] = "failed", reason
    logger.error("%s failed: %s; the last good checkpoint is kept", label, reason)
    if ctx.main:
        atomic_write_json(folder.history, history)
    return history


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


def _save_weights(folder: RunFolder, tag: str, model, optimizer) -> None:
    params, opt = folder.weights(tag)
    save_paddle(params, model.state_dict())
    save_paddle(opt, optimizer.state_dict())


def _save_resume_state(folder: RunFolder, epoch: int, model, optimizer, history: dict) -> None:
    """Checkpoint files named by epoch, then state.json pointing at them (atomically), then the
    older checkpoints removed: at every instant state.json names a complete pair."""
    params = folder.checkpoints / f"epoch{epoch:04d}.pdparams"
    opt = params.with_suffix(".pdopt")
    save_paddle(params, model.state_dict())
    save_paddle(opt, optimizer.state_dict())
    atomic_write_json(folder.state, {"epoch": epoch, "params": str(params.relative_to(folder.root)),
                                     "opt": str(opt.relative_to(folder.root)), "history": history})
    for old in folder.checkpoints.glob("epoch*"):
        if old not in (params, opt):
            old.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- the ablation

def _read_run_json(path: Path, what: str) -> dict:
    try:
        return read_json(path, what)
    except RunStateError as exc:
        raise RunStateError(f"{exc}; rerun with --force to start the run over") from None


def _check_state(folder: RunFolder, state: dict, epochs: int) -> None:
    """Refuse a state.json that is incomplete or names files outside the run's checkpoint folder
    (checkpoints are pickles: they are loaded only from the run folder)."""
    def bad(what):
        raise RunStateError(f"resume state {folder.state} is not valid ({what}); rerun with --force to start the "
                            f"run over")

    epoch = state.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        bad(f"epoch {epoch!r} is not between 1 and {epochs}")
    history = state.get("history")
    if not isinstance(history, dict) or not isinstance(history.get("epochs"), list) or \
            len(history["epochs"]) != epoch or not isinstance(history.get("iters"), list):
        bad("its history does not match its epoch")
    inside = folder.checkpoints.resolve()
    for key in ("params", "opt"):
        name = state.get(key)
        if not isinstance(name, str) or not name or Path(name).is_absolute() or \
                inside not in (folder.root / name).resolve().parents:
            bad(f"{key} {name!r} is not a file in {folder.checkpoints}")


def _plan_run(cfg: dict, model: str, seed: int, folder: RunFolder, resume: bool, force: bool):
    """('start' | 'resume' | 'skip', resume state or None) for one run, or RunStateError."""
    if force or not folder.history.exists():
        return "start", None
    history = _read_run_json(folder.history, "run history")
    if folder.config.exists():
        import yaml

        try:
            saved = yaml.safe_load(folder.config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            saved = {}
        diffs = _config_differences(saved, run_config(cfg, model, seed))
        if diffs:
            raise RunStateError(f"{folder.root} was run with a different config ({'; '.join(diffs[:3])}); "
                                f"use another output_dir/experiment, or --force to overwrite it")
    status = history.get("status")
    if status == "finished":
        return "skip", None
    if status == "failed":  # resuming would replay the same steps into the same failure
        lr = cfg["optimizer"]["lr"]
        raise RunStateError(f"{folder.root} failed ({history.get('reason', 'no reason recorded')}); resuming would "
                            f"repeat it: rerun with --force and a lower learning rate (e.g. -o optimizer.lr={lr / 10:g})")
    if not folder.state.exists():
        return "start", None  # stopped during its first epoch: nothing worth keeping
    state = _read_run_json(folder.state, "resume state")
    _check_state(folder, state, cfg["train"]["epochs"])
    if not resume:
        raise RunStateError(f"{folder.root} stopped after epoch {state.get('epoch')} of {cfg['train']['epochs']}: "
                            f"rerun with --resume to continue it, or --force to start it over")
    return "resume", state


def _finish_cleanup(folder: RunFolder) -> None:
    """A finished run whose clean-up was interrupted (killed after history.json said finished)
    still has its resume checkpoint or temporary files: remove them, final.* supersede them."""
    leftovers = remove_temp_files(folder.root)
    if folder.state.exists() or folder.checkpoints.exists():
        leftovers.append(folder.state)
        folder.state.unlink(missing_ok=True)
        shutil.rmtree(folder.checkpoints, ignore_errors=True)
    if leftovers:
        logger.info("%s: removed %s, left by an interrupted clean-up", folder.root,
                    ", ".join(p.name for p in leftovers))


def run_experiment(cfg: dict, resume: bool = False, force: bool = False) -> list[dict]:
    """Train every (model, seed) of ``cfg``; returns one summary per run."""
    ctx = _Distributed()
    if ctx.world > 1:
        dist.init_parallel_env()
    device = select_device(cfg["device"])
    schedule = cfg["schedule"]
    if schedule["name"] == "cosine" and schedule["warmup_epochs"] >= cfg["train"]["epochs"]:  # before any write
        raise ConfigError(f"schedule.warmup_epochs: {schedule['warmup_epochs']} must be smaller than train.epochs "
                          f"({cfg['train']['epochs']})")
    runs = [(m, s) for m in cfg["models"] for s in cfg["seeds"]]
    plans = {}
    for model, seed in runs:
        folder = run_folder(cfg, model, seed)
        plans[(model, seed)] = (folder, *_plan_run(cfg, model, seed, folder, resume, force))
    if resume and not any(p[1] == "resume" for p in plans.values()):
        raise RunStateError(f"--resume: no run under {Path(cfg['output_dir']) / cfg['experiment']} has a saved "
                            f"state to continue; drop --resume to start or skip runs as needed")
    todo = [r for r in runs if plans[r][1] != "skip"]
    logger.info("experiment %s: %d runs (%d to train, %d finished already) on %s, %d process(es)",
                cfg["experiment"], len(runs), len(todo), len(runs) - len(todo), device, ctx.world)
    splits = {}
    if todo:
        path = D.locate_cifar10(cfg["data"]["data_file"])
        splits = {s: D.read_cifar10(path, s) for s in ("train", "test")}
        logger.info("CIFAR-10 from %s: %d train / %d test images", path, len(splits["train"][0]), len(splits["test"][0]))
        batch = cfg["train"]["batch_size"]
        if len(splits["train"][0]) < batch * ctx.world:  # checked before any run folder is touched
            raise ConfigError(f"train.batch_size: {batch} x {ctx.world} process(es) exceeds the "
                              f"{len(splits['train'][0])} training images; use a smaller batch")
    summaries = []
    start = time.time()
    for i, (model, seed) in enumerate(runs, start=1):
        folder, action, state = plans[(model, seed)]
        label = f"[{i}/{len(runs)} {model} seed {seed}]"
        if action == "skip":
            history = read_json(folder.history, "run history")
            logger.info("%s finished already (best val acc %.4f); skipped (--force reruns it)", label,
                        history.get("best_val_acc") or 0.0)
            if ctx.main:
                _finish_cleanup(folder)
        else:
            try:
                if ctx.main:
                    if action == "start" and folder.root.exists():
                        shutil.rmtree(folder.root)
                    folder.root.mkdir(parents=True, exist_ok=True)
                    if action == "resume":
                        for tmp in remove_temp_files(folder.root):
                            logger.info("%s removed %s, left by an interrupted write", label, tmp.name)
                if ctx.world > 1:
                    dist.barrier()
                run_log = _RunLog(folder.log, ctx.main)
            except OSError as exc:
                raise write_error(exc.filename or folder.root, exc, fix=_WRITE_FIX) from None
            try:
                history = train_run(cfg, model, seed, folder, splits, resume_state=state, device=device, label=label)
            except OutputError as exc:  # disk full or the like, mid-run: the last saved epoch is intact
                raise OutputError(exc.path, exc.reason, _WRITE_FIX) from None
            finally:
                run_log.close()
        summaries.append({"model": model, "seed": seed, "status": history["status"],
                          "best_val_acc": history.get("best_val_acc"), "folder": str(folder.root)})
    logger.info("experiment %s done in %s", cfg["experiment"], _hms(time.time() - start))
    return summaries


__all__ = ["BaNetError", "RunFolder", "evaluate", "run_experiment", "run_folder", "train_epoch", "train_run"]
