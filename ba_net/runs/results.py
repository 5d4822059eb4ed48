"""An experiment's runs as tools/compare.py reads them: :class:`Run` (one run folder's
history.json and config.yaml, with the accuracies compare reports), :func:`collect_runs` (every
``<model>/seed<N>`` of an experiment folder) and :func:`by_model` (grouped, baseline first). The
run folder itself (paths, history checks, checkpoints) is :mod:`ba_net.runs.folder`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ba_net.errors import RunStateError
from ba_net.runs.folder import COMPARE_FIX, RunFolder, read_history, read_run_config


@dataclass
class Run:
    """One (model, seed) run folder as its history.json and config.yaml describe it."""

    model: str
    seed: int
    folder: Path
    status: str
    reason: Optional[str]
    epochs: list
    epochs_planned: Optional[int]
    device: Optional[str]
    config: dict = field(default_factory=dict)
    classes: tuple = ()  # the class names history.json records (empty for runs from before the record)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def best_val_acc(self) -> Optional[float]:
        return max((e["val_acc"] for e in self.epochs), default=None)

    @property
    def held_out(self) -> bool:
        """Whether the run picked its best epoch on a validation set held out of train
        (``data.val_split``); its epochs then also carry ``test_acc``."""
        return any("test_acc" in e for e in self.epochs)

    @property
    def test_acc(self) -> Optional[float]:
        """The accuracy a held-out run reports: on the test split at its best validation epoch (the
        first of equals, the epoch of best.pdparams); None without a hold-out."""
        if not self.held_out:
            return None
        best = max(range(len(self.epochs)), key=lambda i: (self.epochs[i]["val_acc"], -i))
        return self.epochs[best].get("test_acc")

    @property
    def ema_acc(self) -> Optional[float]:
        """The weight average's accuracy (``train.ema_decay``) by the rule of :attr:`test_acc`:
        test accuracy at the average's best held-out epoch, else its best validation accuracy;
        None without an average."""
        epochs = [e for e in self.epochs if "ema_val_acc" in e]
        if not epochs:
            return None
        best = max(range(len(epochs)), key=lambda i: (epochs[i]["ema_val_acc"], -i))
        return epochs[best].get("ema_test_acc", epochs[best]["ema_val_acc"])

    @property
    def best_test_acc(self) -> Optional[float]:
        """The best test accuracy of any epoch (the notebook's figure: the epoch picked on test)."""
        return max((e["test_acc"] for e in self.epochs if "test_acc" in e), default=None)

    @property
    def final_val_acc(self) -> Optional[float]:
        return self.epochs[-1]["val_acc"] if self.epochs else None

    @property
    def final_train_acc(self) -> Optional[float]:
        return self.epochs[-1]["train_acc"] if self.epochs else None

    @property
    def wall_time_s(self) -> float:
        return float(sum(e.get("time_s") or 0.0 for e in self.epochs))

    def weights(self) -> Optional[Path]:
        """best.pdparams if present, else final.pdparams, else None."""
        for tag in ("best", "final"):
            path = RunFolder(self.folder).weights(tag)[0]
            if path.is_file():
                return path
        return None

    def describe(self) -> dict:
        return {"model": self.model, "seed": self.seed, "status": self.status, "reason": self.reason,
                "included": self.finished, "epochs_done": len(self.epochs), "epochs_planned": self.epochs_planned,
                "best_val_acc": self.best_val_acc, "final_val_acc": self.final_val_acc,
                "test_acc": self.test_acc, "best_test_acc": self.best_test_acc, "ema_acc": self.ema_acc,
                "final_train_acc": self.final_train_acc, "wall_time_s": round(self.wall_time_s, 3),
                "device": self.device, "folder": str(self.folder)}


def read_run(root: Path, model: str, seed: int) -> Run:
    """The run in folder ``root`` (``<model>/seed<seed>``)."""
    folder = RunFolder(root)
    h = read_history(folder, model, seed, COMPARE_FIX)
    return Run(model, seed, root, h["status"], h.get("reason"), h["epochs"], h.get("epochs_planned"),
               h.get("device"), read_run_config(folder, COMPARE_FIX), tuple(h.get("classes") or ()))


def collect_runs(experiment_dir) -> list:
    """Every run under ``experiment_dir`` (``<model>/seed<N>/history.json``), sorted by model and
    seed. A missing folder, a folder without runs and a corrupt history are RunStateErrors."""
    root = Path(experiment_dir)
    if not root.is_dir():
        raise RunStateError(f"experiment folder {root} does not exist; pass <output_dir>/<experiment> as written by tools/train.py")
    runs = []
    for hist in sorted(root.glob("*/seed*/history.json")):
        match = re.fullmatch(r"seed(-?\d+)", hist.parent.name)
        if match:
            runs.append(read_run(hist.parent, hist.parent.parent.name, int(match.group(1))))
    if not runs:
        nested = sorted({p.parents[2].name for p in root.glob("*/*/seed*/history.json")})
        hint = f"; it holds the experiments {', '.join(nested)}: pass one of them" if nested else ""
        hint = hint or "; pass the <output_dir>/<experiment> folder that tools/train.py wrote"
        raise RunStateError(f"no runs in {root} (expected <model>/seed<N>/history.json){hint}")
    runs.sort(key=lambda r: (r.model, r.seed))
    return runs


def by_model(runs, baseline: str) -> dict:
    """{model: [runs]} with the baseline first, then models by name."""
    out = {}
    for run in sorted(runs, key=lambda r: (r.model != baseline, r.model, r.seed)):
        out.setdefault(run.model, []).append(run)
    return out


__all__ = ["Run", "by_model", "collect_runs", "read_run"]
