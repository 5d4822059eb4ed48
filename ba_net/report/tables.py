"""The comparison's tables: comparison.md (the table, the conclusions in words, the A/A control,
the reproducibility of each model's seeds, the runs, how every number was obtained),
comparison.csv (one row per model) and comparison.json (the whole summary), written by
:func:`write_tables` from the summary that :func:`ba_net.report.compare.summarize` starts."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ba_net.files import atomic_write_json, atomic_write_text
from ba_net.report.per_class import per_class_notes
from ba_net.report.power import ALPHA, MAX_SEEDS, POWER
from ba_net.report.published import HEADER as PUBLISHED_HEADER, published_cell

# The notebook's throughput (test-set pass, data loading included, one V100 GPU).
NOTEBOOK_THROUGHPUT = {"AlexNet": 2612.0, "BA-AlexNet": 2533.0}

CSV_COLUMNS = ("model", "n_seeds", "n_runs", "n_excluded", "seeds", "val_acc_best_mean", "val_acc_best_std",
               "val_acc_final_mean", "val_acc_final_std", "train_acc_final_mean", "train_acc_final_std",
               "delta_vs_baseline", "delta_ci95_low", "delta_ci95_high", "p_value", "test", "params_total",
               "params_trainable", "macs", "throughput_img_s", "throughput_notebook_img_s", "wall_time_s_mean",
               "wall_time_s_std", "mde", "seeds_needed", "conclusion", "test_acc_mean", "test_acc_std",
               "test_acc_best_mean", "test_acc_best_std", "ema_acc_mean", "ema_acc_std")

# The accuracy columns of the table, by what the statistics compare (summary["metric"]): (header, row key).
ACC_COLUMNS = {
    "val_acc_best": (("best val acc %", "val_acc_best"), ("final val acc %", "val_acc_final"),
                     ("final train acc %", "train_acc_final")),
    "test_acc": (("test acc % (epoch of best val)", "test_acc"),
                 ("best test acc % (epoch picked on test: the notebook's figure, optimistic)", "test_acc_best"),
                 ("best val acc % (held out)", "val_acc_best"), ("final train acc %", "train_acc_final")),
}
RUN_COLUMNS = {"val_acc_best": (("best val acc %", "best_val_acc"), ("final val acc %", "final_val_acc")),
               "test_acc": (("test acc % (epoch of best val)", "test_acc"), ("best test acc %", "best_test_acc"),
                            ("best val acc %", "best_val_acc"))}
DELTA_OF = {"val_acc_best": "best val", "test_acc": "test acc"}
TOP5_HEADER = "top-5 % (same epoch)"
TOP5_CSV = ("acc5_mean", "acc5_std")  # with the top-5 column (data sets of more than 10 classes)
PUBLISHED_CSV = ("published_top1_pct", "published_source")  # with the published column (ImageNet-like data)


def _published(summary: dict) -> dict:
    """The published figures compare shows ({} when it shows none)."""
    published = summary.get("published") or {}
    return published if published.get("shown") else {}


def csv_columns(summary: dict) -> tuple:
    """comparison.csv's columns: :data:`CSV_COLUMNS`, then top-5 and the published figure when the
    table shows them."""
    return CSV_COLUMNS + (TOP5_CSV if summary.get("top5") else ()) + (PUBLISHED_CSV if _published(summary) else ())


def _pct(v, signed=False) -> str:
    return "–" if v is None else f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def _mean_pm_std(row, key) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if mean is None:
        return "n/a" if key == "acc5" else "–"  # top-5: a history from before it was recorded
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


def _mde_cell(row) -> str:
    return "–" if row.get("mde") is None else f"{100 * row['mde']:.2f}"


def _needed_cell(row) -> str:
    if row.get("mde") is None:
        return "–"
    if row["seeds_needed"] is not None:
        return f"{row['seeds_needed']:,}"
    return "– (Δ = 0)" if abs(row["delta_vs_baseline"]) <= 1e-12 else f"> {MAX_SEEDS:,}"


def _count(v) -> str:
    return "–" if v is None else f"{v:,}"


def _speed(v, summary) -> str:
    if summary["throughput"] is None:
        return "skipped"
    return "–" if v is None else f"{v:.0f}"


def comparison_table(summary: dict) -> str:
    """The comparison table (Markdown): one row per model, its accuracy over seeds, the difference
    to the baseline with its interval, p, power, parameters, MACs and throughput."""
    rows, base, metric = summary["rows"], summary["baseline"], summary.get("metric", "val_acc_best")
    acc_columns = ACC_COLUMNS[metric][:1] + (((TOP5_HEADER, "acc5"),) if summary.get("top5") else ()) + \
        ACC_COLUMNS[metric][1:] + ((("EMA weights: " + ACC_COLUMNS[metric][0][0], "ema_acc"),)
                                   if any(r.get("ema_acc_mean") is not None for r in rows) else ())
    published = _published(summary)
    heads = ["model", "seeds", *(h for h, _ in acc_columns), *([PUBLISHED_HEADER] if published else []),
             f"Δ {DELTA_OF[metric]} vs {base} (pp) [95 % CI]",
             "p", "min. detectable Δ (pp)", "seeds to detect Δ", "params total (trainable)", "MACs / image",
             "img/s benchmark", "img/s test-set pass"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        seeds = f"{r['n_seeds']} of {r['n_runs']}"
        params = "–" if r["params_total"] is None else f"{_count(r['params_total'])} ({_count(r['params_trainable'])})"
        accs = " | ".join([_mean_pm_std(r, key) for _, key in acc_columns]
                          + ([published_cell(published, r["model"])] if published else []))
        out.append(f"| {r['model']} | {seeds} | {accs} | {_delta_cell(r)} | {_p_cell(r)} | {_mde_cell(r)} | "
                   f"{_needed_cell(r)} | {params} | "
                   f"{_count(r['macs'])} | {_speed(r['throughput_img_s'], summary)} | "
                   f"{_speed(r['throughput_notebook_img_s'], summary)} |")
    return "\n".join(out)


def markdown(summary: dict) -> str:
    """comparison.md: the table, the conclusions, the reproducibility of the seeds, the runs, and how every
    number was obtained."""
    metric = summary.get("metric", "val_acc_best")
    out = [f"# Comparison: experiment `{summary['experiment']}`", "", comparison_table(summary)]
    out += _conclusions(summary) + _reproducibility(summary)
    run_columns = RUN_COLUMNS[metric][:1] + ((("top-5 %", "acc5"),) if summary.get("top5") else ()) + \
        RUN_COLUMNS[metric][1:]
    run_heads = [h for h, _ in run_columns]
    out += ["", "## Runs", "", "| model | seed | status | epochs | " + " | ".join(run_heads) + " | final train acc % | "
            "wall time s | note |", "|" + "---|" * (7 + len(run_heads))]
    for run in summary["runs"]:
        note = "" if run["included"] else "excluded from the statistics" + (f": {run['reason']}" if run["reason"] else "")
        accs = " | ".join("n/a" if key == "acc5" and run.get(key) is None else _pct(run.get(key))
                          for _, key in run_columns)
        out.append(f"| {run['model']} | {run['seed']} | {run['status']} | {run['epochs_done']}/{run['epochs_planned']} | "
                   f"{accs} | {_pct(run['final_train_acc'])} | {run['wall_time_s']:.1f} | {note} |")
    out += ["", "## Method", ""] + [f"- {line}" for line in _method_notes(summary)]
    return "\n".join(out) + "\n"


def _conclusions(summary: dict) -> list:
    out = ["", "## Conclusions", ""] + [f"- {r['conclusion']}" for r in summary["rows"] if r.get("conclusion")]
    if summary.get("aa"):
        aa = summary["aa"]
        out += ["", f"A/A control (seed noise alone: {aa['model']}'s seeds in two halves, compared like two models):",
                "", f"- {aa['sentence']}"]
    return out


def _reproducibility(summary: dict) -> list:
    out = ["", "## Reproducibility", "", "Each model's finished runs, compared with each other (config.yaml apart "
           "from the seed, where the data lives and how it is loaded; Paddle version and device as the run recorded "
           "them).", "", "| model | seeds | configs apart from the seed | Paddle | device | processes | global batch |",
           "|---|---|---|---|---|---|---|"]
    for rep in summary.get("reproducibility") or []:
        configs = "identical" if rep["configs_identical"] else "differ: " + "; ".join(rep["config_differences"])
        out.append(f"| {rep['model']} | {', '.join(str(s) for s in rep['seeds']) or '–'} | {configs} | "
                   f"{rep['paddle_version']} | {rep['device']} | {rep.get('processes', '–')} | "
                   f"{rep.get('global_batch', '–')} |")
    return out


def _power_notes(summary: dict) -> list:
    notes = [f"Min. detectable Δ: the smallest true difference the test (paired or Welch, as for the p-value) "
             f"detects with power {POWER:g} at two-sided alpha {ALPHA:g} with the seeds run, from the observed seed "
             "noise (paired: the SD of the per-seed differences; Welch: each model's SD). Seeds to detect Δ: the "
             f"fewest seeds per model at which the observed Δ would be detected with power {POWER:g}, with the same "
             f"noise (> {MAX_SEEDS:,}: more than that). Exact power: the noncentral t for the paired test, the "
             "Welch statistic's distribution integrated over the two sample variances for Welch (ba_net.report.power). "
             "Both figures take the observed Δ and SDs as if they were the true ones; from few seeds they are "
             "rough planning numbers."]
    aa = summary.get("aa")
    if aa:
        notes.append("A/A control: the first half of the model's finished seeds (by seed number) against the second "
                     "half, by Welch's test (the halves share no seed), reported like a model against the baseline. "
                     "Its Δ and interval show how large a difference seed noise alone makes with half the seeds. "
                     f"With {aa['n_seeds'][0]} + {aa['n_seeds'][1]} seeds, Welch's test calls pure noise "
                     f"'distinguishable' {100 * aa['welch_size']:.1f} % of the time (equal SDs, exact; it is "
                     f"conservative at few seeds), against the nominal {100 * ALPHA:g} %.")
    return notes


def _method_notes(summary: dict) -> list:
    rows, base = summary["rows"], summary["baseline"]
    n_runs = len(summary["runs"])
    if summary.get("metric") == "test_acc":
        what = ("Accuracies are fractions of the data set's test split, or of the validation set held out of the "
                "training images (data.val_split, class-stratified, the same images for every model and seed); "
                "each run's best epoch (and best.pdparams) is the one with the highest held-out accuracy, and its "
                "test accuracy at that epoch is what the statistics compare. 'Best test acc' is the notebook's "
                "figure (the best test accuracy of any epoch), kept for comparison: it is optimistic")
        compared = "test accuracy at the epoch of best val"
    else:
        what = ("Accuracies are fractions of the validation split (which is the data set's test split, as in the "
                "notebook, so the best epoch is picked on test data and is optimistic; data.val_split avoids that)")
        compared = "best val accuracy"
    notes = [
        f"Statistics use finished runs only. {what}, shown in %: mean ± sample standard deviation (ddof = 1) over "
        "the finished seeds of each model (the 'seeds' column: finished of all runs); best = highest accuracy of "
        "any epoch, final = the last epoch.",
        f"Δ is the mean {compared} minus {base}'s, in percentage points. 95 % CI and two-sided p: a paired "
        "t-test over seeds when both models finished the same seeds, Welch's t-test otherwise (t quantiles and "
        "p-values from scipy.stats.t). With one seed on a side no interval is possible "
        "and CI and p are left empty.",
    ] + _power_notes(summary)
    if summary.get("top5"):
        notes.append(f"{TOP5_HEADER}: top-5 accuracy (the label among the five highest logits) of the same epoch "
                     "and split as the first accuracy column, mean ± std over the same seeds; shown for data sets of "
                     "more than 10 classes. n/a: a run's history was written before top-5 was recorded.")
    if (summary.get("published") or {}).get("note"):
        notes.append(summary["published"]["note"])
    if any(r.get("ema_acc_mean") is not None for r in rows):
        notes.append("EMA weights: the exponential moving average of each run's weights (train.ema_decay), "
                     "evaluated every epoch beside them; its column applies the first column's rule to the "
                     "average's own validation accuracy. Δ, CI and p compare the raw weights.")
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
                     "running mean/variance included) and trainable. MACs: forward multiply-accumulates for one "
                     f"{_image_text(summary['complexity'])}, "
                     "paddle.flops' count (which it calls FLOPs), attention's functional ops included.")
    notes += _throughput_notes(summary)
    pred = summary["predictions"]
    if pred:
        notes.append("predictions.png / confusion.png: each model's lowest finished seed, best.pdparams (else "
                     "final.pdparams), on the test split: " + "; ".join(
                         f"{m} seed {p['seed']} {p['weights']} accuracy {_pct(p['accuracy'])} %" for m, p in pred.items()) + ".")
    if summary.get("per_class"):
        notes += per_class_notes(summary["per_class"])
    notes += summary["notes"]
    return notes


def _image_text(sizes: dict) -> str:
    """'3x32x32 image' when every model takes the same size, else each model's size."""
    if sizes.get("image_size"):
        return f"3x{sizes['image_size']}x{sizes['image_size']} image"
    per = ", ".join(f"{m} {s} px" for m, s in (sizes.get("image_sizes") or {}).items())
    return f"image at each model's input size ({per})"


