"""The training engine: one run (:func:`train_run`) and the ablation around it
(:func:`run_experiment`); the loops themselves are :mod:`ba_net.train.loops`.

``run_experiment(cfg)`` trains every (model, seed) of a config into
``<output_dir>/<experiment>/<model>/seed<seed>/``; :mod:`ba_net.runs.folder` describes the files of a run
and decides whether a run starts, resumes or is skipped.
A finished run is skipped when the ablation runs again; a run that stopped mid-way is continued
with ``resume=True`` from its last completed epoch, bit-for-bit as if it had never stopped (the
seed fixes the initial weights, the data order, each image's augmentation and the dropout masks
of every epoch). Under ``paddle.distributed.launch`` metrics are reduced across ranks and only
rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Optional

import numpy as np
import paddle
import paddle.distributed as dist

from ba_net.accel import paths as accel
from ba_net.train import amp

from ba_net.train import dashboard
from ba_net.data import loading
from ba_net.runs import folder as runs
from ba_net import data as D
from ba_net.files import atomic_write_json, atomic_write_text, save_paddle, write_error
from ba_net.config import dump_config
from ba_net.train.distributed import Distributed, per_process_batch, sync_batch_norm, sync_bn_wanted
from ba_net.train.ema import WeightEMA
from ba_net.errors import ConfigError, OutputError, RunStateError
from ba_net.runs.lock import RunLock
from ba_net.runs.lock import describe as describe_owner
from ba_net.train.loops import evaluate, train_epoch
from ba_net.train.loss import LabelSmoothingCrossEntropy
from ba_net.models import build_model
from ba_net.train.optim import build_optimizer, build_scheduler, check_schedule
from ba_net.runtime import hms
from ba_net.runtime import select_device
from ba_net.runs.folder import RunFolder, run_config

logger = logging.getLogger(__name__)

_WRITE_FIX = ("free disk space or make the folder writable, or choose another output_dir; a run stopped this way "
              "continues with --resume")


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2**31 - 1))


# ------------------------------------------------------------------------------------ one run

def _too_few_images(cfg: dict, n_train: int) -> ConfigError:
    return ConfigError(f"train.batch_size: {cfg['train']['batch_size']} exceeds the {n_train} training images; "
                       f"use a smaller batch")


class _Training:
    """Everything one (model, seed) run trains with, and its history; rank 0 writes the run folder."""

    def __init__(self, cfg: dict, model_name: str, seed: int, folder: RunFolder, splits: dict, device: str,
                 label: str):
        self.cfg, self.model_name, self.seed, self.folder, self.label = cfg, model_name, seed, folder, label
        self.ctx, t = Distributed(), cfg["train"]
        paddle.seed(seed)
        self.classes = tuple(splits["classes"])  # data.dataset's, in label order
        self.model = sync_batch_norm(build_model(model_name, num_classes=len(self.classes), **cfg["model_kwargs"]),
                                     sync_bn_wanted(t["sync_bn"], self.ctx.world, device))
        batch, data = per_process_batch(cfg, self.ctx.world), cfg["data"]
        preset = D.preset(data["transforms"])
        self.train_loader = loading.build_loader(
            *splits["train"], preset.train, batch, seed=seed, train=True, num_workers=data["num_workers"],
            rank=self.ctx.rank, world=self.ctx.world, max_steps=t["max_steps_per_epoch"], image_size=preset.image_size)
        eval_workers = data["num_workers"] if data["eval_num_workers"] is None else data["eval_num_workers"]
        self.val_loader, self.test_loader = (
            loading.build_loader(*splits[s], preset.eval, batch, train=False, num_workers=eval_workers,
                                 rank=self.ctx.rank, world=self.ctx.world, image_size=preset.image_size)
            if s in splits else None for s in ("val", "test"))
        if self.val_loader is None:  # no hold-out: the best epoch is picked on the test split (the notebook's way)
            self.val_loader, self.test_loader = self.test_loader, None
        if len(self.train_loader) == 0:
            raise _too_few_images(cfg, len(splits["train"][0]))
        self.scheduler = build_scheduler(cfg, len(self.train_loader))
        self.optimizer = build_optimizer(cfg, self.model.parameters(), self.scheduler)
        self.loss_fn = LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"])
        self.scaler = amp.grad_scaler(t["amp"], device)
        self.ema = WeightEMA(self.model, t["ema_decay"]) if t["ema_decay"] else None
        self.history = runs.new_history(cfg, model_name, seed, self.ctx.world, device)
        self.history["classes"] = list(self.classes)  # so compare, export and predict name them without the data
        self.writer = self.fast = None
        self.train_model = self.model

    def resume(self, state: Optional[dict]) -> int:
        """Load the resume ``state`` (if any); returns the first epoch to train."""
        if state is None:
            return 1
        saved_world = state.get("history", {}).get("world_size", 1)
        if "global_batch" not in state.get("history", {}) and saved_world != 1:  # from before the global batch
            raise RunStateError(f"{self.folder.root} was trained with a batch of train.batch_size per process on "
                                f"{saved_world} processes; it cannot resume under global-batch semantics: rerun it "
                                f"with --force")
        self.history = runs.load_resume_state(self.folder, state, self.model, self.optimizer,
                                              self.cfg["optimizer"]["name"])
        amp.load_scaler_state(self.scaler, state.get("scaler"), self.label)
        if self.ema is not None:
            try:
                self.ema.set_state_dict(runs.load_resume_ema(self.folder, state))
            except (KeyError, ValueError) as exc:
                raise RunStateError(f"{self.folder.root}: the checkpoint's weight average does not fit the model "
                                    f"({exc}); {runs.TRAIN_FIX}") from None
        if saved_world != self.ctx.world:  # same global batch, sample order and iteration numbers
            logger.info("%s resuming on %d process(es) after %d: the global batch stays %d", self.label,
                        self.ctx.world, saved_world, self.cfg["train"]["batch_size"])
            self.history.update(world_size=self.ctx.world, global_batch=self.cfg["train"]["batch_size"],
                                batch_per_process=per_process_batch(self.cfg, self.ctx.world))
        logger.info("%s resuming after epoch %d (best val acc %.4f)", self.label, state["epoch"],
                    self.history["best_val_acc"] or 0.0)
        return state["epoch"] + 1

    def start(self) -> None:
        """The step (data parallel, fast path or dygraph), then config.yaml, history.json and the
        VisualDL log (rank 0)."""
        self.saved_iters = len(self.history["iters"])  # loss records as of the last saved epoch
        cfg = self.cfg
        if self.ctx.world > 1:
            self.train_model = paddle.DataParallel(self.model)
        if self.ema is not None:  # the static program's weights reach the model once per epoch, not per step
            logger.info("training path: dygraph (train.ema_decay averages the weights after every step)")
        else:
            self.fast = accel.prepare_training(cfg, self.model_name, self.model, self.optimizer,
                                               lambda p: build_optimizer(cfg, p, self.scheduler), self.loss_fn,
                                               device=self.history["device"], world=self.ctx.world,
                                               num_classes=len(self.classes))  # None: dygraph
        if self.ctx.main:
            atomic_write_text(self.folder.config, dump_config(run_config(cfg, self.model_name, self.seed)))
            atomic_write_json(self.folder.history, self.history)
            try:
                self.writer = dashboard.open_writer(self.folder.vdl, self.history,
                                                    dashboard.run_hparams(cfg, self.model_name, self.seed))
            except OSError as exc:
                raise write_error(exc.filename or self.folder.vdl, exc, fix=_WRITE_FIX) from None
            self.probe_batch = dashboard.fixed_batch(self.val_loader, self.classes)  # dashboard's

    def epoch(self, epoch: int, iter_offset: int):
        """Train and validate one epoch: (its record, iterations), or (None, why it failed)."""
        t = self.cfg["train"]
        t0 = time.time()
        paddle.seed(_derived_seed(self.seed, epoch, self.ctx.rank))  # dropout masks of this epoch
        self.train_loader.batch_sampler.set_epoch(epoch)
        lr = self.optimizer.get_lr()
        try:
            train_loss, train_acc, steps = train_epoch(
                self.train_model, self.train_loader, self.loss_fn, self.optimizer, self.scheduler, epoch=epoch,
                seed=self.seed, mixup_alpha=self.cfg["data"]["mixup_alpha"], log_every=t["log_every"],
                iter_offset=iter_offset, iters=self.history["iters"], ctx=self.ctx, scaler=self.scaler,
                label=f"{self.label} epoch {epoch}/{t['epochs']}", step_fn=self.fast, ema=self.ema,
                num_classes=len(self.classes))
        except FloatingPointError as exc:
            return None, str(exc)
        if self.fast is not None:
            self.fast.sync()  # trained state -> model and optimizer, for evaluation and checkpoints
        self.ctx.average_buffers(self.model)
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "lr": lr,
                  **self._validate(self.fast.eval_model if self.fast else self.train_model)}
        if not math.isfinite(record["val_loss"]):
            return None, f"non-finite validation loss {record['val_loss']} at epoch {epoch}"
        if self.ema is not None:
            with self.ema.applied() as averaged:
                record.update(self._validate(averaged, "ema_"))
        return {**record, "time_s": round(time.time() - t0, 3)}, steps

    def _validate(self, model, prefix: str = "") -> dict:
        """``<prefix>val_loss`` / ``_acc`` / ``_acc5`` (top-5) and, with a hold-out,
        ``<prefix>test_loss`` / ``_acc`` / ``_acc5`` (the test split is then reported, never
        selected on)."""
        out = {}
        for split, loader in (("val", self.val_loader), ("test", self.test_loader)):
            if loader is not None:
                result = evaluate(model, loader, self.loss_fn, self.ctx)
                out[f"{prefix}{split}_loss"], out[f"{prefix}{split}_acc"] = result  # unpacks as (loss, acc)
                if getattr(result, "acc5", None) is not None:  # a plain (loss, acc) has none
                    out[f"{prefix}{split}_acc5"] = result.acc5
        return out

    def record(self, record: dict, new_iters: list) -> None:
        """Add the epoch to the history; rank 0 logs it to VisualDL and saves best weights, the
        resume state and history.json."""
        h = self.history
        h["epochs"].append(record)
        self.saved_iters = len(h["iters"])
        improved = h["best_val_acc"] is None or record["val_acc"] > h["best_val_acc"]
        if improved:
            h["best_val_acc"], h["best_epoch"] = record["val_acc"], record["epoch"]
        test = f"  test acc {record['test_acc']:.4f}" if "test_acc" in record else ""
        ema_improved = "ema_val_acc" in record and record["ema_val_acc"] > (h.get("best_ema_val_acc") or -1.0)
        if ema_improved:
            h["best_ema_val_acc"], h["best_ema_epoch"] = record["ema_val_acc"], record["epoch"]
        test += f"  ema val acc {record['ema_val_acc']:.4f}" if "ema_val_acc" in record else ""
        logger.info("%s epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f%s%s  %.1fs", self.label,
                    record["epoch"], self.cfg["train"]["epochs"], record["train_loss"], record["train_acc"],
                    record["val_loss"], record["val_acc"], test, " (best)" if improved else "", record["time_s"])
        if self.ctx.main:
            for it in new_iters:
                dashboard.log_iter(self.writer, it)
            dashboard.log_epoch(self.writer, record)
            dashboard.log_probe(self.writer, self.model, self.probe_batch, record["epoch"])
            if improved:
                runs.save_weights(self.folder, "best", self.model, self.optimizer)
            if ema_improved:
                save_paddle(self.folder.root / "best_ema.pdparams", self.ema.weights())
            runs.save_resume_state(self.folder, record["epoch"], self.model, self.optimizer, h,
                                   amp.scaler_state(self.scaler), self.ema.state_dict() if self.ema else None)
            atomic_write_json(self.folder.history, h)

    def finish(self) -> dict:
        """Mark the run finished; rank 0 saves final.*, the hparam/* metrics and history.json, and
        drops the resume checkpoint."""
        self.history["status"] = "finished"
        if self.ctx.main:
            runs.save_weights(self.folder, "final", self.model, self.optimizer)
            if self.ema is not None:
                save_paddle(self.folder.root / "final_ema.pdparams", self.ema.weights())
            dashboard.log_final(self.writer, self.history)
            atomic_write_json(self.folder.history, self.history)
            runs.drop_resume_state(self.folder)  # final.* supersede the resume checkpoint
        return self.history

    def fail(self, reason: str) -> dict:
        """Mark the run failed (reason in history.json and the log); the files of the last completed
        epoch (state.json, its checkpoint, best.*) are left as they are."""
        self.history["status"], self.history["reason"] = "failed", reason
        logger.error("%s failed: %s; the last good checkpoint is kept", self.label, reason)
        if self.ctx.main:
            atomic_write_json(self.folder.history, self.history)
        return self.history

    def interrupt(self, exc: KeyboardInterrupt) -> None:
        """Ctrl-C or SIGTERM: rank 0 marks the run interrupted in history.json (the epochs it holds
        are those of the last checkpoint; ``--resume`` continues from there)."""
        self.history["status"] = "interrupted"
        self.history["reason"] = "SIGTERM" if type(exc).__name__ == "Terminated" else "Ctrl-C"
        del self.history["iters"][self.saved_iters:]  # the interrupted epoch's loss records go with it
        logger.warning("%s interrupted (%s) in epoch %d: the finished epochs are saved", self.label,
                       self.history["reason"], len(self.history["epochs"]) + 1)
        if self.ctx.main and self.folder.history.exists():
            atomic_write_json(self.folder.history, self.history)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        for loader in (self.train_loader, self.val_loader, self.test_loader):
            if loader is not None:
                loader.close()  # their worker processes end with the run


def train_run(cfg: dict, model_name: str, seed: int, folder: RunFolder, splits: dict, *,
              resume_state: Optional[dict] = None, device: str = "cpu", label: str = "") -> dict:
    """Train one (model, seed); returns its history (status finished or failed)."""
    # Parameter and optimizer-state names come from Paddle's global name counter; a fresh
    # counter per run makes them identical in every process, so resume state always matches.
    with paddle.utils.unique_name.guard():
        run = _Training(cfg, model_name, seed, folder, splits, device, label)
        start_epoch = run.resume(resume_state)
        try:
            run.start()
            iter_offset = (start_epoch - 1) * len(run.train_loader)
            for epoch in range(start_epoch, cfg["train"]["epochs"] + 1):
                n_iters_before = len(run.history["iters"])
                record, steps = run.epoch(epoch, iter_offset)
                if record is None:
                    return run.fail(steps)
                iter_offset += steps
                run.record(record, run.history["iters"][n_iters_before:])
            return run.finish()
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through ba_net.cli
            run.interrupt(exc)
            raise
        finally:
            run.close()


# ------------------------------------------------------------------------------- the ablation

def _read_splits(cfg: dict) -> dict:
    splits = D.load_splits(cfg["data"])
    if len(splits["train"][0]) < cfg["train"]["batch_size"]:  # checked before any run folder is touched
        raise _too_few_images(cfg, len(splits["train"][0]))
    return splits


def _locked(folder: RunFolder, owner: Optional[dict], label: str) -> dict:
    logger.warning("%s is being trained by another process (%s): skipped here; run the command again once "
                   "it is done to pick up what is left", label, describe_owner(owner or {}))
    return {"status": "locked", "best_val_acc": None}


def _run_one(cfg: dict, model: str, seed: int, plan: tuple, splits: dict, ctx: Distributed, device: str,
             label: str, resume: bool, force: bool) -> dict:
    """Skip, start or resume one run as planned, holding its lock while it trains; returns its
    history (status 'locked' when another process trains it)."""
    folder, action, state = plan
    if action == "skip":
        return _skip(folder, model, seed, ctx, label)
    with contextlib.ExitStack() as stack:
        lock = None
        if ctx.main and action != "locked":
            try:
                lock = stack.enter_context(RunLock(folder.root))
            except OSError as exc:  # e.g. output_dir under a file
                raise write_error(exc.filename or folder.root, exc, fix=_WRITE_FIX) from None
        held = ctx.main and (action == "locked" or not lock.acquired)
        if ctx.sum([1.0 if held else 0.0])[0] > 0:  # every rank learns rank 0's answer
            return _locked(folder, state if action == "locked" else (lock.owner if lock else None), label)
        # the folder may have moved on since planning (another process finished or stopped it)
        action, state = runs.plan_run(cfg, model, seed, folder, resume, force)
        if action == "skip":
            return _skip(folder, model, seed, ctx, label)
        return _train_locked(cfg, model, seed, folder, action, state, splits, ctx, device, label)


def _skip(folder: RunFolder, model: str, seed: int, ctx: Distributed, label: str) -> dict:
    history = runs.read_history(folder, model, seed, runs.TRAIN_FIX)
    logger.info("%s finished already (best val acc %.4f); skipped (--force reruns it)", label,
                history.get("best_val_acc") or 0.0)
    if ctx.main:
        runs.finish_cleanup(folder)
    return history


def _train_locked(cfg, model, seed, folder, action, state, splits, ctx, device, label) -> dict:
    try:
        if ctx.main:
            runs.prepare_folder(folder, action, label)
        if ctx.world > 1:
            dist.barrier()
        run_log = runs.RunLog(folder.log, ctx.main)
    except OSError as exc:
        raise write_error(exc.filename or folder.root, exc, fix=_WRITE_FIX) from None
    try:
        return train_run(cfg, model, seed, folder, splits, resume_state=state, device=device, label=label)
    except OutputError as exc:  # disk full or the like, mid-run: the last saved epoch is intact
        raise OutputError(exc.path, exc.reason, _WRITE_FIX) from None
    finally:
        run_log.close()


def run_experiment(cfg: dict, resume: bool = False, force: bool = False) -> list[dict]:
    """Train every (model, seed) of ``cfg``; returns one summary per run."""
    ctx = Distributed()
    if ctx.world > 1:
        dist.init_parallel_env()
    device = select_device(cfg["device"])
    check_schedule(cfg)  # before any write
    D.check_models_fit(cfg)  # each model is built for the preset's image size (AlexNet 128 px, cifar 32 px)
    per_process_batch(cfg, ctx.world)
    sync_bn_wanted(cfg["train"]["sync_bn"], ctx.world, device)  # refused before any write, or warned once
    plans = runs.plan_experiment(cfg, resume, force, check_locks=ctx.main)
    todo = [r for r, p in plans.items() if p[1] in ("start", "resume")]
    locked = sum(p[1] == "locked" for p in plans.values())
    logger.info("experiment %s: %d runs (%d to train, %d finished already, %d trained by another process) on %s, "
                "%d process(es)", cfg["experiment"], len(plans), len(todo), len(plans) - len(todo) - locked, locked,
                device, ctx.world)
    splits = _read_splits(cfg) if todo else {}
    summaries = []
    start = time.time()
    for i, ((model, seed), plan) in enumerate(plans.items(), start=1):
        label = f"[{i}/{len(plans)} {model} seed {seed}]"
        history = _run_one(cfg, model, seed, plan, splits, ctx, device, label, resume, force)
        summaries.append({"model": model, "seed": seed, "status": history["status"],
                          "best_val_acc": history.get("best_val_acc"), "folder": str(plan[0].root)})
    logger.info("experiment %s done in %s", cfg["experiment"], hms(time.time() - start))
    return summaries


__all__ = ["run_experiment", "train_run"]
