"""tools/compare.py's pipeline: the runs of an experiment compared, as tables and figures.

:func:`compare_experiment` runs these steps (each usable on its own):

1. :func:`ba_net.runs.results.collect_runs` reads every ``<experiment>/<model>/seed<N>/history.json`` (and
   the run's ``config.yaml``) into :class:`ba_net.runs.results.Run` objects; nothing else is needed for
   steps 2-4.
2. :func:`summarize` turns them into one row per model: mean and sample std (ddof = 1) over the
   *finished* seeds, and the difference to the baseline with a 95 % t interval and a two-sided
   p-value (:mod:`ba_net.report.stats`: paired by seed when both models finished the same seeds, Welch
   otherwise), its power (the minimum detectable difference at the seeds run, the seeds needed to
   detect the observed one: :mod:`ba_net.report.power`) and one sentence (:mod:`ba_net.report.evidence`); and
   whether each model's seeds ran with the same config, Paddle and device (:mod:`ba_net.report.repro`).
   Runs that are running or failed are listed, never averaged in. :func:`add_aa` adds the A/A
   control: one model's seeds split in halves and compared like two models.
3. :func:`add_complexity` and :func:`add_throughput` add parameter and multiply-accumulate counts
   of freshly built models (:mod:`ba_net.models.complexity`) and their measured speed
   (:mod:`ba_net.report.throughput`), each model at its own input size (``model.input_size``: 128 px for
   AlexNet, 32 px for the CIFAR ResNets) and with its runs' data preset.
4. :func:`ba_net.report.plots.plot_curves` draws the learning curves; :func:`ba_net.report.tables.write_tables`
   writes comparison.json, .md and .csv.
5. :func:`add_predictions` evaluates every finished seed's saved weights on the test split
   under the eval transform of its runs' preset (:mod:`ba_net.report.predictions`), draws predictions.png
   and confusion.png (each model's lowest seed) and writes per_class.csv and per_class.png (mean
   over the seeds, :mod:`ba_net.report.per_class`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ba_net.files import atomic_write_text
from ba_net.errors import DataError, RunStateError
from ba_net.report.evidence import aa_control, evaluate
from ba_net.report.per_class import per_class_csv, summarize_per_class
from ba_net.report.plots import plot_confusion, plot_curves, plot_per_class, plot_predictions, save_figure
from ba_net.report.power import welch_power
from ba_net.report.published import published_column
from ba_net.report.predictions import confusion_matrix, predict_runs, prediction_run
from ba_net.report.repro import reproducibility
from ba_net.runs.results import Run, by_model, collect_runs, representative
from ba_net.runtime import describe_device, load_average
from ba_net.report.throughput import ThroughputSettings, eval_pass_rate, forward_rate
from ba_net.report.stats import TTest, mean_std
from ba_net.report.tables import write_tables

logger = logging.getLogger(__name__)


# ============================================================================= the summary

def _exclusion(run: Run) -> str:
    done = f"{len(run.epochs)} of {run.epochs_planned} epochs done"
    if run.status == "failed":
        return f"{run.model} seed {run.seed}: failed ({run.reason or 'no reason recorded'}; {done})"
    return f"{run.model} seed {run.seed}: running or stopped ({done})"


METRICS = {"test_acc": "test accuracy at the epoch of best held-out validation accuracy (data.val_split)",
           "val_acc_best": "best validation accuracy over the epochs, the validation split being the test split "
                           "(the notebook's way: the epoch is picked on test, so the figure is optimistic)"}


def metric(runs) -> str:
    """What the statistics compare: ``test_acc`` when the runs held a validation set out of train
    (``data.val_split``), else ``val_acc_best``. Runs of both kinds in one experiment are refused."""
    kinds = {r.held_out for r in runs if r.epochs}
    if len(kinds) > 1:
        held = sorted({f"{r.model} seed {r.seed}" for r in runs if r.epochs and r.held_out})
        raise RunStateError(f"some runs picked their best epoch on a held-out validation set ({', '.join(held[:3])}"
                            f"{', ...' if len(held) > 3 else ''}) and others on the test split: their accuracies are "
                            f"not comparable; rerun one group with --force and the other's data.val_split")
    return "test_acc" if kinds == {True} else "val_acc_best"


def _scores(model_runs, name: str) -> dict:
    """{seed: the compared accuracy} of the finished runs."""
    attr = "test_acc" if name == "test_acc" else "best_val_acc"
    return {r.seed: getattr(r, attr) for r in model_runs if r.finished}


def summarize(runs, baseline: str = "alexnet") -> dict:
    """One row per model from the histories alone (counts and speed left None; see
    :func:`add_complexity`, :func:`add_throughput`)."""
    groups = by_model(runs, baseline)
    if baseline not in groups:
        raise RunStateError(f"baseline {baseline!r} has no runs here; pass --baseline with one of {', '.join(groups)}")
    name = metric(runs)
    base_values = _scores(groups[baseline], name)
    rows = []
    for model, model_runs in groups.items():
        done = [r for r in model_runs if r.finished]
        row = {"model": model, "n_seeds": len(done), "seeds": [r.seed for r in done], "n_runs": len(model_runs),
               "n_excluded": len(model_runs) - len(done),
               "runs": [{"seed": r.seed, "status": r.status, "reason": r.reason} for r in model_runs],
               "epochs": sorted({len(r.epochs) for r in done})}
        for key, attr in (("val_acc_best", "best_val_acc"), ("val_acc_final", "final_val_acc"),
                          ("train_acc_final", "final_train_acc"), ("wall_time_s", "wall_time_s"),
                          ("test_acc", "test_acc"), ("test_acc_best", "best_test_acc"), ("ema_acc", "ema_acc"),
                          ("acc5", "acc5")):
            values = [getattr(r, attr) for r in done]
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values) if None not in values else (None, None)
        row.update(params_total=None, params_trainable=None, input_size=None, macs=None, throughput_img_s=None,
                   throughput_notebook_img_s=None)
        row.update(_versus_baseline(model, baseline, _scores(done, name), base_values))
        rows.append(row)
    excluded = [_exclusion(r) for r in runs if not r.finished]
    devices = sorted({r.device for r in runs if r.device})
    dataset, num_classes = representative(runs).dataset, _num_classes(runs)
    return {"experiment": _experiment_name(runs), "baseline": baseline, "metric": name, "metric_doc": METRICS[name],
            "dataset": dataset, "num_classes": num_classes, "top5": num_classes is not None and num_classes > 10,
            "published": published_column(groups, dataset, num_classes), "rows": rows, "runs": [r.describe() for r in runs], "excluded": excluded, "train_devices": devices,
            "reproducibility": reproducibility(runs, baseline), "aa": None, "complexity": None, "throughput": None,
            "predictions": None, "per_class": None, "notes": []}


def _num_classes(runs) -> Optional[int]:
    """The experiment's class count (its runs' recorded classes), None when no run says."""
    try:
        return representative(runs).num_classes
    except DataError:  # an image folder's run from before the class record
        return None


def _versus_baseline(model: str, baseline: str, values: dict, base_values: dict) -> dict:
    """The row's test against the baseline, its power and its sentence."""
    if model == baseline:
        test, mde, needed, sentence = TTest("none", None, None, None, note="baseline"), None, None, None
    else:
        ev = evaluate(f"{model} vs {baseline}", values, base_values)
        test, mde, needed, sentence = ev.test, ev.mde, ev.seeds_needed, ev.sentence
    return dict(delta_vs_baseline=test.delta, delta_ci95=list(test.ci95) if test.ci95 else None,
                p_value=test.p_value, test=test.method, test_df=test.df, test_note=test.note, mde=mde,
                seeds_needed=needed, conclusion=sentence)


