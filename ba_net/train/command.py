"""tools/train.py's command: load the config, train the ablation (:func:`ba_net.train.engine.run_experiment`),
say which runs did not finish and what to do; or list the models (``--list-models``)."""
from __future__ import annotations

import argparse
import logging

import paddle

from ba_net.config import load_config
from ba_net.errors import ConfigError
from ba_net.models import build_model, list_models
from ba_net.models.complexity import count_params
from ba_net.train.engine import run_experiment

logger = logging.getLogger(__name__)

LISTED_CLASSES = 10  # --list-models counts every model with a 10-class head (CIFAR-10's)


def models_table() -> str:
    """A Markdown table of every model: name, trainable parameters with a 10-class head, input."""
    rows = ["| model | trainable parameters (10 classes) | input |", "|---|---:|---|"]
    for name in list_models():
        with paddle.utils.unique_name.guard(), paddle.LazyGuard():  # shapes only: no weights drawn
            model = build_model(name, num_classes=LISTED_CLASSES)
        size = getattr(model, "input_size", None)
        shape = getattr(model, "input_shape", None)
        what = f"{size} x {size} px" if isinstance(size, int) else (" x ".join(map(str, shape)) if shape else "")
        rows.append(f"| {name} | {count_params(model)['trainable']:,} | {what} |")
    return "\n".join(rows)


def train_command(args: argparse.Namespace) -> int:
    """0 when every run finished (or is trained by another process), 1 when one failed or stopped."""
    if args.list_models:
        print(models_table())
        return 0
    if not args.config:
        raise ConfigError("no config given: pass -c experiments/<name>.yaml (or --list-models)")
    if args.resume and args.force:
        raise ConfigError("--resume and --force contradict each other; pass one")
    cfg = load_config(args.config, tuple(args.override))
    summaries = run_experiment(cfg, resume=args.resume, force=args.force)
    failed = [s for s in summaries if s["status"] not in ("finished", "locked")]  # locked: another process trains it
    for s in failed:
        logger.error("run %s seed %s %s (see %s/history.json)", s["model"], s["seed"], s["status"], s["folder"])
    if any(s["status"] == "failed" for s in summaries):
        logger.error("a non-finite loss usually means the learning rate is too high: rerun with --force and a lower "
                     "optimizer.lr (e.g. -o optimizer.lr=%g)", cfg["optimizer"]["lr"] / 10)
    return 1 if failed else 0


__all__ = ["models_table", "train_command"]
