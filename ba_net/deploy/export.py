"""A finished run to an inference model PaddleX runs as it is, checked against the run's own model.

:func:`export_run` is ``tools/export.py``: it opens the finished run
(:func:`ba_net.runs.results.open_run`), rebuilds its model with its ``best`` or ``final`` weights
(:meth:`ba_net.runs.results.Run.build_model`) and writes the export folder:

* ``inference.json`` + ``inference.pdiparams``: the model followed by a softmax, saved by
  :func:`ba_net.accel.inference.export_for_inference` (``paddle.jit.save``); input ``images``
  [N, 3, S, S] float32 RGB, normalized; output the class probabilities [N, classes];
* ``inference.yml``: what PaddleX needs to run it (:mod:`ba_net.deploy.paddlex`: model name,
  pre-processing, ``Topk`` with the class names);
* ``export.json``, the *spec*: the input, the transform (below), the class names, where the
  weights came from and the parity result.

Then the **parity check** (:mod:`ba_net.deploy.parity`): the export is loaded with Paddle
Inference and its output on a fixed batch of real test images (the first :data:`PARITY_IMAGES`
of the run's data file, else of the embedded sample) is compared with the dygraph model's
logits, as log-probabilities and as probabilities; above the tolerance the export fails and
nothing is kept. Everything is written into a hidden temporary folder beside the destination and
renamed into place at the end, so the destination holds a complete, checked export or nothing.
:func:`verify_export` repeats the check on an existing export folder (e.g. after copying it).

**One pre-processing everywhere.** The transform an export declares (:func:`preset_transform`,
``export.json``'s ``transform``, ``inference.yml``'s ``transform_ops``) is one resize straight to
the model's input side, then normalization, with no crop: ``notebook`` / ``plain`` resize to 128
px with bilinear interpolation (``cv2.INTER_LINEAR``, what their eval transform does to 32 px
images), ``cifar`` to 32 px with ``cv2.INTER_AREA`` (a 32 x 32 image is not resized at all, as
in its eval transform; a larger one is averaged down, not aliased). :func:`spec_transform` is
that transform, used by tools/predict.py for exports and run folders alike; PaddleX applies the
same steps from ``inference.yml``. On CIFAR images (32 x 32) it is each preset's eval transform
bit for bit (tested), which is also what tools/compare.py's figures apply. Why one step: PaddleX
keeps its pre-processing steps by name (a second ``ResizeImage`` replaces the first) and stacks
the images of a batch before the graph runs, so the two-step resize of earlier exports (any
image to 32 px with INTER_AREA, then to the preset's side) can be expressed neither in its
config nor in the graph. What it changes: only images that are not 32 x 32, and only for the
128 px presets; such an image is now resized once, bilinearly, to 128 px (stretched, not
cropped), so it keeps the detail it has above 32 px instead of being reduced to 32 px first. The
``cifar`` preset's transform is unchanged (one INTER_AREA resize to 32 px).

Exports of earlier versions (``model.json`` + ``model.pdiparams``, ``export.json`` format
``ba-net export 1``) are refused by :func:`read_spec` with one line naming the command that
exports the run again: their two-step resize is what PaddleX cannot run.
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
from ba_net.deploy.paddlex import CONFIG_FILE, PADDLEX_MODEL_NAME, write_inference_config
from ba_net.deploy.parity import PARITY_IMAGES, PARITY_RTOL, inference_forward, parity_batch, parity_check
from ba_net.runs.results import WEIGHT_TAGS, Run, open_run

logger = logging.getLogger(__name__)

SPEC_FILE = "export.json"
SPEC_FORMAT = "ba-net export 2"
LEGACY_FORMAT = "ba-net export 1"  # model.json + model.pdiparams, two-step resize, logits: refused
MODEL_PREFIX = "inference"  # export_for_inference writes <folder>/inference.json and inference.pdiparams
ONNX_FILE = "inference.onnx"
ONNX_OPSET = 11
INTERPOLATIONS = {"LINEAR": cv2.INTER_LINEAR, "AREA": cv2.INTER_AREA}  # PaddleX's names -> OpenCV's


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
        "output": {"shape": [None, run.num_classes], "values": "probabilities (softmax in the graph)"},
        "transform": {"preset": p.name, "description": p.description, "image_size": size, **preset_transform(p),
                      "scale": "pixel / 255", "mean": list(p.mean), "std": list(p.std)},
        "paddlex": {"model_name": PADDLEX_MODEL_NAME, "config": CONFIG_FILE},
        "paddle_version": paddle.__version__,
    }


def preset_transform(p) -> dict:
    """The preset ``p``'s eval transform as one step PaddleX can express: ``resize`` (``size``: a
    square of that side; ``resize_short``: the short side to it, the long one in proportion),
    ``interpolation`` (PaddleX's name) and ``crop`` (a centred square, or None). See the module
    docstring for the choice. A preset without such a step is refused (RunStateError)."""
    if p.name in ("notebook", "plain"):  # their eval: cv2.resize to 128 px, INTER_LINEAR
        return {"resize": {"size": p.image_size}, "interpolation": "LINEAR", "crop": None}
    if p.name == "cifar":  # its eval: no resize (32 px); any other size: INTER_AREA to 32 px
        return {"resize": {"size": p.image_size}, "interpolation": "AREA", "crop": None}
    if p.name.startswith("imagenet"):  # short side to size / 0.875, centre crop (PaddleX's rounding)
        return {"resize": {"resize_short": int(p.image_size / 0.875)}, "interpolation": "AREA",
                "crop": p.image_size}
    raise RunStateError(f"preset {p.name}: tools/export.py knows no single-step transform PaddleX can run for "
                        f"it; add one to ba_net.deploy.export.preset_transform")


def spec_transform(spec: dict) -> Callable:
    """The image preparation a spec describes, exactly as PaddleX runs ``inference.yml``: HWC
    uint8 RGB (any size) -> resized (not when it has the size already) -> centre-cropped (if the
    spec says so) -> CHW float32, normalized. On 32 x 32 images this is each CIFAR preset's eval
    transform bit for bit (tested)."""
    t = spec["transform"]
    resize, crop = t["resize"], t.get("crop")
    interpolation = INTERPOLATIONS[t["interpolation"]]
    mean = np.asarray(t["mean"], dtype=np.float32)
    std = np.asarray(t["std"], dtype=np.float32)

    def prepare(img: np.ndarray, rng=None) -> np.ndarray:
        h, w = img.shape[:2]
        if "size" in resize:
            th = tw = int(resize["size"])
        else:  # PaddleX's ResizeByShort: both sides scaled, rounded
            scale = int(resize["resize_short"]) / min(h, w)
            th, tw = round(h * scale), round(w * scale)
        if (th, tw) != (h, w):
            img = cv2.resize(img, (tw, th), interpolation=interpolation)
        if crop:  # PaddleX's CropImage: the centred square, offsets rounded down
            top, left = max(0, (th - int(crop)) // 2), max(0, (tw - int(crop)) // 2)
            img = img[top:top + int(crop), left:left + int(crop)]
        return ((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)

    return prepare


def read_spec(export_dir) -> dict:
    """The ``export.json`` of an export folder; one-line errors for a missing or foreign one."""
    from ba_net.files import read_json

    folder = Path(export_dir)
    if not folder.is_dir():
        raise RunStateError(f"export folder {folder} does not exist; pass a folder written by tools/export.py")
    spec = read_json(folder / SPEC_FILE, "export spec")
    if spec.get("format") == LEGACY_FORMAT:
        again = (f"python tools/export.py {spec.get('source_run', 'RUN_DIR')} --weights {spec.get('weights', 'best')} "
                 f"--out {folder} --force")
        raise RunStateError(f"{folder} is an export of an earlier ba-net (model.json, a two-step resize PaddleX "
                            f"cannot run); export the run again: {again}")
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
    """``inference.onnx`` converted from the Paddle 3 export in ``folder`` by paddle2onnx (opset
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
        raise BaNetError(f"paddle2onnx wrote no {ONNX_FILE}; export without --onnx")
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
        export_for_inference(model, tmp, (3, size, size), prefix=MODEL_PREFIX, softmax=True)
        write_inference_config(tmp, spec)
        logger.info("parity check on %d test images of %s ...", len(batch), _relative(batch_source))
        result = parity_check(model, inference_forward(tmp / MODEL_PREFIX, "the exported model"), batch,
                              "Paddle Inference", rtol)
        spec["parity"] = {**result, "data_file": str(batch_source), "split": "test", "first_images": len(batch)}
        spec["files"] = {"model": f"{MODEL_PREFIX}.json", "params": f"{MODEL_PREFIX}.pdiparams", "config": CONFIG_FILE,
                         "onnx": None}
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
    """``inference.onnx`` beside the Paddle export in ``folder``, and its parity result (None, with
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
    result = {**parity_check(model, inference_forward(folder / MODEL_PREFIX, str(folder)), batch, "Paddle Inference",
                             rtol), "data_file": str(source)}
    onnx = (spec.get("files") or {}).get("onnx")
    if onnx and (folder / onnx).is_file():
        forward = _onnx_forward(folder / onnx)
        if forward is not None:
            result["onnx"] = {**parity_check(model, forward, batch, "ONNX Runtime", rtol), "data_file": str(source)}
    return result


__all__ = ["MODEL_PREFIX", "SPEC_FILE", "SPEC_FORMAT", "build_run_model", "default_export_dir", "export_run",
           "preset_transform", "read_spec", "run_spec", "spec_transform", "verify_export"]
