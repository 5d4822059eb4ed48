"""A run's VisualDL log (``<run>/vdl/vdlrecords.run.log``), shown by ``visualdl --logdir <output_dir>``.

Scalars (step: the iteration for the first two, the epoch for the others):

* ``loss/train_iter``, ``lr``: every ``train.log_every`` iterations;
* ``loss/train``, ``loss/val``, ``acc/train``, ``acc/val``, ``acc5/val`` (top-5), ``lr/epoch``:
  every epoch, and ``loss/test``, ``acc/test``, ``acc5/test`` when ``data.val_split`` holds a
  validation set out of train (a history from before top-5 was recorded has no ``acc5/*``);
* ``hparam/best_val_acc``, ``hparam/final_val_acc``, ``hparam/final_train_acc``: once, when the
  run finishes; with the hyperparameters of :func:`run_hparams` they make the HYPERPARAMETERS tab.

Attention and predictions (step: the epoch), by :func:`log_probe` from one forward, in eval mode
and without gradients, of a fixed validation batch -- the first 32 images of the split the run
validates on (:func:`ba_net.attention.probe.fixed_batch`), the same every epoch:

* ``attention/<module>``: a histogram (:data:`HIST_BUCKETS` buckets) of the gate values of each
  attention module, named as in ``model.named_sublayers()`` (``attention/attention`` for
  BA-AlexNet, ``attention/layer1.0.attention`` ... for the CIFAR ResNets,
  ``attention/attention.channel_gate`` and ``.spatial_gate`` for CBAM): 32 x C values for a
  channel gate, 32 x H x W for a spatial one. Models without attention log none.
* ``predictions/val``: an image, the first 16 of those images with their true (T) and
  predicted (P, green right, red wrong) class.

Only the epochs trained by this process get these two: a resumed run's log is rebuilt from
history.json, which holds the scalars alone.
"""
from __future__ import annotations

import shutil

from dataclasses import dataclass

import numpy as np

from ba_net.attention.probe import probe

HIST_BUCKETS = 20
FIXED_IMAGES = 32  # the fixed validation batch: the first 32 images of the validation split
GRID_IMAGES = 16  # of which the prediction grid shows the first 16, 8 per row
GRID_COLUMNS = 8
TILE = 64  # each image drawn at 64 x 64 px (a 32 px CIFAR image twice its size)
CAPTION = 24  # two caption lines under each tile
CELL_WIDTH = TILE + 12  # room for 12 characters of caption ("T automobile")
PREDICTION_TAG = "predictions/val"
METRICS = ("hparam/best_val_acc", "hparam/final_val_acc", "hparam/final_train_acc")
EPOCH_TAGS = (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("acc/train", "train_acc"),
              ("acc/val", "val_acc"), ("acc5/val", "val_acc5"), ("lr/epoch", "lr"), ("loss/test", "test_loss"),
              ("acc/test", "test_acc"), ("acc5/test", "test_acc5"))


@dataclass
class FixedBatch:
    """The images a run probes every epoch: ``raw`` a list of HWC uint8 images as stored (an
    image folder's at their own sizes), ``inputs`` NCHW float32 under the eval transform, their
    ``labels`` and the class names."""

    raw: list
    inputs: np.ndarray
    labels: np.ndarray
    classes: tuple


def fixed_batch(loader, classes, n: int = FIXED_IMAGES) -> FixedBatch:
    """The first ``n`` images of ``loader``'s dataset (an evaluation loader: eval transform, which
    draws nothing from its generator), read directly (the loader itself is not iterated)."""
    ds = loader.dataset
    n = min(n, len(ds))
    items = [ds.load((i, 0, 0)) for i in range(n)]
    raw = [np.asarray(ds.images[i]) for i in range(n)]  # not stacked: an image folder's differ in size
    return FixedBatch(raw, np.stack([x for x, _ in items]).astype(np.float32),
                      np.asarray([int(y) for _, y in items]), tuple(classes))


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


def run_hparams(cfg: dict, model: str, seed: int) -> dict:
    """The hyperparameters a run is listed with."""
    return {"model": model, "seed": seed, "epochs": cfg["train"]["epochs"], "batch_size": cfg["train"]["batch_size"],
            "optimizer": cfg["optimizer"]["name"], "lr": cfg["optimizer"]["lr"],
            "weight_decay": cfg["optimizer"]["weight_decay"], "label_smoothing": cfg["loss"]["label_smoothing"],
            "transforms": cfg["data"]["transforms"], "mixup_alpha": cfg["data"]["mixup_alpha"]}


def open_writer(vdl_dir, history: dict, hparams: dict):
    """A fresh VisualDL log holding everything ``history`` has so far (VisualDL shows only the
    newest log file of a folder, so a resumed run rewrites its log rather than adding one)."""
    from visualdl import LogWriter

    shutil.rmtree(vdl_dir, ignore_errors=True)
    run_name = f"{history['experiment']}/{history['model']}/seed{history['seed']}"
    writer = LogWriter(logdir=str(vdl_dir), file_name="vdlrecords.run.log", display_name=run_name)
    writer.add_hparams(hparams, list(METRICS))
    for it in history["iters"]:
        log_iter(writer, it)
    for ep in history["epochs"]:
        log_epoch(writer, ep)
    return writer


def log_iter(writer, it: dict) -> None:
    writer.add_scalar("loss/train_iter", it["loss"], it["iter"])
    writer.add_scalar("lr", it["lr"], it["iter"])


def log_epoch(writer, ep: dict) -> None:
    for tag, key in EPOCH_TAGS:
        if key in ep:  # test_* only with a held-out validation set
            writer.add_scalar(tag, ep[key], ep["epoch"])


def log_final(writer, history: dict) -> None:
    """The hparam/* metrics of a finished run, at its last epoch."""
    last = history["epochs"][-1]
    for tag, value in zip(METRICS, (history["best_val_acc"], last["val_acc"], last["train_acc"])):
        writer.add_scalar(tag, value, last["epoch"])


def log_probe(writer, model, batch: FixedBatch, epoch: int) -> None:
    """The ``attention/*`` histograms and the ``predictions/val`` grid of ``model`` on ``batch``."""
    predicted, gates = probe(model, batch.inputs)
    for name, values in gates.items():
        writer.add_histogram(f"attention/{name}", values.reshape(-1), epoch, buckets=HIST_BUCKETS)
    writer.add_image(PREDICTION_TAG, prediction_grid(batch, predicted), epoch)


__all__ = ["run_hparams", "log_epoch", "log_final", "log_iter", "log_probe", "open_writer"]
