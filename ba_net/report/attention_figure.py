"""tools/compare.py's ``attention_ba_vs_se.png``: the mean gate per channel of the last attention
module of a BA model and of its SE counterpart, per class of the test split (gates captured by
:func:`ba_net.attention.probe.probe`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ba_net.attention.probe import per_channel, probe

logger = logging.getLogger(__name__)

FIGURE_CLASSES = 3  # classes in attention_ba_vs_se.png
FIGURE_NAME = "attention_ba_vs_se.png"


def ba_se_pair(names) -> tuple:
    """(BA model, its SE counterpart) among ``names`` (ba_alexnet / alexnet_se, ba_resnet20 /
    resnet20_se, ...), the first by name; None when there is none."""
    for name in sorted(names):
        if name.startswith("ba_") and f"{name[3:]}_se" in names:
            return name, f"{name[3:]}_se"
    return None


def class_means(model, images, labels, transform, classes, batch_size: int = 64) -> tuple:
    """(name of ``model``'s last attention module, {class: its mean gate per channel over that
    class's images}); the images go through ``transform`` in batches."""
    sums, counts, module = {}, {}, None
    wanted = np.isin(labels, classes)
    for start in range(0, int(wanted.sum()), batch_size):
        idx = np.flatnonzero(wanted)[start:start + batch_size]
        _, gates = probe(model, np.stack([transform(images[i]) for i in idx]).astype(np.float32))
        module = list(gates)[-1]
        per = per_channel(gates[module])
        for c in classes:
            mask = labels[idx] == c
            sums[c] = sums.get(c, 0.0) + per[mask].sum(axis=0)
            counts[c] = counts.get(c, 0) + int(mask.sum())
    return module, {c: sums[c] / counts[c] for c in classes if counts.get(c)}


def write_ba_vs_se(groups: dict, test_split, out_dir) -> bool:
    """attention_ba_vs_se.png: the mean gate per channel of the last attention module of BA and
    of SE (each model's lowest finished seed's weights, best else final, under its preset's eval
    transform) for the first :data:`FIGURE_CLASSES` classes of the test split, averaged over each
    class's test images and named by the run's classes. ``groups``: {model: its runs}. Skipped
    with one log line (returns False) when the experiment lacks either model, or weights for it."""
    from ba_net.report.plots import plot_attention_channels, save_figure
    from ba_net.report.predictions import prediction_run

    pair = ba_se_pair(set(groups))
    chosen = {m: prediction_run(groups[m]) for m in pair} if pair else {}
    if not pair or test_split is None or None in chosen.values():
        logger.info("%s not written: it needs a BA model and its SE counterpart (e.g. ba_resnet20 and resnet20_se) "
                    "with finished runs that saved weights; this experiment has %s", FIGURE_NAME,
                    ", ".join(sorted(groups)) or "no runs")
        return False
    images, labels = test_split
    classes = [int(c) for c in np.unique(labels)[:FIGURE_CLASSES]]
    curves = {}
    for name, run in chosen.items():
        module, means = class_means(run.build_model(), images, labels, run.preset.eval, classes)
        names = run.classes
        curves[f"{name} seed {run.seed} ({run.weights().stem}), {module}"] = {names[c]: v for c, v in means.items()}
    save_figure(plot_attention_channels(curves), Path(out_dir) / FIGURE_NAME)
    logger.info("wrote %s (%s vs %s)", FIGURE_NAME, *pair)
    return True


__all__ = ["FIGURE_NAME", "ba_se_pair", "class_means", "write_ba_vs_se"]