def add_aa(summary: dict, runs, model: str) -> None:
    """The A/A control: ``model``'s finished seeds, first half against second half by seed order
    (at least 4 seeds), with the statistics of a model against the baseline."""
    groups = by_model(runs, summary["baseline"])
    if model not in groups:
        raise RunStateError(f"--aa {model}: no runs of {model} here; pass one of {', '.join(groups)}")
    ev = aa_control(_scores(groups[model], summary["metric"]), model)
    halves = ev.n_seeds
    summary["aa"] = {**ev.as_dict(), "model": model, "welch_size": welch_power(0.0, 1.0, 1.0, *halves)}
    logger.info("%s", ev.sentence)


def _experiment_name(runs) -> str:
    names = {r.config.get("experiment") for r in runs} - {None}
    return names.pop() if len(names) == 1 else runs[0].folder.parent.parent.name


def _sizes(summary: dict) -> dict:
    """{'image_size': the input size when every model has the same one (else None), 'image_sizes':
    {model: size}}."""
    sizes = {r["model"]: r["input_size"] for r in summary["rows"]}
    return {"image_size": next(iter(set(sizes.values()))) if len(set(sizes.values())) == 1 else None,
            "image_sizes": sizes}


def default_baseline(runs) -> str:
    """The baseline when none is given: alexnet when it ran, else the first model (by name)
    built without attention (resnet20 for the ResNet ablations), else the first model."""
    names = sorted({r.model for r in runs})
    if "alexnet" in names:
        return "alexnet"
    for name in names:
        model = representative(r for r in runs if r.model == name).untrained_model()
        if getattr(model, "attention", None) is None and getattr(model, "attention_name", None) is None:
            return name
    return names[0]


