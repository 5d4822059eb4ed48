"""One run folder, ``<output_dir>/<experiment>/<model>/seed<N>/``, as every reader sees it:
:class:`Run` (its history.json and config.yaml, and what follows from them: status, accuracies,
class names, data preset, model, weights). Two ways to get one: :func:`open_run`, strict, for
export and predict (a finished run or a one-line error), and :func:`read_run` /
:func:`collect_runs`, lenient, for compare (every ``<model>/seed<N>`` of an experiment folder,
running and failed runs included); :func:`by_model` groups them, baseline first, and
:func:`representative` picks the run that speaks for a group. The run folder's files, the
history checks and the weight loading are :mod:`ba_net.runs.folder`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ba_net.errors import RunStateError
from ba_net.runs.folder import COMPARE_FIX, RunFolder, load_weights, read_history, read_run_config

WEIGHT_TAGS = ("best", "final")
RUN_FIX = "pass a run folder <output_dir>/<experiment>/<model>/seed<N> written by tools/train.py"
OPEN_FIX = "rerun it with tools/train.py --force"  # what open_run's errors about a corrupt run advise


@dataclass
class Run:
    """One (model, seed) run folder as its history.json (checked) and config.yaml describe it."""

    model: str
    seed: int
    folder: Path
    history: dict
    config: dict = field(default_factory=dict)  # {} for a run without config.yaml

    # ------------------------------------------------------------------ the history
    @property
    def status(self) -> str:
        return self.history["status"]

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def reason(self) -> Optional[str]:
        return self.history.get("reason")

    @property
    def epochs(self) -> list:
        return self.history["epochs"]

    @property
    def epochs_planned(self) -> Optional[int]:
        return self.history.get("epochs_planned")

    @property
    def device(self) -> Optional[str]:
        return self.history.get("device")

    @property
    def experiment(self) -> str:
        """The experiment the run belongs to: its history's, else its config's, else the folder's."""
        return self.history.get("experiment") or self.config.get("experiment") or self.folder.parent.parent.name

    # --------------------------------------------------------------- the accuracies
    @property
    def best_val_acc(self) -> Optional[float]:
        return max((e["val_acc"] for e in self.epochs), default=None)

    @property
    def held_out(self) -> bool:
        """Whether the run picked its best epoch on a validation set held out of train
        (``data.val_split``); its epochs then also carry ``test_acc``."""
        return any("test_acc" in e for e in self.epochs)

    @property
    def best_epoch(self) -> Optional[dict]:
        """The epoch record of the highest validation accuracy, the first of equals (the epoch of
        best.pdparams); None before the first epoch."""
        if not self.epochs:
            return None
        return self.epochs[max(range(len(self.epochs)), key=lambda i: (self.epochs[i]["val_acc"], -i))]

    @property
    def test_acc(self) -> Optional[float]:
        """The accuracy a held-out run reports: on the test split at its best validation epoch (the
        first of equals, the epoch of best.pdparams); None without a hold-out."""
        if not self.held_out:
            return None
        return self.best_epoch.get("test_acc")

    @property
    def acc5(self) -> Optional[float]:
        """Top-5 accuracy of the epoch the compared top-1 comes from (:attr:`best_epoch`): its
        ``test_acc5`` beside :attr:`test_acc` with a hold-out, else its ``val_acc5`` beside
        :attr:`best_val_acc`. None for a history written before top-5 was recorded."""
        epoch = self.best_epoch
        if epoch is None:
            return None
        return epoch.get("test_acc5" if self.held_out else "val_acc5")

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

    # ------------------------------------------------------------------- the data
    @property
    def dataset(self) -> str:
        """The data set the run trained on (``data.dataset``; cifar10 when unset)."""
        return (self.config.get("data") or {}).get("dataset") or "cifar10"

    @property
    def data_file(self) -> Optional[str]:
        """Where the run read its data, as its config names it: the tarball (``data.data_file``),
        or for an image folder its root (``data.data_dir``: export and predict read its val/)."""
        data = self.config.get("data") or {}
        return data.get("data_dir") if self.dataset == "imagefolder" else data.get("data_file")

    @property
    def classes(self) -> tuple:
        """The class names the run trained with (:func:`ba_net.data.datasets.run_classes`: its
        history.json's, else CIFAR-10's for runs from before the record)."""
        from ba_net.data.datasets import run_classes

        return run_classes(self.history, self.config)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def preset(self):
        """The data preset the run trained with (``data.transforms``; notebook when unset), a
        :class:`ba_net.data.Preset`: its ``eval`` transform prepares the run's test images."""
        from ba_net import data as D

        return D.preset((self.config.get("data") or {}).get("transforms") or "notebook")

    # ------------------------------------------------------------------ the model
    @property
    def model_kwargs(self) -> dict:
        """The keywords the run built its model with (``model_kwargs``; num_classes apart)."""
        return dict(self.config.get("model_kwargs") or {})

    def input_size(self, model=None) -> int:
        """The image side the run's model takes: the model's own (``model.input_size``; read from
        its structure when ``model`` is not given), else its preset's."""
        from ba_net.data import model_input_size
        from ba_net.models import build_structure

        return model_input_size(model if model is not None else self._build(build_structure)) or self.preset.image_size

    @property
    def has_weights(self) -> bool:
        """Whether the run saved best.pdparams or final.pdparams."""
        return any(RunFolder(self.folder).weights(tag)[0].is_file() for tag in WEIGHT_TAGS)

    def weights(self, tag: Optional[str] = None) -> Path:
        """``<tag>.pdparams`` of the run (tag best | final; None: best if the run saved it, else
        final); a one-line RunStateError for an unknown tag or a missing file."""
        if tag is None:
            tag = next((t for t in WEIGHT_TAGS if RunFolder(self.folder).weights(t)[0].is_file()), None)
            if tag is None:
                raise RunStateError(f"{self.folder} has no best.pdparams or final.pdparams; rerun the run")
        if tag not in WEIGHT_TAGS:
            raise RunStateError(f"unknown weights {tag!r}; choose one of {', '.join(WEIGHT_TAGS)}")
        path = RunFolder(self.folder).weights(tag)[0]
        if not path.is_file():
            raise RunStateError(f"{self.folder} has no {path.name}; export the other weights "
                                f"(--weights {'final' if tag == 'best' else 'best'}) or rerun the run")
        return path

    def untrained_model(self):
        """The run's model as built before training: its name, ``num_classes`` and model_kwargs,
        fresh weights (for counting parameters and timing); a one-line RunStateError when it
        cannot be built."""
        from ba_net.models import build_model

        return self._build(build_model)

    def _build(self, builder):
        """``builder`` (build_model or build_structure) on the run's model; a one-line RunStateError
        when it cannot be built."""
        num_classes = self.num_classes
        try:
            return builder(self.model, num_classes=num_classes, **self.model_kwargs)
        except (ValueError, TypeError) as exc:
            raise RunStateError(f"run {self.folder}: cannot build model {self.model!r} ({exc})") from None

    def build_model(self, tag: Optional[str] = None):
        """The run's model with its ``tag`` weights (:meth:`weights`; refused when they were made
        for another architecture), in eval mode."""
        path = self.weights(tag)
        model = self.untrained_model()
        load_weights(model, path, f"{self.model} seed {self.seed} {f'{tag} ' if tag else ''}weights")
        model.eval()
        return model

    def describe(self) -> dict:
        return {"model": self.model, "seed": self.seed, "status": self.status, "reason": self.reason,
                "included": self.finished, "epochs_done": len(self.epochs), "epochs_planned": self.epochs_planned,
                "best_val_acc": self.best_val_acc, "final_val_acc": self.final_val_acc,
                "test_acc": self.test_acc, "best_test_acc": self.best_test_acc, "ema_acc": self.ema_acc, "acc5": self.acc5,
                "final_train_acc": self.final_train_acc, "wall_time_s": round(self.wall_time_s, 3),
                "device": self.device, "folder": str(self.folder)}


