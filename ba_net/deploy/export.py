"""A finished run to a Paddle inference model, checked against the run's own model.

:func:`export_run` is ``tools/export.py``: it opens the finished run
(:func:`ba_net.runs.results.open_run`), rebuilds its model with its ``best`` or ``final`` weights
(:meth:`ba_net.runs.results.Run.build_model`), writes it with
:func:`ba_net.accel.inference.export_for_inference` (``paddle.jit.save``: ``model.json`` +
``model.pdiparams``) and writes beside it ``export.json``,
the *spec*: the input (name, shape, dtype, layout, channel order), the eval transform's parameters
(preset, sizes, mean, std), the class names, and where the weights came from. Then the **parity
check** (:func:`parity_check`): the export is loaded with Paddle Inference
(:class:`ba_net.accel.inference.InferenceRunner`) and its logits on a fixed batch of real test images
(the first :data:`PARITY_IMAGES` of the run's data file, else of the embedded sample) are compared
with the dygraph model's; above the tolerance the export fails and nothing is kept. Everything is
written into a hidden temporary folder beside the destination and renamed into place at the end,
so the destination holds a complete, checked export or nothing. :func:`verify_export` repeats the
check on an existing export folder (e.g. after copying it).

The tolerance and why: :mod:`ba_net.deploy.parity`.

:func:`spec_transform` turns a spec's transform parameters back into the function that
prepares an image: it reproduces each preset's eval transform exactly on 32 x 32 images and first
brings an image of any other size to 32 x 32, the side of the CIFAR-10 images the model learnt
from (``cv2.INTER_AREA``, stretched, not cropped).
"""
from __future__ import annotations

import datetime
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from ba_net.errors import BaNetError, OutputError, RunStateError
from ba_net.deploy.parity import PARITY_IMAGES, PARITY_RTOL, inference_forward, parity_batch, parity_check
from ba_net.runs.results import WEIGHT_TAGS, Run, open_run

logger = logging.getLogger(__name__)

SPEC_FILE = "export.json"
SPEC_FORMAT = "ba-net export 1"
MODEL_PREFIX = "model"  # export_for_inference writes <folder>/model.json and model.pdiparams
ONNX_FILE = "model.onnx"
ONNX_OPSET = 11
SOURCE_SIZE = 32  # CIFAR-10's image side: any other image is first resized to it


# ------------------------------------------------------------------------------- the run

def build_run_model(run: Run, tag: str):
    """(the run's model in eval mode with its ``tag`` weights, the weights file): what the export,
    its verification and predicting from a run folder start from."""
    return run.build_model(tag), run.weights(tag)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------- the spec

def run_spec(run: Run, tag: str, model, weights: Path) -> dict:
    """What ``export.json`` says about a model of ``run`` (all but the files and the parity)."""
    import paddle

    p = run.preset
    size = run.input_size(model)
    if size != p.image_size:
        raise RunStateError(f"run {run.folder}: model {run.model} takes {size} px images but its preset "
                            f"{p.name} gives {p.image_size} px; the run cannot have trained like this")
    return {
        "format": SPEC_FORMAT, "model": run.model, "model_kwargs": run.model_kwargs,
        "dataset": run.dataset, "num_classes": run.num_classes, "classes": list(run.classes),
        "experiment": run.experiment, "seed": run.seed, "source_run": str(run.folder.resolve()),
        "weights": tag, "weights_file": str(weights.resolve()), "weights_sha256": _sha256(weights),
        "best_val_acc": run.history.get("best_val_acc"), "epochs": len(run.epochs),
        "data_file": run.data_file,
        "input": {"name": "images", "shape": [None, 3, size, size], "dtype": "float32", "layout": "NCHW",
                  "channels": "RGB"},
        "transform": {"preset": p.name, "description": p.description, "source_size": SOURCE_SIZE,
                      "image_size": size, "resize_interpolation": "linear" if size != SOURCE_SIZE else None,
                      "scale": "pixel / 255", "mean": list(p.mean), "std": list(p.std)},
        "paddle_version": paddle.__version__,
    }


