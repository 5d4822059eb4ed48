"""``tools/predict.py``: top-k classes of image files, folders or the test split through an exported
model or a run's weights (:func:`load_classifier`, :func:`predict_items`, :func:`predictions_csv`,
:func:`predictions_table`).

Every image goes through the transform the export declares (:func:`ba_net.deploy.export.spec_transform`:
one resize straight to the model's side, then normalization; for a run folder, the transform its
export would declare), which is what PaddleX applies to the same export from its
``inference.yml``: tools/predict.py and PaddleX agree on images of any size (tests/test_paddlex.py).
An export's graph gives the probabilities (softmax in the graph); a run folder's model gives
logits, turned into probabilities here."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ba_net.runtime import hms

logger = logging.getLogger(__name__)


@dataclass
class Classifier:
    """A model to classify with: ``forward`` maps a NCHW float32 batch to class probabilities
    (numpy, float64), after the images went through ``transform`` (the spec's,
    :func:`ba_net.deploy.export.spec_transform`)."""

    spec: dict
    forward: Callable
    transform: Callable
    source: str

    @property
    def classes(self) -> list:
        return list(self.spec["classes"])


def load_classifier(path, weights: Optional[str] = None) -> Classifier:
    """An export folder (``export.json``, run with Paddle Inference) or a finished run folder
    (:func:`ba_net.runs.results.open_run`; its ``weights`` = best | final, default best, run in
    dygraph), with its eval transform (the run's spec, as the export would write it). An export of
    an earlier ba-net (``model.json``) is refused with one line saying how to export it again."""
    import paddle

    from ba_net.errors import RunStateError
    from ba_net.deploy.export import MODEL_PREFIX, SPEC_FILE, build_run_model, read_spec, run_spec, spec_transform
    from ba_net.runs.results import open_run

    folder = Path(path)
    if not folder.is_dir():
        raise RunStateError(f"model {folder} does not exist; pass an export folder (tools/export.py) or a run folder")
    if (folder / SPEC_FILE).is_file():
        if weights is not None:
            raise RunStateError(f"--weights applies to a run folder; the export {folder} holds its "
                                f"{read_spec(folder).get('weights')} weights already")
        spec = read_spec(folder)
        from ba_net.accel.inference import InferenceRunner

        try:
            runner = InferenceRunner(folder / MODEL_PREFIX)
        except Exception as exc:
            raise RunStateError(f"Paddle Inference cannot load the export {folder} ({exc.__class__.__name__}); "
                                f"export the run again") from None
        return Classifier(spec, lambda batch: np.asarray(runner.run_numpy(batch), dtype=np.float64),
                          spec_transform(spec),
                          f"export {folder} (Paddle Inference; {spec['model']} seed {spec.get('seed')}, "
                          f"{spec.get('weights')} weights)")
    if (folder / "history.json").is_file():
        run = open_run(folder)
        tag = weights or "best"
        model, weights_file = build_run_model(run, tag)
        spec = run_spec(run, tag, model, weights_file)

        def forward(batch):
            with paddle.no_grad():
                return softmax(model(paddle.to_tensor(batch)).numpy())

        return Classifier(spec, forward, spec_transform(spec),
                          f"run {folder} ({run.model} seed {run.seed}, {weights_file.name}, dygraph)")
    raise RunStateError(f"{folder} is neither an export folder ({SPEC_FILE}) nor a run folder (history.json); "
                        f"pass a folder written by tools/export.py or tools/train.py")


@dataclass
class Item:
    """One image to classify: a file (read when its batch comes) or an image in memory."""

    name: str
    path: Optional[Path] = None
    image: Optional[np.ndarray] = None
    label: Optional[int] = None
    explicit: bool = True  # named on the command line: unreadable is an error, not a skip


def file_items(inputs) -> list:
    """Items for image files and folders (a folder: its files, not hidden ones, by name, not
    recursive). A missing path or a folder without files is a one-line DataError."""
    from ba_net.errors import DataError

    items = []
    for value in inputs:
        path = Path(value)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise DataError(f"folder {path} holds no files to classify")
            items += [Item(str(f), f, explicit=False) for f in files]
        elif path.is_file():
            items.append(Item(str(path), path))
        else:
            raise DataError(f"{path} does not exist; pass image files or folders of images")
    if not items:
        raise DataError("no images given: pass image files, folders, or --test-split")
    return items


def split_items(data_file: Optional[str], fallback: Optional[str], limit: Optional[int] = None,
                dataset: str = "cifar10"):
    """(items, path): the test split of ``data_file``, else of ``fallback`` (the model's run's
    data file), else (CIFAR-10) of the embedded sample, else where training finds it
    (:func:`ba_net.deploy.parity.split_images`); its first ``limit`` images."""
    from ba_net.deploy.parity import split_images

    images, labels, path = split_images(data_file, fallback, dataset)
    n = len(images) if limit is None else min(limit, len(images))
    width = len(str(len(images) - 1))
    return [Item(f"test[{i:0{width}d}]", image=images[i], label=int(labels[i])) for i in range(n)], path


def read_image(path) -> Optional[np.ndarray]:
    """The file as HWC uint8 RGB (OpenCV decodes it as BGR, converted), None if it is no image
    OpenCV can decode or cannot be read."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (rows sum to 1 within 1e-12)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_items(classifier: Classifier, items, batch_size: int = 64, k: int = 5) -> dict:
    """Top-``k`` classes of every readable item, in batches of ``batch_size``. A file from a
    folder that cannot be read is logged (one line) and skipped; a file named explicitly is a
    DataError. Progress with ETA is logged about every 10 % (runs of 10 batches or more) or 10 s.
    Returns {'rows': [{'image', 'true_class', 'top': [(index, class, probability)]}],
    'probabilities' [N, classes], 'skipped': [names], 'images', 'seconds' (reading, transform and
    forward), 'forward_seconds', 'img_s', 'forward_img_s'}."""
    from ba_net.errors import DataError

    if batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, not {batch_size}")
    classes = classifier.classes
    k = min(k, len(classes))
    if k < 1:
        raise DataError(f"-k must be at least 1, not {k}")
    rows, probs, skipped = [], [], []
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    start = last_log = time.monotonic()
    forward_time, done, tenth = 0.0, 0, 0
    for b, batch in enumerate(batches, 1):
        kept, tensors = [], []
        for item in batch:
            img = item.image if item.image is not None else read_image(item.path)
            if img is None:
                if item.explicit:
                    raise DataError(f"cannot read {item.name}: not an image OpenCV can decode; pass image files "
                                    f"(PNG, JPEG, BMP, ...)")
                logger.warning("skipped %s: not an image OpenCV can decode", item.name)
                skipped.append(item.name)
                continue
            kept.append(item)
            tensors.append(classifier.transform(img))
        done += len(batch)
        if kept:
            t0 = time.monotonic()
            p = np.asarray(classifier.forward(np.stack(tensors).astype(np.float32)), dtype=np.float64)
            forward_time += time.monotonic() - t0
            probs.append(p)
            order = np.argsort(-p, axis=1, kind="stable")[:, :k]
            for item, row, top in zip(kept, p, order):
                rows.append({"image": item.name, "true_class": None if item.label is None else classes[item.label],
                             "top": [(int(c), classes[c], float(row[c])) for c in top]})
        now = time.monotonic()
        if b < len(batches) and ((len(batches) >= 10 and 10 * b // len(batches) > tenth) or now - last_log >= 10):
            tenth, last_log = 10 * b // len(batches), now
            rate = done / max(now - start, 1e-9)
            logger.info("predict: %d/%d images (%d %%), %.0f img/s, ETA %s", done, len(items), 100 * done // len(items),
                        rate, hms((len(items) - done) / max(rate, 1e-9)))
    seconds = time.monotonic() - start
    if not rows:
        raise DataError(f"none of the {len(items)} files could be read as an image; nothing written")
    n = len(rows)
    return {"rows": rows, "probabilities": np.concatenate(probs), "skipped": skipped, "images": n, "k": k,
            "seconds": seconds, "forward_seconds": forward_time, "img_s": n / max(seconds, 1e-9),
            "forward_img_s": n / max(forward_time, 1e-9)}


def csv_columns(k: int) -> list:
    """image, true_class (empty for files), then top<i>_index, top<i>_class, top<i>_prob for i = 1..k."""
    return ["image", "true_class"] + [f"top{i}_{f}" for i in range(1, k + 1) for f in ("index", "class", "prob")]


def predictions_csv(result: dict) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_columns(result["k"]))
    for row in result["rows"]:
        writer.writerow([row["image"], row["true_class"] or ""] +
                        [v for c, name, p in row["top"] for v in (c, name, f"{p:.6f}")])
    return buf.getvalue()


def predictions_table(result: dict, limit: Optional[int] = 20) -> str:
    """A text table: image, true class (test split), then the top-k as 'class prob'; the first
    ``limit`` rows (None: all) and a line saying how many more there are."""
    rows = result["rows"] if limit is None else result["rows"][:limit]
    truth = any(r["true_class"] for r in result["rows"])
    header = ["image"] + (["true"] if truth else []) + [f"top-{i}" for i in range(1, result["k"] + 1)]
    body = [[r["image"]] + ([r["true_class"] or ""] if truth else []) + [f"{name} {p:.3f}" for _, name, p in r["top"]]
            for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(rows) < len(result["rows"]):
        lines.append(f"... {len(result['rows']) - len(rows)} more rows in the CSV")
    return "\n".join(lines)


__all__ = ["Classifier", "Item", "csv_columns", "file_items", "load_classifier", "predict_items", "predictions_csv",
           "predictions_table", "read_image", "softmax", "split_items"]
