"""Per-class test accuracy of each model: the confusion matrix of every finished seed (its
best.pdparams on the test split), per-class accuracy = diagonal / row sum, the mean and sample
std over the seeds, the difference to the baseline's mean per class, and the classes where each
model differs most. Written as per_class.csv (one row per model and class)."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

PER_CLASS_COLUMNS = ("model", "class", "n_seeds", "seeds", "acc_mean", "acc_std", "delta_vs_baseline")


def per_class_accuracy(confusion) -> np.ndarray:
    """Correct / all per true class (rows of [true, predicted]); NaN for a class without images."""
    m = np.asarray(confusion, dtype=np.float64)
    totals = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(m) / totals, np.nan)


def summarize_per_class(confusions: dict, baseline: str, classes, top: int = 3) -> dict:
    """``confusions`` = {model: {seed: confusion matrix}} -> per-class mean, std (ddof = 1, None
    for one seed), difference to the baseline (None for the baseline or without it) and the
    ``top`` classes by absolute difference."""
    models = {}
    for model, by_seed in confusions.items():
        seeds = sorted(by_seed)
        accs = np.array([per_class_accuracy(by_seed[s]) for s in seeds])
        models[model] = {"seeds": seeds, "mean": accs.mean(axis=0).tolist(),
                         "std": accs.std(axis=0, ddof=1).tolist() if len(seeds) > 1 else None,
                         "per_seed": {str(s): a.tolist() for s, a in zip(seeds, accs)}}
    base = models.get(baseline)
    for model, entry in models.items():
        entry["delta_vs_baseline"] = None
        entry["largest_differences"] = []
        if base is None or model == baseline:
            continue
        delta = np.array(entry["mean"]) - np.array(base["mean"])
        entry["delta_vs_baseline"] = delta.tolist()
        order = sorted(range(len(classes)), key=lambda i: -abs(delta[i]) if math.isfinite(delta[i]) else 0.0)
        entry["largest_differences"] = [[classes[i], float(delta[i])] for i in order[:top]]
    first = next(iter(confusions.values()), {})
    counts = np.asarray(next(iter(first.values()))).sum(axis=1).tolist() if first else []
    return {"baseline": baseline, "classes": list(classes), "images_per_class": counts, "models": models}


def _fraction(v) -> str:
    return "" if v is None or not math.isfinite(v) else repr(float(v))


def per_class_csv(per_class: dict) -> str:
    """per_class.csv: model, class, seeds, mean and std of the accuracy, difference to the baseline."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(PER_CLASS_COLUMNS)
    for model, e in per_class["models"].items():
        for i, name in enumerate(per_class["classes"]):
            writer.writerow([model, name, len(e["seeds"]), ";".join(str(s) for s in e["seeds"]),
                             _fraction(e["mean"][i]), _fraction(e["std"][i] if e["std"] else None),
                             _fraction(e["delta_vs_baseline"][i] if e["delta_vs_baseline"] else None)])
    return buf.getvalue()


def per_class_notes(per_class: dict) -> list:
    """The markdown notes: how the numbers were obtained and where each model differs most."""
    base, counts = per_class["baseline"], per_class["images_per_class"]
    seeds = ", ".join(f"{m} {len(e['seeds'])}" for m, e in per_class["models"].items())
    images = f"{min(counts):,}" if counts and min(counts) == max(counts) else f"{min(counts):,}-{max(counts):,}"
    notes = [f"Per-class test accuracy (per_class.csv, per_class.png): each finished seed's best.pdparams (else "
             f"final.pdparams) on the test split ({images} images per class), mean and sample std over the seeds "
             f"(seeds per model: {seeds})."]
    for model, e in per_class["models"].items():
        if e["largest_differences"]:
            diffs = ", ".join(f"{name} {100 * d:+.2f} pp" for name, d in e["largest_differences"])
            notes.append(f"{model} vs {base}, classes with the largest per-class differences: {diffs}.")
    if any(e["largest_differences"] for e in per_class["models"].values()) and counts:
        acc = float(np.nanmean(per_class["models"][base]["mean"])) if base in per_class["models"] else 0.5
        sd = 100 * math.sqrt(acc * (1 - acc) / max(min(counts), 1))
        notes.append(f"With {images} test images per class, one seed's per-class accuracy has a sampling standard "
                     f"deviation of about {sd:.1f} pp (binomial at {100 * acc:.0f} %), and the largest of "
                     f"{len(per_class['classes'])} class differences is picked for its size: these classes say "
                     "where to look, they are not tested findings.")
    return notes


__all__ = ["PER_CLASS_COLUMNS", "per_class_accuracy", "per_class_csv", "per_class_notes", "summarize_per_class"]