def _eval_path(runs) -> str:
    """train.path of the runs (fast when unset): 'fast' evaluates through Paddle Inference."""
    return (representative(runs).config.get("train") or {}).get("path", "fast")


# ============================================================== parameters, MACs, speed

def add_complexity(summary: dict, runs) -> None:
    """Parameter counts (paddle.summary's total, trainable) and forward multiply-accumulates per
    image of each model at its input size, built afresh with its runs' model_kwargs."""
    from ba_net.models.complexity import count_macs, count_params

    groups = by_model(runs, summary["baseline"])
    for row in summary["rows"]:
        run = representative(groups[row["model"]])
        model = run.untrained_model()
        counts = count_params(model)
        size = run.input_size(model)
        row.update(params_total=counts["total"], params_trainable=counts["trainable"], input_size=size,
                   macs=count_macs(model, (1, 3, size, size)))
    summary["complexity"] = _sizes(summary)


def add_throughput(summary: dict, runs, settings: ThroughputSettings, test_split=None) -> None:
    """Measured images/s per model (benchmark, and the notebook's way when ``test_split`` =
    (images, labels) is given)."""
    groups = by_model(runs, summary["baseline"])
    load = load_average()
    workers = settings.num_workers
    if workers is None:
        workers = next((r.config.get("data", {}).get("num_workers", 0) for r in runs if r.config), 0)
    from ba_net.accel.paths import eval_model

    path = _eval_path(runs)
    for row in summary["rows"]:
        run = representative(groups[row["model"]])
        built = run.untrained_model()
        row["input_size"] = run.input_size(built)
        model = eval_model(built, path)
        row["throughput_img_s"] = forward_rate(model, settings.batch_size, row["input_size"],
                                               warmup=settings.warmup, repeats=settings.repeats)["img_s"]
        line = f"{row['model']}: {row['throughput_img_s']:.0f} img/s (benchmark)"
        if settings.notebook_way and test_split is not None:
            row["throughput_notebook_img_s"] = eval_pass_rate(model, *test_split, settings.batch_size,
                                                              max_batches=settings.max_batches,
                                                              num_workers=workers,
                                                              transform=run.preset.eval)["img_s"]
            line += f", {row['throughput_notebook_img_s']:.0f} img/s (test-set pass)"
        logger.info("%s", line)
    summary["throughput"] = {"device": describe_device(), "path": path, "batch_size": settings.batch_size,
                             "warmup": settings.warmup, "repeats": settings.repeats, **_sizes(summary),
                             "notebook_way": settings.notebook_way and test_split is not None,
                             "notebook_images": None if test_split is None else len(test_split[0]),
                             "max_batches": settings.max_batches, "num_workers": workers,
                             "load_average_1min": load, "cpus": os.cpu_count()}


# ============================================================================ predictions



def _seed_results(model_name: str, model_runs, test_split) -> dict:
    """{seed: {'weights', 'predicted', 'accuracy', 'confusion'}} for every finished seed with weights."""
    images, labels = test_split
    out = {}
    for seed, (weights, predicted) in predict_runs(model_runs, images, _eval_path(model_runs)).items():
        out[seed] = {"seed": seed, "weights": weights, "predicted": predicted,
                     "accuracy": float(np.mean(predicted == labels)),
                     "confusion": confusion_matrix(labels, predicted, representative(model_runs).num_classes)}
        logger.info("%s seed %d (%s): test accuracy %.4f", model_name, seed, weights, out[seed]["accuracy"])
    return out


