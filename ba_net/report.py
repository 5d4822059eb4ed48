"""Comparing the runs of an experiment: statistics, tables, learning curves, predictions.

The steps, each usable on its own:

1. :func:`ba_net.runs.collect_runs` reads every ``<experiment>/<model>/seed<N>/history.json`` (and
   the run's ``config.yaml``) into :class:`ba_net.runs.Run` objects; nothing else is needed for
   steps 2-4.
2. :func:`summarize` turns them into one row per model: mean and sample std (ddof = 1) over the
   *finished* seeds, and the difference to the baseline with a 95 % t interval and a two-sided
   p-value (:func:`paired_t` when both models finished the same seeds, :func:`welch_t`
   otherwise). Runs that are running or failed are listed, never averaged in.
3. :func:`add_complexity` and :func:`add_throughput` add parameter / FLOP counts of freshly built
   models and the measured speed.
4. :func:`plot_curves` draws the learning curves; :func:`write_tables` writes comparison.json,
   .md and .csv.
5. :func:`add_predictions` evaluates each model's saved weights on the test split and draws
   predictions.png and confusion.png.

:func:`compare_experiment` runs them all (``tools/compare.py``). The statistics are in
:mod:`ba_net.stats`.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ba_net.checkpoint import atomic_write_bytes, atomic_write_json, atomic_write_text
from ba_net.errors import ConfigError, RunStateError
from ba_net.runs import Run, by_model, collect_runs
from ba_net.stats import TTest, compare_seeds, mean_std

logger = logging.getLogger(__name__)

# The notebook's throughput (test-set pass, data loading included, one V100 GPU).
NOTEBOOK_THROUGHPUT = {"AlexNet": 2612.0, "BA-AlexNet": 2533.0}
FIGURES = ("curves_loss.png", "curves_acc.png", "predictions.png", "confusion.png")


# ============================================================================= the summary

def _exclusion(run: Run) -> str:
    done = f"{len(run.epochs)} of {run.epochs_planned} epochs done"
    if run.status == "failed":
        return f"{run.model} seed {run.seed}: failed ({run.reason or 'no reason recorded'}; {done})"
    return f"{run.model} seed {run.seed}: running or stopped ({done})"


def summarize(runs, baseline: str = "alexnet") -> dict:
    """One row per model from the histories alone (counts and speed left None; see
    :func:`add_complexity`, :func:`add_throughput`)."""
    groups = by_model(runs, baseline)
    if baseline not in groups:
        raise RunStateError(f"baseline {baseline!r} has no runs here; pass --baseline with one of {', '.join(groups)}")
    base_values = {r.seed: r.best_val_acc for r in groups[baseline] if r.finished}
    rows = []
    for model, model_runs in groups.items():
        done = [r for r in model_runs if r.finished]
        row = {"model": model, "n_seeds": len(done), "seeds": [r.seed for r in done], "n_runs": len(model_runs),
               "n_excluded": len(model_runs) - len(done),
               "runs": [{"seed": r.seed, "status": r.status, "reason": r.reason} for r in model_runs],
               "epochs": sorted({len(r.epochs) for r in done})}
        for key, attr in (("val_acc_best", "best_val_acc"), ("val_acc_final", "final_val_acc"),
                          ("train_acc_final", "final_train_acc"), ("wall_time_s", "wall_time_s")):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(getattr(r, attr) for r in done)
        row.update(params_total=None, params_trainable=None, flops=None, throughput_img_s=None,
                   throughput_notebook_img_s=None)
        if model == baseline:
            test = TTest("none", None, None, None, note="baseline")
        else:
            test = compare_seeds({r.seed: r.best_val_acc for r in done}, base_values)
        row.update(delta_vs_baseline=test.delta, delta_ci95=list(test.ci95) if test.ci95 else None,
                   p_value=test.p_value, test=test.method, test_df=test.df, test_note=test.note)
        rows.append(row)
    excluded = [_exclusion(r) for r in runs if not r.finished]
    devices = sorted({r.device for r in runs if r.device})
    return {"experiment": _experiment_name(runs), "baseline": baseline, "metric": "val_acc_best",
            "rows": rows, "runs": [r.describe() for r in runs], "excluded": excluded, "train_devices": devices,
            "complexity": None, "throughput": None, "predictions": None, "notes": []}


def _experiment_name(runs) -> str:
    names = {r.config.get("experiment") for r in runs} - {None}
    return names.pop() if len(names) == 1 else runs[0].folder.parent.parent.name


def _model_kwargs(runs) -> dict:
    return next((r.config.get("model_kwargs") or {} for r in runs if r.config), {})


def _eval_path(runs) -> str:
    """train.path of the runs (fast when unset): 'fast' evaluates through Paddle Inference."""
    return next(((r.config.get("train") or {}).get("path", "fast") for r in runs if r.config), "fast")


# ================================================================= parameters, FLOPs, speed

def add_complexity(summary: dict, runs, image_size: int = 128) -> None:
    """Parameter counts (paddle.summary's total, trainable) and forward FLOPs per image of each
    model, built afresh with its runs' model_kwargs."""
    from ba_net.complexity import count_flops, count_params
    from ba_net.models import build_model

    groups = by_model(runs, summary["baseline"])
    for row in summary["rows"]:
        model = build_model(row["model"], **_model_kwargs(groups[row["model"]]))
        counts = count_params(model)
        row.update(params_total=counts["total"], params_trainable=counts["trainable"],
                   flops=count_flops(model, (1, 3, image_size, image_size)))
    summary["complexity"] = {"image_size": image_size}


@dataclass(frozen=True)
class ThroughputSettings:
    """How speed is measured. Benchmark: eval mode, random input of ``batch_size`` images,
    ``warmup`` untimed passes, the median of ``repeats`` timed passes. Notebook way: one
    warm-up batch, then a timed eval pass over the test split through the data loader
    (``max_batches`` caps it; ``num_workers`` None = the runs' data.num_workers)."""

    batch_size: int = 128
    warmup: int = 3
    repeats: int = 5
    image_size: int = 128
    notebook_way: bool = True
    max_batches: Optional[int] = None
    num_workers: Optional[int] = None

    @classmethod
    def parse(cls, text: Optional[str]) -> "ThroughputSettings":
        """Defaults changed by ``key=value,...`` with integer values (e.g. ``warmup=1,repeats=2``);
        tools/compare.py takes it as --throughput-settings."""
        known = {"batch_size": 1, "warmup": 0, "repeats": 1, "max_batches": 1, "num_workers": 0}
        values = {}
        for item in filter(None, (text or "").replace(" ", "").split(",")):
            key, _, raw = item.partition("=")
            if key == "image_size":
                raise ConfigError("throughput setting 'image_size' cannot be chosen: the models are measured at "
                                  f"their input size ({cls.image_size} px); valid settings: {', '.join(known)}")
            if key not in known:
                raise ConfigError(f"throughput setting {key!r} unknown; valid: {', '.join(known)}")
            try:
                values[key] = int(raw)
            except ValueError:
                raise ConfigError(f"throughput setting {item!r}: expected an integer") from None
            if values[key] < known[key]:
                raise ConfigError(f"throughput setting {item!r}: must be >= {known[key]}")
        return cls(**values)


def benchmark_forward(model, settings: ThroughputSettings) -> dict:
    """Images per second of ``model`` in eval mode on the current device (median pass)."""
    import paddle

    model.eval()
    size = settings.image_size
    x = paddle.randn([settings.batch_size, 3, size, size], dtype="float32")
    times = []
    with paddle.no_grad():
        for i in range(settings.warmup + settings.repeats):
            t0 = time.perf_counter()
            model(x).numpy()  # the copy to host waits for the device
            if i >= settings.warmup:
                times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"img_s": settings.batch_size / median, "pass_s": times}