# -------------------------------------------------------------- strict: export, predict

def open_run(run_dir) -> Run:
    """The finished run in ``run_dir``; one-line errors for a missing folder, a folder that is not
    a run, a corrupt history or config, and a run that is still running or failed."""
    from ba_net.files import read_json

    root = Path(run_dir)
    if not root.is_dir():
        raise RunStateError(f"run folder {root} does not exist; {RUN_FIX}")
    folder = RunFolder(root)
    if not folder.history.is_file():
        nested = sorted(p.parent for p in root.glob("*/seed*/history.json"))
        hint = f" (it holds runs, e.g. {nested[0]})" if nested else ""
        raise RunStateError(f"{root} is not a run folder: no history.json{hint}; {RUN_FIX}")
    raw = read_json(folder.history, "run history")
    model = raw.get("model") or root.parent.name
    seed = raw.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = int(root.name[4:]) if root.name.startswith("seed") and root.name[4:].lstrip("-").isdigit() else 0
    history = read_history(folder, model, seed, OPEN_FIX)
    if history["status"] != "finished":
        done = len(history["epochs"])
        raise RunStateError(f"run {root} is {history['status']} ({done} of {history.get('epochs_planned', '?')} "
                            f"epochs), not finished; finish it (tools/train.py ... --resume) before exporting")
    return Run(model, seed, root, history, read_run_config(folder, OPEN_FIX))


# -------------------------------------------------------------------- lenient: compare

def read_run(root: Path, model: str, seed: int) -> Run:
    """The run in folder ``root`` (``<model>/seed<seed>``), whatever its status."""
    folder = RunFolder(root)
    return Run(model, seed, root, read_history(folder, model, seed, COMPARE_FIX), read_run_config(folder, COMPARE_FIX))


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


def representative(runs) -> Run:
    """The run that speaks for ``runs`` (one model's seeds, or a whole experiment) where they are
    built, read or evaluated alike: the first with a config.yaml and recorded class names, else
    the first with a config.yaml, else the first."""
    runs = list(runs)
    if not runs:
        raise ValueError("representative() of no runs")
    return min(runs, key=lambda r: (not r.config, not r.history.get("classes")))  # the first of equals


__all__ = ["OPEN_FIX", "RUN_FIX", "Run", "WEIGHT_TAGS", "by_model", "collect_runs", "open_run", "read_run",
           "representative"]
