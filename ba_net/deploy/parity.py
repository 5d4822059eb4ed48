"""The parity check of an export: the exported model's output against the dygraph model's logits
on a fixed batch of real test images (:func:`parity_check`, :func:`compare_outputs`), used by
:mod:`ba_net.deploy.export` after writing an export and by ``tools/export.py --verify``.

**What is compared.** The exported graph ends in a softmax (PaddleX shows its output as scores),
so it gives probabilities p; the check still compares logits, as **log-probabilities**: log p =
logits - logsumexp(logits), the logits up to one constant per image (the only part of the logits
a softmax keeps), so one graph, the one shipped, is checked, at export and by ``--verify`` alike.
The dygraph side is ``log_softmax`` of its float32 logits in float64. Log-probabilities are
compared above :data:`LOG_PROB_FLOOR` (log 1e-30; float32 resolves probabilities down to about
1e-38, below which both sides are zero and the log means nothing); the probabilities themselves
are compared everywhere. Both numbers go into ``export.json`` and the printed line.

**The tolerance**, :data:`PARITY_RTOL` = 1e-4 relative to the logit scale (the largest |logit| of
the dygraph model on the batch, at least 1), for both numbers (|dp| = p |d log p| <= |d log p|):
the two sides compute the same float32 function with different kernels (dygraph's own CPU
kernels against oneDNN, with batch norm folded into the convolutions and ops fused), so the
accumulation order differs and with it the rounding; float32 rounds at 6e-8 relative, and a sum
of K products in another order differs by up to about sqrt(K) x 6e-8 of the magnitude of its
terms (K = 9,216 in AlexNet's first linear layer: 6e-6). Measured on this machine: 1.5e-6 of the
logit scale for AlexNet, 4e-7 for BA-ResNet-20. 1e-4 leaves more than 10x headroom over that,
while a wrong export (batch norm in train mode, a missing attention, a changed weight) moves
logits by 1e-2 of their scale or more.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ba_net.errors import CheckFailed

PARITY_IMAGES = 64
PARITY_RTOL = 1e-4  # of the logit scale; see the module docstring
LOG_PROB_FLOOR = float(np.log(1e-30))  # log-probabilities are compared above it
EMBEDDED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "cifar-10-sample.tar.gz"


class ParityError(CheckFailed):
    """The exported model's logits differ from the dygraph model's beyond the tolerance (or the
    export cannot be loaded by Paddle Inference at all)."""


def split_images(data_file: Optional[str] = None, fallback: Optional[str] = None, dataset: str = "cifar10"):
    """(images, labels, path) of the test split of ``dataset``'s tarball: ``data_file`` (a
    DataError when it is given but not a file), else ``fallback`` (a run's data file) when it is
    one, else for CIFAR-10 the embedded sample, else the file where training would find it,
    without downloading. For ``imagefolder`` the two are image folder roots (the run's
    ``data.data_dir``, :attr:`ba_net.runs.results.Run.data_file`) and the test split is its val/
    (files, decoded when indexed)."""
    from ba_net import data as D
    from ba_net.errors import DataError

    if dataset == "imagefolder":
        if data_file and not Path(data_file).is_dir():
            raise DataError(f"--data-file {data_file} is not a folder; pass the image folder (train/ and val/) "
                            f"the run read, or leave it out")
        root = data_file or fallback
        if not root:
            raise DataError("the run records no image folder (data.data_dir); pass --data-file with its root")
        images, labels = D.test_split({"dataset": "imagefolder", "data_dir": str(root)})
        return images, labels, Path(root)
    if data_file and not Path(data_file).is_file():
        raise DataError(f"--data-file {data_file} is not a file; pass the {dataset} tarball or leave it out")
    ds = D.dataset(dataset)
    sample = EMBEDDED_SAMPLE if dataset == "cifar10" else None
    path = next((Path(f) for f in (data_file, fallback, sample) if f and Path(f).is_file()), None)
    path = path or D.locate(ds, None, download=False)
    images, labels = D.read_split(ds, path, "test")
    return images, labels, path


def compare_logits(reference: np.ndarray, candidate: np.ndarray, rtol: float = PARITY_RTOL) -> dict:
    """max |reference - candidate| (two logit arrays) against ``rtol`` x the logit scale (max
    |reference|, at least 1); NaN or Inf anywhere fails."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return _shape_mismatch(reference, candidate)
    diff = np.abs(reference - candidate)
    max_diff = float(diff.max()) if np.all(np.isfinite(diff)) else float("nan")
    scale = float(np.abs(reference).max())
    tol = rtol * max(1.0, scale)
    return {"passed": bool(max_diff <= tol), "max_abs_diff": max_diff, "logit_scale": scale, "rtol": rtol,
            "tolerance": tol, "images": len(reference), "top1_agree": int((reference.argmax(1) == candidate.argmax(1)).sum())}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def compare_outputs(logits: np.ndarray, probabilities: np.ndarray, rtol: float = PARITY_RTOL) -> dict:
    """The export's ``probabilities`` against the dygraph model's ``logits`` (see the module
    docstring): max |log-probability diff| (above :data:`LOG_PROB_FLOOR`) and max |probability
    diff|, each against ``rtol`` x the logit scale (max |logit|, at least 1); NaN, Inf or a
    negative probability fails."""
    logits = np.asarray(logits, dtype=np.float64)
    candidate = np.asarray(probabilities, dtype=np.float64)
    if logits.shape != candidate.shape:
        return _shape_mismatch(logits, candidate)
    reference = log_softmax(logits)
    finite = bool(np.all(np.isfinite(candidate)) and np.all(candidate >= 0))
    with np.errstate(divide="ignore"):
        logp = np.log(candidate) if finite else np.full_like(candidate, np.nan)
    logp_diff = np.abs(np.maximum(reference, LOG_PROB_FLOOR) - np.maximum(logp, LOG_PROB_FLOOR))
    prob_diff = np.abs(np.exp(reference) - candidate)
    max_logp = float(logp_diff.max()) if finite else float("nan")
    max_prob = float(prob_diff.max()) if finite else float("nan")
    scale = float(np.abs(logits).max())
    tol = rtol * max(1.0, scale)
    return {"passed": bool(max_logp <= tol and max_prob <= tol), "compared": "log-probabilities and probabilities",
            "max_abs_diff": max_logp, "max_prob_diff": max_prob, "logit_scale": scale, "rtol": rtol, "tolerance": tol,
            "images": len(logits), "top1_agree": int((logits.argmax(1) == candidate.argmax(1)).sum())}


def _shape_mismatch(reference, candidate) -> dict:
    return {"passed": False, "max_abs_diff": float("inf"), "logit_scale": None, "tolerance": None, "top1_agree": 0,
            "images": len(reference), "reason": f"output shape {list(candidate.shape)} is not {list(reference.shape)}"}


def parity_batch(prepare: Callable, n: int = PARITY_IMAGES, data_file: Optional[str] = None,
                 fallback: Optional[str] = None, dataset: str = "cifar10"):
    """The fixed parity batch: the first ``n`` test images of ``data_file`` (else ``fallback``,
    the run's data file, else the embedded sample) through ``prepare`` (the export's eval
    transform); returns (NCHW float32, path)."""
    images, _, path = split_images(data_file, fallback, dataset)
    return np.stack([prepare(images[i]) for i in range(min(n, len(images)))]).astype(np.float32), path


def parity_check(model, forward: Callable, batch: np.ndarray, what: str, rtol: float = PARITY_RTOL) -> dict:
    """Logits of the dygraph ``model`` against the probabilities of ``forward`` (the export;
    numpy in, numpy out) on ``batch`` (:func:`compare_outputs`); ParityError when they differ
    beyond the tolerance."""
    import paddle

    with paddle.no_grad():
        reference = model(paddle.to_tensor(batch)).numpy()
    try:
        candidate = np.asarray(forward(batch))
    except Exception as exc:
        raise ParityError(f"parity check failed: {what} cannot run ({exc.__class__.__name__}: "
                          f"{' '.join(str(exc).split())[:200]})") from None
    result = compare_outputs(reference, candidate, rtol)
    if not result["passed"]:
        reason = result.get("reason") or (f"max |log-prob diff| {result['max_abs_diff']:.3g}, max |prob diff| "
                                          f"{result['max_prob_diff']:.3g} > tolerance {result['tolerance']:.3g} "
                                          f"({rtol:g} x logit scale {result['logit_scale']:.3g}), top-1 agrees on "
                                          f"{result['top1_agree']} of {result['images']} images")
        raise ParityError(f"parity check failed: {what} against the dygraph model: {reason}")
    return result


def inference_forward(prefix: Path, what: str) -> Callable:
    """Paddle Inference on the model saved at ``prefix`` (``<prefix>.json``, ``.pdiparams``), as a
    numpy -> numpy function; ParityError when it cannot be loaded."""
    from ba_net.accel.inference import InferenceRunner

    try:
        return InferenceRunner(prefix).run_numpy
    except Exception as exc:  # a corrupt or truncated model file: Paddle raises from C++
        raise ParityError(f"parity check failed: Paddle Inference cannot load {what} ({exc.__class__.__name__}: "
                          f"{' '.join(str(exc).split())[:200]})") from None


def describe_parity(result: dict, label: str = "Paddle Inference") -> str:
    """The printed line of a passed check: both numbers, the tolerance, the top-1 agreement."""
    if "max_prob_diff" not in result:  # two logit arrays (compare_logits)
        diffs = f"max |logit diff| {result['max_abs_diff']:.2e}"
    else:
        diffs = (f"max |log-prob diff| {result['max_abs_diff']:.2e}, max |prob diff| "
                 f"{result['max_prob_diff']:.2e}")
    return (f"parity ({label} vs dygraph) on {result['images']} test images of {result.get('data_file', '?')}: "
            f"{diffs} (logit scale {result['logit_scale']:.3g}, tolerance {result['tolerance']:.2e}): pass; "
            f"top-1 agrees on {result['top1_agree']}/{result['images']}")


__all__ = ["LOG_PROB_FLOOR", "PARITY_IMAGES", "PARITY_RTOL", "ParityError", "compare_logits", "compare_outputs",
           "describe_parity", "inference_forward", "log_softmax", "parity_batch", "parity_check", "split_images"]