def add_predictions(summary: dict, runs, test_split, out_dir, n_images: int = 8) -> dict:
    """Evaluate every finished seed's saved weights (best.pdparams, else final) on the test split;
    write predictions.png and confusion.png (each model's lowest seed), per_class.png and
    per_class.csv (all its seeds). Returns the figures."""
    classes = representative(runs).classes
    images, labels = test_split
    results, confusions = {}, {}
    for model_name, model_runs in by_model(runs, summary["baseline"]).items():
        seeds = _seed_results(model_name, model_runs, test_split)
        if not seeds:
            summary["notes"].append(f"{model_name}: no finished run with saved weights; no predictions")
            continue
        confusions[model_name] = {s: r["confusion"] for s, r in seeds.items()}
        results[model_name] = {**seeds[min(seeds)],
                               "seed_accuracy": {str(s): r["accuracy"] for s, r in seeds.items()}}
    summary["predictions"] = {m: {k: (v.tolist() if k == "confusion" else v) for k, v in r.items() if k != "predicted"}
                              for m, r in results.items()}
    if not results:
        return {}
    summary["per_class"] = summarize_per_class(confusions, summary["baseline"], classes)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "per_class.csv", per_class_csv(summary["per_class"]))
    figs = {"predictions.png": plot_predictions(results, images, labels, classes, n_images),
            "confusion.png": plot_confusion(results, classes), "per_class.png": plot_per_class(summary["per_class"])}
    for name, fig in figs.items():
        save_figure(fig, out_dir / name)
    return figs


def add_attention_figure(runs, baseline: str, test_split, out_dir) -> bool:
    """attention_ba_vs_se.png, BA's and SE's mean attention per channel for a few classes
    (:func:`ba_net.report.attention_figure.write_ba_vs_se`); one log line and False without both."""
    from ba_net.report.attention_figure import write_ba_vs_se
    return write_ba_vs_se(by_model(runs, baseline), test_split, out_dir)


# ================================================================================ pipeline

def _test_split(runs):
    """The test split the runs were evaluated on (their data.dataset): their data.data_file if it
    exists from here, else the usual search (BA_NET_CIFAR10 or BA_NET_CIFAR100, Paddle's cache,
    download)."""
    from ba_net import data as D

    run = representative(runs)
    if run.dataset == "imagefolder":  # its val/ folder, read where the run read it
        return D.test_split(run.config["data"])
    ds = D.dataset(run.dataset)
    data_file = run.data_file
    path = Path(data_file) if data_file and Path(data_file).is_file() else D.locate(ds)
    return D.read_split(ds, path, "test")


def compare_experiment(experiment_dir, out_dir=None, baseline: Optional[str] = None,
                       throughput: Optional[ThroughputSettings] = ThroughputSettings(),
                       predictions: bool = True, complexity: bool = True, device: str = "auto",
                       aa: Optional[str] = None) -> dict:
    """Everything ``tools/compare.py`` writes; returns the summary (comparison.json's content).
    ``baseline`` None: :func:`default_baseline`. ``aa``: a model whose seeds get the A/A control."""
    runs = collect_runs(experiment_dir)
    out_dir = Path(out_dir if out_dir is not None else experiment_dir)
    baseline = baseline or default_baseline(runs)
    summary = summarize(runs, baseline)
    if aa is not None:
        add_aa(summary, runs, aa)
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
            summary["notes"].append("No finished run saved weights: predictions.png, confusion.png, per_class.png "
                                    "and per_class.csv not written.")
        else:
            add_predictions(summary, runs, test_split, out_dir)
        add_attention_figure(runs, baseline, test_split, out_dir)
    write_tables(summary, out_dir)
    logger.info("wrote comparison.{json,md,csv} and figures to %s", out_dir)
    return summary


__all__ = ["ThroughputSettings", "add_aa", "add_complexity", "add_predictions", "add_throughput", "collect_runs",
           "compare_experiment", "default_baseline", "summarize"]
