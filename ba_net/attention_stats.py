"""What a model's attention modules do on real images: their gate values, captured in one
forward, for the training dashboard and for tools/compare.py's BA-vs-SE figure.

* :func:`attention_modules` finds every module of :mod:`ba_net.attention` in a model that has a
  ``weights(...)`` method (BA, SE, ECA, SAM, CBAM's channel and spatial gates, the multi-attention
  head's pools), by its name in ``model.named_sublayers()`` (``attention`` in AlexNet,
  ``layer1.0.attention`` in the CIFAR ResNets, ``attention.channel_gate`` for CBAM).
* :func:`probe` runs one forward of a batch in eval mode under ``no_grad``, with a forward
  pre-hook on each of those modules that calls its ``weights`` on the module's own inputs; it
  returns the predicted classes and ``{module name: gates}``. The layers' train/eval flags are
  restored afterwards and no random generator is drawn from, so training continues exactly as
  without it.
* :func:`fixed_batch` is the batch the dashboard probes every epoch: the first
  :data:`FIXED_IMAGES` images, in file order, of the split the run validates on (``data.val_split``'s
  held-out images, else the test split), under the eval transform -- the same images every epoch.
* :func:`prediction_grid` draws the first :data:`GRID_IMAGES` of them with true and predicted class.
* :func:`write_ba_vs_se` writes ``attention_ba_vs_se.png`` for tools/compare.py.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle

logger = logging.getLogger(__name__)

FIXED_IMAGES = 32  # the dashboard's fixed validation batch: the first 32 images of the validation split
GRID_IMAGES = 16  # of which the prediction grid shows the first 16, 8 per row
GRID_COLUMNS = 8
TILE = 64  # each 32 px CIFAR image drawn at 64 px
CAPTION = 24  # two caption lines under each tile
CELL_WIDTH = TILE + 12  # room for 12 characters of caption ("T automobile")
FIGURE_CLASSES = 3  # classes in attention_ba_vs_se.png
FIGURE_NAME = "attention_ba_vs_se.png"


@dataclass
class FixedBatch:
    """The images a run probes every epoch: ``raw`` HWC uint8 as stored, ``inputs`` NCHW float32
    under the eval transform, their ``labels`` and the class names."""

    raw: np.ndarray
    inputs: np.ndarray
    labels: np.ndarray
    classes: tuple


def fixed_batch(loader, classes, n: int = FIXED_IMAGES) -> FixedBatch:
    """The first ``n`` images of ``loader``'s dataset (an evaluation loader: eval transform, which
    draws nothing from its generator), read directly (the loader itself is not iterated)."""
    ds = loader.dataset
    n = min(n, len(ds))
    items = [ds[(i, 0, 0)] for i in range(n)]
    return FixedBatch(np.asarray(ds.images[:n]), np.stack([x for x, _ in items]).astype(np.float32),
                      np.asarray([int(y) for _, y in items]), tuple(classes))


def attention_modules(model) -> list:
    """[(name, layer)] of the modules from :mod:`ba_net.attention` in ``model`` that have ``weights``."""
    return [(name, layer) for name, layer in model.named_sublayers()
            if type(layer).__module__.startswith("ba_net.attention.") and callable(getattr(layer, "weights", None))]


def _recorder(name: str, layer, out: dict):
    """A forward pre-hook that appends ``layer.weights(*inputs)`` (numpy) to ``out[name]``."""
    takes_input = bool(inspect.signature(layer.weights).parameters)  # GlobalWeightedAvgPool's are parameters only

    def hook(_layer, inputs):
        gates = layer.weights(*inputs) if takes_input else layer.weights()
        out.setdefault(name, []).append(gates.numpy())

    return hook


def probe(model, inputs: np.ndarray) -> tuple:
    """(predicted classes, {module name: gates}) of ``model`` on ``inputs`` (NCHW float32): one
    forward in eval mode under no_grad; every layer's train/eval flag is restored afterwards.
    A module's gates keep the shape its ``weights`` returns ([B, C, 1, 1] for channel gates,
    [B, 1, H, W] for spatial ones)."""
    captured = {}
    handles = [layer.register_forward_pre_hook(_recorder(name, layer, captured))
               for name, layer in attention_modules(model)]
    modes = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    model.eval()
    try:
        with paddle.no_grad():
            logits = model(paddle.to_tensor(inputs))
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes:
            layer.training = training
    gates = {name: np.concatenate(parts) if len(parts) > 1 else parts[0] for name, parts in captured.items()}
    return logits.numpy().argmax(axis=1), gates


def per_channel(gates: np.ndarray) -> np.ndarray:
    """[B, C]: each image's gate per channel (the mean over positions for gates with positions)."""
    return gates.reshape(gates.shape[0], gates.shape[1], -1).mean(axis=2)


def prediction_grid(batch: FixedBatch, predicted, n: int = GRID_IMAGES, columns: int = GRID_COLUMNS) -> np.ndarray:
    """A HWC uint8 image: the first ``n`` images of ``batch``, each over two lines 'T <true>' and
    'P <predicted>', the second green when right and red when wrong."""
    from PIL import Image, ImageDraw

    n = min(n, len(batch.raw))
    rows = -(-n // columns)
    cell_w, cell_h = CELL_WIDTH, TILE + CAPTION + 4
    grid = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    name = (lambda k: batch.classes[k] if k < len(batch.classes) else str(k))
    for i in range(n):
        x, y = (i % columns) * cell_w + 6, (i // columns) * cell_h + 2
        grid.paste(Image.fromarray(batch.raw[i]).resize((TILE, TILE), Image.NEAREST), (x, y))
        true, pred = int(batch.labels[i]), int(predicted[i])
        draw.text((x - 4, y + TILE), f"T {name(true)}"[:12], fill=(0, 0, 0))
        draw.text((x - 4, y + TILE + 11), f"P {name(pred)}"[:12], fill=(0, 140, 0) if pred == true else (200, 0, 0))
    return np.asarray(grid)


# ============================================================ tools/compare.py's figure

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


def write_ba_vs_se(groups: dict, test_split, out_dir, model_kwargs, preset, class_names) -> bool:
    """attention_ba_vs_se.png: the mean gate per channel of the last attention module of BA and
    of SE (each model's lowest finished seed's weights, best else final) for the first
    :data:`FIGURE_CLASSES` classes of the test split, averaged over each class's test images.
    ``groups``: {model: its runs}. Skipped with one log line (returns False) when the experiment
    lacks either model, or weights for it."""
    from ba_net.models import build_model
    from ba_net.plots import plot_attention_channels, save_figure
    from ba_net.predict import prediction_run
    from ba_net.runs import load_weights

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
        model = build_model(name, **model_kwargs(groups[name]))
        load_weights(model, run.weights(), f"{name} seed {run.seed} weights")
        module, means = class_means(model, images, labels, preset(groups[name]).eval, classes)
        curves[f"{name} seed {run.seed} ({run.weights().stem}), {module}"] = {class_names[c]: v for c, v in means.items()}
    save_figure(plot_attention_channels(curves), Path(out_dir) / FIGURE_NAME)
    logger.info("wrote %s (%s vs %s)", FIGURE_NAME, *pair)
    return True


__all__ = ["FIXED_IMAGES", "FixedBatch", "attention_modules", "class_means", "fixed_batch", "per_channel",
           "prediction_grid", "probe", "write_ba_vs_se"]
