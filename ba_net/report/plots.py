"""The comparison's figures, each a matplotlib Figure on the Agg canvas (no display, no pyplot
state): learning curves per model, a grid of test images with predictions, confusion matrices,
per-class accuracy, the mean attention gate per channel of BA and SE.
:func:`save_figure` writes one as PNG, atomically."""
from __future__ import annotations

import io

import numpy as np

from ba_net.files import atomic_write_bytes
from ba_net.runs.results import by_model


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
        shown = set()
        for model, model_runs in by_model(runs, baseline).items():
            done = [r for r in model_runs if r.finished]
            if not done:
                continue
            epochs, mean, low, high = _epoch_curve(done, f"{split}_{kind}")
            shown.update(int(e) for e in epochs)
            ax.plot(epochs, mean, marker="o", markersize=3, color=colors[model], label=f"{model} (n={len(done)})")
            if len(done) > 1:
                ax.fill_between(epochs, low, high, color=colors[model], alpha=0.2, linewidth=0)
        ax.set_title(f"{split} {kind}")
        ax.set_xlabel("epoch")
        # epochs are whole numbers: a tick per epoch when there are few (one epoch alone would get
        # matplotlib's fractional ticks around it, 0.95 ... 1.05), else whole-number ticks
        if shown and len(shown) <= 12:
            ax.set_xticks(sorted(shown))
            ax.set_xlim(min(shown) - 0.5, max(shown) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("mean over finished seeds; shaded: min-max over seeds")
    return fig


def denormalize(chw) -> np.ndarray:
    """A normalized CHW image back to HWC RGB in [0, 1] (clipped: rounding may step outside)."""
    from ba_net.data import MEAN, STD

    return np.clip(np.asarray(chw, dtype=np.float32).transpose(1, 2, 0) * STD + MEAN, 0.0, 1.0)


def plot_predictions(results: dict, images, labels, classes, n_images: int = 8):
    """The first ``n_images`` test images, one row per model, titled predicted / true
    (green when right, red when wrong) with the names ``classes``."""
    from ba_net import data as D

    n = min(n_images, len(images))
    fig = _figure(1.6 * n, 2.0 * len(results) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(results), n, squeeze=False))
    for row, (model, res) in zip(axes, results.items()):
        for i, ax in enumerate(row):
            ax.imshow(denormalize(D.eval_transform(images[i])))
            pred, true = int(res["predicted"][i]), int(labels[i])
            ax.set_title(f"pred {classes[pred]}\ntrue {classes[true]}", fontsize=8,
                         color="green" if pred == true else "red")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{model}\nseed {res['seed']}", fontsize=9)
    fig.suptitle("test images: predicted / true (green right, red wrong)")
    return fig


def plot_confusion(results: dict, classes):
    """One confusion matrix per model (counts; rows true, columns predicted), labelled with
    ``classes``, each with a colour bar of its counts; the counts are written in the cells up to
    20 classes, in a size that fills the cell (white on the dark cells)."""
    n = len(classes)
    side = 5.0 if n <= 20 else 0.12 * n + 2
    fig = _figure((side + 1.0) * len(results), side)
    axes = np.atleast_1d(fig.subplots(1, len(results), squeeze=False)[0])
    # a cell is side / n inches (72 points each); the number's height is about a quarter of that
    number_size = min(11.0, max(6.0, 0.28 * 72 * side / n))
    for ax, (model, res) in zip(axes, results.items()):
        m = np.asarray(res["confusion"])
        image = ax.imshow(m, cmap="Blues", vmin=0)
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("test images", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        for (i, j), v in np.ndenumerate(m if n <= 20 else np.zeros((0, 0))):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=number_size,
                    color="white" if v > m.max() / 2 else "black")
        ticks, size = range(n), 8 if n <= 20 else 4
        ax.set_xticks(ticks, classes, rotation=90, fontsize=size)
        ax.set_yticks(ticks, classes, fontsize=size)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{model} seed {res['seed']} ({res['weights']}): acc {res['accuracy']:.4f}", fontsize=9)
    return fig


def plot_per_class(per_class: dict):
    """Per-class test accuracy: a group of bars per class, one bar per model (the mean over its
    seeds), with the min-max over seeds as an error bar when a model has more than one."""
    classes, models = per_class["classes"], per_class["models"]
    fig = _figure(min(max(8.0, 0.9 * len(classes) * max(1, len(models)) / 2 + 3), 60.0), 4.5)
    ax = fig.subplots()
    width = 0.8 / max(1, len(models))
    x = np.arange(len(classes))
    for i, (model, e) in enumerate(models.items()):
        mean = np.array(e["mean"])
        per_seed = np.array(list(e["per_seed"].values()))
        err = np.vstack([mean - per_seed.min(axis=0), per_seed.max(axis=0) - mean]) if len(per_seed) > 1 else None
        ax.bar(x + (i - (len(models) - 1) / 2) * width, mean, width, yerr=err, capsize=2, color=f"C{i}",
               label=f"{model} (n={len(e['seeds'])})")
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("per-class test accuracy: mean over seeds (best.pdparams); bars: min-max over seeds")
    return fig


def plot_attention_channels(curves: dict):
    """attention_ba_vs_se.png: one panel per class, the mean gate per channel (x: channel index)
    of each model. ``curves``: {model label: {class name: [C] mean gates}}."""
    classes = list(dict.fromkeys(c for per_class in curves.values() for c in per_class))
    fig = _figure(4.2 * max(1, len(classes)), 3.8)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(classes)), sharey=True, squeeze=False)[0])
    for ax, cls in zip(axes, classes):
        for i, (label, per_class) in enumerate(curves.items()):
            if cls in per_class:
                ax.plot(np.arange(len(per_class[cls])), per_class[cls], color=f"C{i}", linewidth=1, label=label)
        ax.set_title(f"class {cls}", fontsize=10)
        ax.set_xlabel("channel")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean attention weight")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("mean attention weight per channel over each class's test images (last attention module)",
                 fontsize=10)
    return fig


__all__ = ["denormalize", "plot_attention_channels", "plot_confusion", "plot_curves", "plot_per_class",
           "plot_predictions", "save_figure"]