def spec_transform(spec: dict) -> Callable:
    """The image preparation a spec describes: HWC uint8 RGB (any size) -> CHW float32. An image
    that is not ``source_size`` square is first resized to it (INTER_AREA, stretched), then
    resized to ``image_size`` (INTER_LINEAR) when that differs, then normalized. On 32 x 32 images
    this is exactly the preset's eval transform (tested)."""
    t = spec["transform"]
    source, size = int(t["source_size"]), int(t["image_size"])
    mean = np.asarray(t["mean"], dtype=np.float32)
    std = np.asarray(t["std"], dtype=np.float32)

    def prepare(img: np.ndarray, rng=None) -> np.ndarray:
        if img.shape[:2] != (source, source):
            img = cv2.resize(img, (source, source), interpolation=cv2.INTER_AREA)
        if size != source:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
        return ((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)

    return prepare


def read_spec(export_dir) -> dict:
    """The ``export.json`` of an export folder; one-line errors for a missing or foreign one."""
    from ba_net.files import read_json

    folder = Path(export_dir)
    if not folder.is_dir():
        raise RunStateError(f"export folder {folder} does not exist; pass a folder written by tools/export.py")
    spec = read_json(folder / SPEC_FILE, "export spec")
    missing = [k for k in ("format", "model", "classes", "input", "transform") if k not in spec]
    if spec.get("format") != SPEC_FORMAT or missing:
        raise RunStateError(f"{folder / SPEC_FILE} is not a ba-net export spec ({SPEC_FORMAT!r}); export the run "
                            f"again with tools/export.py")
    return spec


# ------------------------------------------------------------------------------ ONNX

def onnx_available() -> None:
    """Refuse ``--onnx`` before anything is written when paddle2onnx is missing."""
    try:
        import paddle2onnx  # noqa: F401
    except ImportError:
        raise BaNetError("--onnx needs paddle2onnx: pip install paddle2onnx (into this environment), or export "
                         "without --onnx") from None


def write_onnx(folder: Path) -> Path:
    """``model.onnx`` converted from the Paddle 3 export in ``folder`` by paddle2onnx (opset
    :data:`ONNX_OPSET`; ``optimize_tool='None'``: its default, polygraphy, pip-installs
    onnxruntime and onnx_graphsurgeon on first use)."""
    import paddle2onnx

    out = folder / ONNX_FILE
    try:
        paddle2onnx.export(str(folder / f"{MODEL_PREFIX}.json"), str(folder / f"{MODEL_PREFIX}.pdiparams"), str(out),
                           opset_version=ONNX_OPSET, optimize_tool="None", verbose=False)
    except Exception as exc:
        raise BaNetError(f"paddle2onnx could not convert the export ({exc.__class__.__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); export without --onnx") from None
    if not out.is_file():
        raise BaNetError("paddle2onnx wrote no model.onnx; export without --onnx")
    return out


def _onnx_forward(path: Path) -> Optional[Callable]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


# ----------------------------------------------------------------------------- export

def default_export_dir(run: Run, tag: str) -> Path:
    """``<output_dir>/export/<experiment>-<model>-seed<N>-<tag>``, ``<output_dir>`` being the
    folder that holds the run's experiment (the run is ``<output_dir>/<experiment>/<model>/seed<N>``)."""
    root = run.folder.resolve()
    output_dir = root.parents[2] if len(root.parents) > 2 else root.parent
    return output_dir / "export" / f"{run.experiment}-{run.model}-seed{run.seed}-{tag}"


def _relative(path) -> str:
    """``path`` relative to the working folder when it lies under it, else as it is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _check_destination(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputError(out, "it exists", "pass --force to replace it, or --out another folder")
    if out.exists() and not out.is_dir():
        raise OutputError(out, "it is a file, not an export folder", "remove it or pass --out another folder")


def export_run(run_dir, weights: str = "best", out=None, force: bool = False, onnx: bool = False,
               parity_images: int = PARITY_IMAGES, data_file: Optional[str] = None,
               rtol: float = PARITY_RTOL) -> dict:
    """Export the finished run in ``run_dir`` (its ``weights`` = best | final) into ``out``
    (default :func:`default_export_dir`), parity-checked; returns the spec as written. An existing
    ``out`` is refused unless ``force``; on any error (parity included) nothing is left behind."""
    from ba_net.files import atomic_write_json, write_error
    from ba_net.accel.inference import export_for_inference

    if weights not in WEIGHT_TAGS:
        raise RunStateError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHT_TAGS)}")
    if parity_images < 1:
        raise BaNetError(f"--parity-images must be at least 1, not {parity_images}")
    run = open_run(run_dir)
    weights_file = run.weights(weights)
    out = Path(out) if out is not None else default_export_dir(run, weights)
    _check_destination(out, force)
    if onnx:
        onnx_available()
    start = time.monotonic()
    model, weights_file = build_run_model(run, weights)
    spec = run_spec(run, weights, model, weights_file)
    batch, batch_source = parity_batch(spec_transform(spec), parity_images, data_file, spec.get("data_file"),
                                   spec.get("dataset", "cifar10"))
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the export gets the usual mode
    except OSError as exc:
        raise write_error(out, exc) from None
    try:
        logger.info("exporting %s (%s, %s weights) with paddle.jit.save ...", _relative(run.folder), run.model, weights)
        size = spec["input"]["shape"][-1]
        export_for_inference(model, tmp, (3, size, size))
        logger.info("parity check on %d test images of %s ...", len(batch), _relative(batch_source))
        result = parity_check(model, inference_forward(tmp / MODEL_PREFIX, "the exported model"), batch, "Paddle Inference", rtol)
        spec["parity"] = {**result, "data_file": str(batch_source), "split": "test", "first_images": len(batch)}
        spec["files"] = {"model": f"{MODEL_PREFIX}.json", "params": f"{MODEL_PREFIX}.pdiparams", "onnx": None}
        if onnx:
            spec["files"]["onnx"], spec["onnx_parity"] = ONNX_FILE, _export_onnx(tmp, model, batch, batch_source, rtol)
        spec["created"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        atomic_write_json(tmp / SPEC_FILE, spec)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # folders made for the export, if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    spec["export_dir"] = str(out)
    spec["seconds"] = time.monotonic() - start
    return spec


def _export_onnx(folder: Path, model, batch, batch_source, rtol: float) -> Optional[dict]:
    """``model.onnx`` beside the Paddle export in ``folder``, and its parity result (None, with
    one warning line, when onnxruntime is missing to check it)."""
    write_onnx(folder)
    forward = _onnx_forward(folder / ONNX_FILE)
    if forward is None:
        logger.warning("onnxruntime is not installed: the ONNX model's logits were not checked "
                       "(pip install onnxruntime to check them)")
        return None
    return {**parity_check(model, forward, batch, "ONNX Runtime", rtol), "data_file": str(batch_source)}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``; an existing ``out`` (with --force) is renamed away
    first and removed only after the new one is in place."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=out.parent))
        os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old / out.name, out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def verify_export(export_dir, parity_images: Optional[int] = None, data_file: Optional[str] = None,
                  rtol: float = PARITY_RTOL) -> dict:
    """Repeat the parity check of an existing export against its source run (which must still
    hold the same weights, by sha256); returns the result, raises ParityError on a mismatch."""
    folder = Path(export_dir)
    spec = read_spec(folder)
    run = open_run(spec["source_run"])
    model, weights = build_run_model(run, spec["weights"])
    if _sha256(weights) != spec.get("weights_sha256"):
        raise RunStateError(f"{weights} changed since {folder} was exported (sha256 differs): the run was "
                            f"retrained; export it again (tools/export.py {run.folder} --force)")
    n = parity_images or (spec.get("parity") or {}).get("first_images") or PARITY_IMAGES
    batch, source = parity_batch(spec_transform(spec), n, data_file, spec.get("data_file"),
                                   spec.get("dataset", "cifar10"))
    logger.info("parity check of %s on %d test images of %s ...", _relative(folder), len(batch), _relative(source))
    result = {**parity_check(model, inference_forward(folder / MODEL_PREFIX, str(folder)), batch, "Paddle Inference", rtol),
              "data_file": str(source)}
    onnx = (spec.get("files") or {}).get("onnx")
    if onnx and (folder / onnx).is_file():
        forward = _onnx_forward(folder / onnx)
        if forward is not None:
            result["onnx"] = {**parity_check(model, forward, batch, "ONNX Runtime", rtol), "data_file": str(source)}
    return result


__all__ = ["build_run_model", "default_export_dir", "export_run", "read_spec", "run_spec",
           "spec_transform", "verify_export"]