def _throughput_notes(summary: dict) -> list:
    tp = summary["throughput"]
    if tp is None:
        return ["Throughput: skipped (--no-throughput)."]
    how = {"fast": "Paddle Inference (exported model, oneDNN)", "dygraph": "dygraph"}.get(tp.get("path"), "dygraph")
    if not tp["device"].startswith("cpu"):
        how = "dygraph"  # ba_net.accel.paths.eval_model keeps dygraph on GPU
    notes = [f"Throughput on {tp['device']} with {how} (train.path: {tp.get('path', 'fast')}), eval mode, fresh "
             f"weights. Benchmark: batch {tp['batch_size']} of random input ({_image_text(tp)}), "
             f"{tp['warmup']} warm-up passes, median of {tp['repeats']} "
             "timed passes."]
    if tp["device"].startswith("cpu") and tp.get("load_average_1min") is not None:
        notes.append(f"System load when the measurement started: {tp['load_average_1min']:.1f} (1-minute average) "
                     f"on {tp['cpus']} CPUs; a load near or above the CPU count means other processes shared the "
                     "cores and the img/s numbers are low and noisy.")
    if tp["notebook_way"]:
        cap = "" if tp["max_batches"] is None else f", first {tp['max_batches']} batches"
        notes.append(f"Test-set pass (the notebook's way): one warm-up batch, then an eval pass over the "
                     f"{tp['notebook_images']} test images{cap} through the data loader ({tp['num_workers']} workers; "
                     "decoding and the eval transform of the runs' data preset included), images / wall time.")
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
    columns = csv_columns(summary)
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    published = _published(summary).get("models", {})
    for r in summary["rows"]:
        ci = r["delta_ci95"] or (None, None)
        entry = published.get(r["model"]) or {}
        flat = {**r, "seeds": ";".join(str(s) for s in r["seeds"]), "delta_ci95_low": ci[0], "delta_ci95_high": ci[1],
                "published_top1_pct": entry.get("top1"), "published_source": entry.get("source")}
        writer.writerow({k: "" if flat.get(k) is None else flat[k] for k in columns})
    return buf.getvalue()


def write_tables(summary: dict, out_dir) -> None:
    """comparison.json, comparison.md and comparison.csv in ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "comparison.json", summary)
    atomic_write_text(out_dir / "comparison.md", markdown(summary))
    atomic_write_text(out_dir / "comparison.csv", _csv(summary))


__all__ = ["CSV_COLUMNS", "NOTEBOOK_THROUGHPUT", "TOP5_HEADER", "comparison_table", "csv_columns", "markdown",
           "write_tables"]