def benchmark_eval_pass(model, images, labels, settings: ThroughputSettings, num_workers: int = 0) -> dict:
    """The notebook's way: images per second of an eval pass over the test split, the loading and
    resizing of the images included."""
    import paddle

    from ba_net import data as D

    loader = D.build_loader(images, labels, D.eval_transform, settings.batch_size, train=False, num_workers=num_workers)
    model.eval()
    with paddle.no_grad():
        model(paddle.to_tensor(np.stack([D.eval_transform(images[0])]))).numpy()  # warm-up
        count = 0
        t0 = time.perf_counter()
        for step, (x, _) in enumerate(loader):
            if settings.max_batches is not None and step >= settings.max_batches:
                break
            model(x).numpy()
            count += int(x.shape[0])
        seconds = time.perf_counter() - t0
    return {"img_s": count / seconds, "images": count, "seconds": seconds}


def describe_device() -> str:
    """The current Paddle device with the hardware behind it."""
    import paddle

    device = paddle.device.get_device()
    if device.startswith("gpu"):
        try:
            return f"{device} ({paddle.device.cuda.get_device_name()})"
        except Exception:  # the name is decoration only
            return device
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"cpu ({cpu}, {os.environ.get('OMP_NUM_THREADS', '?')} threads)"


def add_throughput(summary: dict, runs, settings: ThroughputSettings, test_split=None) -> None:
    """Measured images/s per model (benchmark, and the notebook's way when ``test_split`` =
    (images, labels) is given)."""
    from ba_net.models import build_model

    groups = by_model(runs, summary["baseline"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other processes slow the CPU down
    workers = settings.num_workers
    if workers is None:
        workers = next((r.config.get("data", {}).get("num_workers", 0) for r in runs if r.config), 0)
    from ba_net.accel import eval_model

    path = _eval_path(runs)
    for row in summary["rows"]:
        model = eval_model(build_model(row["model"], **_model_kwargs(groups[row["model"]])), path)
        bench = benchmark_forward(model, settings)
        row["throughput_img_s"] = bench["img_s"]
        line = f"{row['model']}: {bench['img_s']:.0f} img/s (benchmark)"
        if settings.notebook_way and test_split is not None:
            row["throughput_notebook_img_s"] = benchmark_eval_pass(model, *test_split, settings, workers)["img_s"]
            line += f", {row['throughput_notebook_img_s']:.0f} img/s (test-set pass)"
        logger.info("%s", line)
    summary["throughput"] = {"device": describe_device(), "path": path, "batch_size": settings.batch_size,
                             "warmup": settings.warmup, "repeats": settings.repeats,
                             "image_size": settings.image_size,
                             "notebook_way": settings.notebook_way and test_split is not None,
                             "notebook_images": None if test_split is None else len(test_split[0]),
                             "max_batches": settings.max_batches, "num_workers": workers,
                             "load_average_1min": load, "cpus": os.cpu_count()}


# ============================================================================ predictions

def denormalize(chw) -> np.ndarray:
    """A normalized CHW image back to HWC RGB in [0, 1] (clipped: rounding may step outside)."""
    from ba_net.data import MEAN, STD

    return np.clip(np.asarray(chw, dtype=np.float32).transpose(1, 2, 0) * STD + MEAN, 0.0, 1.0)


def predict(model, images, batch_size: int = 128) -> np.ndarray:
    """Predicted class of every image (HWC uint8) under the eval transform."""
    import paddle

    from ba_net import data as D

    loader = D.build_loader(images, np.zeros(len(images), dtype=np.int64), D.eval_transform, batch_size, train=False)
    model.eval()
    out = []
    with paddle.no_grad():
        for x, _ in loader:
            out.append(model(x).argmax(axis=1).numpy())
    return np.concatenate(out).astype(np.int64)


def confusion_matrix(truth, predicted, num_classes: int = 10) -> np.ndarray:
    """Counts [true class, predicted class]."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(truth), np.asarray(predicted)), 1)
    return m


def prediction_run(model_runs) -> Optional[Run]:
    """The run whose weights represent a model: its lowest finished seed that saved weights."""
    return next((r for r in sorted(model_runs, key=lambda r: r.seed) if r.finished and r.weights()), None)


def add_predictions(summary: dict, runs, test_split, out_dir, n_images: int = 8) -> dict:
    """Evaluate each model's saved weights (best.pdparams, else final) on the test split; write
    predictions.png and confusion.png. Returns the figures."""
    from ba_net.models import build_model
    from ba_net.runs import load_weights

    images, labels = test_split
    groups = by_model(runs, summary["baseline"])
    results = {}
    for model_name, model_runs in groups.items():
        run = prediction_run(model_runs)
        if run is None:
            summary["notes"].append(f"{model_name}: no finished run with saved weights; no predictions")
            continue
        model = build_model(model_name, **_model_kwargs(model_runs))
        load_weights(model, run.weights(), f"{model_name} weights")
        from ba_net.accel import eval_model

        predicted = predict(eval_model(model, _eval_path(model_runs)), images)
        results[model_name] = {"seed": run.seed, "weights": run.weights().name, "predicted": predicted,
                               "accuracy": float(np.mean(predicted == labels)),
                               "confusion": confusion_matrix(labels, predicted)}
        logger.info("%s seed %d (%s): test accuracy %.4f", model_name, run.seed, run.weights().name,
                    results[model_name]["accuracy"])
    summary["predictions"] = {m: {k: (v.tolist() if k == "confusion" else v) for k, v in r.items() if k != "predicted"}
                              for m, r in results.items()}
    if not results:
        return {}
    out_dir = Path(out_dir)
    figs = {"predictions.png": plot_predictions(results, images, labels, n_images),
            "confusion.png": plot_confusion(results)}
    for name, fig in figs.items():
        save_figure(fig, out_dir / name)
    return figs


# ================================================================================= figures

def _figure(width: float, height: float):
    """A Figure on the Agg canvas (no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def _epoch_curve(runs, key: str):
    """(epochs, mean, min, max) of ``key`` over the runs, per epoch number they share."""
    per_epoch = {}
    for run in runs:
        for e in run.epochs:
            per_epoch.setdefault(e["epoch"], []).append(e[key])
    epochs = sorted(per_epoch)
    values = [per_epoch[e] for e in epochs]
    return (np.array(epochs), np.array([np.mean(v) for v in values]),
            np.array([np.min(v) for v in values]), np.array([np.max(v) for v in values]))


def plot_curves(runs, kind: str, baseline: str = "alexnet"):
    """Learning curves of ``kind`` ('loss' or 'acc'): a train and a val panel, one line per model
    (the mean over its finished seeds) with a min-max band. Returns the Figure."""
    from matplotlib.ticker import MaxNLocator

    label = {"loss": "loss (label-smoothed cross entropy)", "acc": "accuracy"}[kind]
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    colors = {m: f"C{i}" for i, m in enumerate(by_model(runs, baseline))}
    for ax, split in zip(axes, ("train", "val")):
        for model, model_runs in by_model(runs, baseline).items():
            done = [r for r in model_runs if r.finished]
            if not done:
                continue
            epochs, mean, low, high = _epoch_curve(done, f"{split}_{kind}")
            ax.plot(epochs, mean, marker="o", markersize=3, color=colors[model], label=f"{model} (n={len(done)})")
            if len(done) > 1:
                ax.fill_between(epochs, low, high, color=colors[model], alpha=0.2, linewidth=0)
        ax.set_title(f"{split} {kind}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("mean over finished seeds; shaded: min-max over seeds")
    return fig


def plot_predictions(results: dict, images, labels, n_images: int = 8):
    """The first ``n_images`` test images, one row per model, titled predicted / true
    (green when right, red when wrong)."""
    from ba_net import data as D

    n = min(n_images, len(images))
    fig = _figure(1.6 * n, 2.0 * len(results) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(results), n, squeeze=False))
    for row, (model, res) in zip(axes, results.items()):
        for i, ax in enumerate(row):
            ax.imshow(denormalize(D.eval_transform(images[i])))
            pred, true = int(res["predicted"][i]), int(labels[i])
            ax.set_title(f"pred {D.CLASSES[pred]}\ntrue {D.CLASSES[true]}", fontsize=8,
                         color="green" if pred == true else "red")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{model}\nseed {res['seed']}", fontsize=9)
    fig.suptitle("test images: predicted / true (green right, red wrong)")
    return fig


def plot_confusion(results: dict):
    """One confusion matrix per model (counts; rows true, columns predicted)."""
    from ba_net.data import CLASSES

    fig = _figure(5.2 * len(results), 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(results), squeeze=False)[0])
    for ax, (model, res) in zip(axes, results.items()):
        m = res["confusion"]
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                    color="white" if v > m.max() / 2 else "black")
        ticks = range(len(CLASSES))
        ax.set_xticks(ticks, CLASSES, rotation=90, fontsize=7)
        ax.set_yticks(ticks, CLASSES, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{model} seed {res['seed']} ({res['weights']}): acc {res['accuracy']:.4f}", fontsize=9)
    return fig


# ================================================================================== tables

CSV_COLUMNS = ("model", "n_seeds", "n_runs", "n_excluded", "seeds", "val_acc_best_mean", "val_acc_best_std",
               "val_acc_final_mean", "val_acc_final_std", "train_acc_final_mean", "train_acc_final_std",
               "delta_vs_baseline", "delta_ci95_low", "delta_ci95_high", "p_value", "test", "params_total",
               "params_trainable", "flops", "throughput_img_s", "throughput_notebook_img_s", "wall_time_s_mean",
               "wall_time_s_std")


def _pct(v, signed=False) -> str:
    return "–" if v is None else f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def _mean_pm_std(row, key) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if mean is None:
        return "–"
    return _pct(mean) if std is None else f"{_pct(mean)} ± {_pct(std)}"


def _delta_cell(row) -> str:
    if row["test_note"] == "baseline":
        return "baseline"
    if row["delta_vs_baseline"] is None:
        return "–"
    text = _pct(row["delta_vs_baseline"], signed=True)
    if row["delta_ci95"] is None:
        return f"{text} (no CI: {row['test_note']})"
    low, high = row["delta_ci95"]
    return f"{text} [{_pct(low, signed=True)}, {_pct(high, signed=True)}]"


def _p_cell(row) -> str:
    if row["p_value"] is None:
        return "–"
    df = f"df {row['test_df']:.3g}"
    return f"{row['p_value']:.3g} ({row['test']}, {df})"


def _count(v) -> str:
    return "–" if v is None else f"{v:,}"


def _speed(v, summary) -> str:
    if summary["throughput"] is None:
        return "skipped"
    return "–" if v is None else f"{v:.0f}"


def markdown(summary: dict) -> str:
    """comparison.md: the table, the runs, and how every number was obtained."""
    rows, base = summary["rows"], summary["baseline"]
    out = [f"# Comparison: experiment `{summary['experiment']}`", "",
           "| model | seeds | best val acc % | final val acc % | final train acc % | Δ best val vs "
           f"{base} (pp) [95 % CI] | p | params total (trainable) | FLOPs / image | img/s benchmark | "
           "img/s test-set pass |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seeds = f"{r['n_seeds']} of {r['n_runs']}"
        params = "–" if r["params_total"] is None else f"{_count(r['params_total'])} ({_count(r['params_trainable'])})"
        out.append(f"| {r['model']} | {seeds} | {_mean_pm_std(r, 'val_acc_best')} | {_mean_pm_std(r, 'val_acc_final')} | "
                   f"{_mean_pm_std(r, 'train_acc_final')} | {_delta_cell(r)} | {_p_cell(r)} | {params} | "
                   f"{_count(r['flops'])} | {_speed(r['throughput_img_s'], summary)} | "
                   f"{_speed(r['throughput_notebook_img_s'], summary)} |")
    out += ["", "## Runs", "", "| model | seed | status | epochs | best val acc % | final val acc % | "
            "final train acc % | wall time s | note |", "|---|---|---|---|---|---|---|---|---|"]
    for run in summary["runs"]:
        note = "" if run["included"] else "excluded from the statistics" + (f": {run['reason']}" if run["reason"] else "")
        out.append(f"| {run['model']} | {run['seed']} | {run['status']} | {run['epochs_done']}/{run['epochs_planned']} | "
                   f"{_pct(run['best_val_acc'])} | {_pct(run['final_val_acc'])} | {_pct(run['final_train_acc'])} | "
                   f"{run['wall_time_s']:.1f} | {note} |")
    out += ["", "## Method", ""] + [f"- {line}" for line in _method_notes(summary)]
    return "\n".join(out) + "\n"


def _method_notes(summary: dict) -> list:
    rows, base = summary["rows"], summary["baseline"]
    n_runs = len(summary["runs"])
    notes = [
        "Statistics use finished runs only. Accuracies are fractions of the validation split (which is the "
        "CIFAR-10 test split, as in the notebook, so the best epoch is picked on test data and is optimistic), "
        "shown in %: mean ± sample standard deviation (ddof = 1) over the finished seeds of each model "
        "(the 'seeds' column: finished of all runs); best = highest val accuracy of any epoch, final = the last epoch.",
        f"Δ is the mean best val accuracy minus {base}'s, in percentage points. 95 % CI and two-sided p: a paired "
        "t-test over seeds when both models finished the same seeds, Welch's t-test otherwise (t quantiles and "
        "p-values from scipy.stats.t). With one seed on a side no interval is possible "
        "and CI and p are left empty.",
    ]
    if any(r["n_seeds"] == 1 for r in rows):
        notes.append("Some models have a single finished seed: their std, CI and p are not defined.")
    if summary["excluded"]:
        notes.append(f"{len(summary['excluded'])} of {n_runs} runs excluded from the statistics (not finished): "
                     + "; ".join(summary["excluded"]) + ".")
    else:
        notes.append(f"All {n_runs} runs finished; none excluded.")
    if summary["train_devices"]:
        notes.append(f"Trained on: {', '.join(summary['train_devices'])}.")
    if summary["complexity"]:
        notes.append("Params: computed from freshly built models, total as paddle.summary counts them (BatchNorm "
                     "running mean/variance included) and trainable. FLOPs: forward multiply-accumulates for one "
                     f"3x{summary['complexity']['image_size']}x{summary['complexity']['image_size']} image, "
                     "paddle.flops' convention, attention's functional ops included.")
    notes += _throughput_notes(summary)
    pred = summary["predictions"]
    if pred:
        notes.append("predictions.png / confusion.png: each model's lowest finished seed, best.pdparams (else "
                     "final.pdparams), on the test split: " + "; ".join(
                         f"{m} seed {p['seed']} {p['weights']} accuracy {_pct(p['accuracy'])} %" for m, p in pred.items()) + ".")
    notes += summary["notes"]
    return notes


def _throughput_notes(summary: dict) -> list:
    tp = summary["throughput"]
    if tp is None:
        return ["Throughput: skipped (--no-throughput)."]
    how = {"fast": "Paddle Inference (exported model, oneDNN)", "dygraph": "dygraph"}.get(tp.get("path"), "dygraph")
    if not tp["device"].startswith("cpu"):
        how = "dygraph"  # ba_net.accel.eval_model keeps dygraph on GPU
    notes = [f"Throughput on {tp['device']} with {how} (train.path: {tp.get('path', 'fast')}), eval mode, fresh "
             f"weights. Benchmark: batch {tp['batch_size']} of random "
             f"3x{tp['image_size']}x{tp['image_size']} input, {tp['warmup']} warm-up passes, median of {tp['repeats']} "
             "timed passes."]
    if tp["device"].startswith("cpu") and tp.get("load_average_1min") is not None:
        notes.append(f"System load when the measurement started: {tp['load_average_1min']:.1f} (1-minute average) "
                     f"on {tp['cpus']} CPUs; a load near or above the CPU count means other processes shared the "
                     "cores and the img/s numbers are low and noisy.")
    if tp["notebook_way"]:
        cap = "" if tp["max_batches"] is None else f", first {tp['max_batches']} batches"
        notes.append(f"Test-set pass (the notebook's way): one warm-up batch, then an eval pass over the "
                     f"{tp['notebook_images']} test images{cap} through the data loader ({tp['num_workers']} workers; "
                     "decoding, resizing and normalizing included), images / wall time.")
    else:
        notes.append("Test-set pass: not measured (no test split available).")
    ours = ", ".join(f"{r['model']} {_speed(r['throughput_notebook_img_s'], summary)}" for r in summary["rows"])
    theirs = ", ".join(f"{m} {v:.0f}" for m, v in NOTEBOOK_THROUGHPUT.items())
    ratio = NOTEBOOK_THROUGHPUT["BA-AlexNet"] / NOTEBOOK_THROUGHPUT["AlexNet"]
    notes.append(f"The notebook measured its test-set pass on a V100 GPU (img/s): {theirs} (ratio {ratio:.3f}); "
                 f"ours on {tp['device']}: {ours}. Different hardware: compare the ratio between models, not "
                 "the absolute numbers.")
    return notes


def _csv(summary: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in summary["rows"]:
        ci = r["delta_ci95"] or (None, None)
        flat = {**r, "seeds": ";".join(str(s) for s in r["seeds"]), "delta_ci95_low": ci[0], "delta_ci95_high": ci[1]}
        writer.writerow({k: "" if flat.get(k) is None else flat[k] for k in CSV_COLUMNS})
    return buf.getvalue()


def write_tables(summary: dict, out_dir) -> None:
    """comparison.json, comparison.md and comparison.csv in ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "comparison.json", summary)
    atomic_write_text(out_dir / "comparison.md", markdown(summary))
    atomic_write_text(out_dir / "comparison.csv", _csv(summary))


# ================================================================================ pipeline

def _test_split(runs):
    """The test split the runs were evaluated on: their data.data_file if it exists from here,
    else the usual search (BA_NET_CIFAR10, Paddle's cache, download)."""
    from ba_net import data as D

    data_file = next((r.config.get("data", {}).get("data_file") for r in runs if r.config), None)
    path = Path(data_file) if data_file and Path(data_file).is_file() else D.locate_cifar10(None)
    return D.read_cifar10(path, "test")


def compare_experiment(experiment_dir, out_dir=None, baseline: str = "alexnet",
                       throughput: Optional[ThroughputSettings] = ThroughputSettings(),
                       predictions: bool = True, complexity: bool = True, device: str = "auto") -> dict:
    """Everything ``tools/compare.py`` writes; returns the summary (comparison.json's content)."""
    runs = collect_runs(experiment_dir)
    out_dir = Path(out_dir if out_dir is not None else experiment_dir)
    summary = summarize(runs, baseline)
    logger.info("%d runs of %d models in %s (%d not finished)", len(runs), len(summary["rows"]), experiment_dir,
                len(summary["excluded"]))
    needs_data = (predictions and any(prediction_run(r) for r in by_model(runs, baseline).values())) or (
        throughput is not None and throughput.notebook_way)
    if needs_data or complexity or throughput is not None:
        from ba_net.runtime import select_device

        select_device(device)
    test_split = _test_split(runs) if needs_data else None
    if complexity:
        add_complexity(summary, runs)
    if throughput is not None:
        add_throughput(summary, runs, throughput, test_split)
    for kind in ("loss", "acc"):
        save_figure(plot_curves(runs, kind, baseline), out_dir / f"curves_{kind}.png")
    if predictions:
        if test_split is None:
            summary["notes"].append("No finished run saved weights: predictions.png and confusion.png not written.")
        else:
            add_predictions(summary, runs, test_split, out_dir)
    write_tables(summary, out_dir)
    logger.info("wrote comparison.{json,md,csv} and figures to %s", out_dir)
    return summary
