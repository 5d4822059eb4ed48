"""What each row of tools/benchmark.py measures, on the current device, medians of repeats
(timing: :mod:`ba_net.speed`):

* the fp32 GEMM rate of this machine (Paddle ``matmul`` of two n x n matrices in this process's
  tuned environment, and NumPy's for reference), the yardstick for "% of GEMM";
* train-step images/s on a synthetic batch (forward, backward, optimizer update) for each path:
  ``notebook`` (dygraph in Paddle's default environment: one thread, no MKL CPU switch),
  ``dygraph`` (tuned environment), ``to_static`` (``paddle.jit.to_static``, PIR) and ``fast``
  (:mod:`ba_net.accel`);
* end-to-end training images/s: the engine's ``train_epoch`` over the CIFAR-10 data through
  ``data.build_loader`` with the notebook's per-image augmentation;
* evaluation images/s: a forward pass on a synthetic batch, and the notebook's throughput cell
  (an eval pass over the test split, loading and resizing included), in dygraph and with the
  exported model in Paddle Inference;
* BA-AlexNet's overhead over AlexNet with both models in one process, alternated step by step.

:func:`measure_here` runs one of them in this process; :mod:`ba_net.benchmark` runs each in a
subprocess of its own and prints the table.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ba_net.speed import eval_pass_rate, forward_rate, median_rate, synthetic_batch

logger = logging.getLogger(__name__)

MODELS = ("alexnet", "ba_alexnet")
TRAIN_PATHS = ("notebook", "dygraph", "to_static", "fast")
EVAL_PATHS = ("notebook", "dygraph", "inference")


@dataclasses.dataclass
class Settings:
    batch_size: int = 128
    steps: int = 5  # timed steps (or batches) per repeat
    repeats: int = 3  # the median of the repeats is reported
    warmup: int = 2  # untimed steps before the first repeat
    models: tuple = MODELS
    data_file: Optional[str] = None
    gemm_size: int = 4096
    workers: Optional[int] = None  # loader workers of the fast path; None: the config default
    eval_batches: Optional[int] = None  # cap on test batches per eval pass; None: the whole split
    quick: bool = False
    device: str = "auto"  # auto, cpu or gpu: every measuring subprocess uses it too

    @classmethod
    def quick_settings(cls, **overrides) -> "Settings":
        """Tiny settings for a smoke test: numbers of no value, every row present."""
        base = dict(batch_size=8, steps=1, repeats=1, warmup=1, gemm_size=512, eval_batches=1, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# ------------------------------------------------------------------------------------ GEMM

def measure_gemm(n: int, repeats: int) -> dict:
    """fp32 GFLOP/s of an n x n x n matrix product: Paddle (this process) and NumPy."""
    import paddle

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)

    def paddle_mm():
        paddle.matmul(pa, pb).numpy()
        return 1

    def numpy_mm():
        a @ b
        return 1

    out = {}
    for name, fn in (("paddle", paddle_mm), ("numpy", numpy_mm)):
        out[name] = median_rate(fn, 1, max(3, repeats))["img_s"] * flops / 1e9
    logger.info("GEMM %d^3 fp32: Paddle %.0f GFLOP/s, NumPy %.0f GFLOP/s", n, out["paddle"], out["numpy"])
    return out


# -------------------------------------------------------------------------------- training

def _config(settings: Settings, path: str, workers: int = 0) -> dict:
    from ba_net.config import load_config

    return load_config(None, (f"train.batch_size={settings.batch_size}", f"train.path={path}",
                              f"data.num_workers={workers}", "device=cpu" if on_cpu() else "device=auto"))


def on_cpu() -> bool:
    import paddle

    return not paddle.device.get_device().startswith("gpu")


def _trainer(model_name: str, path: str, cfg: dict) -> dict:
    """Model, optimizer, scheduler, loss, ``step(images, target) -> loss`` and the fast trainer
    (None on the dygraph paths) for one training path."""
    import paddle

    from ba_net import accel
    from ba_net.optim import build_optimizer
    from ba_net.loss import LabelSmoothingCrossEntropy
    from ba_net.models import build_model

    paddle.seed(0)
    model = build_model(model_name)
    scheduler = paddle.optimizer.lr.LambdaDecay(cfg["optimizer"]["lr"], lambda _: 1.0)
    optimizer = build_optimizer(cfg, model.parameters(), scheduler)
    loss_fn = LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"])
    model.train()
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loss_fn": loss_fn, "fast": None}
    if path == "fast":
        fast = accel.prepare_training(cfg, model_name, model, optimizer, lambda p: build_optimizer(cfg, p, scheduler),
                                      loss_fn, device=paddle.device.get_device())
        if fast is None:
            raise RuntimeError("the fast path is not available here (see the log)")
        parts.update(fast=fast, step=lambda x, y: fast(x, y)[1])
        return parts
    forward = paddle.jit.to_static(model, full_graph=True) if path == "to_static" else model

    def step(x, y):
        loss = loss_fn(forward(x), y)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return loss

    parts["step"] = step
    return parts


def _batch(settings: Settings):
    """A synthetic batch of 128 px images and its labels."""
    import paddle

    labels = np.random.default_rng(1).integers(0, 10, settings.batch_size).astype("int64")
    return synthetic_batch(settings.batch_size), paddle.to_tensor(labels)


def train_step_rate(model_name: str, path: str, settings: Settings) -> dict:
    """Images/s of training steps on one synthetic batch (median of repeats)."""
    import paddle

    cfg = _config(settings, "fast" if path == "fast" else "dygraph")
    with paddle.utils.unique_name.guard():
        step = _trainer(model_name, path, cfg)["step"]
        x, y = _batch(settings)
        for _ in range(settings.warmup):
            float(step(x, y))

        def run():
            for _ in range(settings.steps):
                float(step(x, y))
            return settings.steps * settings.batch_size

        return median_rate(run, 0, settings.repeats)


def _read_split(settings: Settings, split: str):
    from ba_net import data as D

    return D.read_cifar10(D.locate_cifar10(settings.data_file, download=False), split)


def e2e_train_rate(model_name: str, path: str, settings: Settings, train_split, workers: int) -> dict:
    """Images/s of the engine's train_epoch over the real data with the notebook's augmentation
    (``steps`` batches per epoch, one epoch per repeat after an untimed epoch)."""
    import paddle

    from ba_net import data as D
    from ba_net import engine

    cfg = _config(settings, "fast" if path == "fast" else "dygraph", workers)
    with paddle.utils.unique_name.guard():
        t = _trainer(model_name, "fast" if path == "fast" else "dygraph", cfg)
        loader = D.build_loader(*train_split, D.TRAIN_TRANSFORMS["notebook"], settings.batch_size, seed=0, train=True,
                                num_workers=workers, max_steps=settings.steps)
        if len(loader) < settings.steps:
            raise ValueError(f"{settings.steps} steps of {settings.batch_size} images need more than the "
                             f"{len(train_split[0])} training images")
        epoch = [0]

        def run():
            epoch[0] += 1
            loader.batch_sampler.set_epoch(epoch[0])
            _, _, steps = engine.train_epoch(t["model"], loader, t["loss_fn"], t["optimizer"], t["scheduler"],
                                             epoch=epoch[0], seed=0, mixup_alpha=0.0, log_every=10 ** 9,
                                             iter_offset=0, iters=[], ctx=engine._Distributed(), step_fn=t["fast"],
                                             label=f"train e2e {model_name} {path} ({workers} workers) epoch {epoch[0]}")
            return steps * settings.batch_size

        return {**median_rate(run, 1, settings.repeats), "workers": workers}


# ------------------------------------------------------------------------------ evaluation

def _eval_callable(model_name: str, path: str, workdir: Path):
    import paddle

    from ba_net import accel
    from ba_net.models import build_model

    paddle.seed(0)
    model = build_model(model_name)
    model.eval()
    if path == "inference":
        return accel.InferenceRunner(accel.export_for_inference(model, workdir / f"infer_{model_name}"))
    return model


# ------------------------------------------------------------------------ BA's overhead

def ba_overhead_interleaved(settings: Settings, workdir: Path, train_path: str = "fast") -> dict:
    """BA-AlexNet's cost over AlexNet with the load drift cancelled: one process holds both
    models and alternates them step by step in ABBA order, first training steps on
    ``train_path``, then eval forwards through Paddle Inference (in two separate loops: running a
    predictor between training steps slows the training program down); the overhead is the
    median over ``steps x repeats`` pairs of (BA time / AlexNet time - 1), in percent."""
    import paddle

    x, y = _batch(settings)
    pair = ("alexnet", "ba_alexnet")

    def alternate(fns: dict) -> dict:
        for fn in fns.values():
            for _ in range(max(1, settings.warmup)):
                fn()
        times = {name: [] for name in pair}
        for i in range(settings.steps * settings.repeats):
            for name in (pair if i % 2 == 0 else pair[::-1]):  # ABBA: a drift hits both models alike
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        ratios = [b / a for a, b in zip(times["alexnet"], times["ba_alexnet"])]
        return {"overhead_pct": 100.0 * (statistics.median(ratios) - 1.0),
                "alexnet_img_s": settings.batch_size / statistics.median(times["alexnet"]),
                "ba_alexnet_img_s": settings.batch_size / statistics.median(times["ba_alexnet"]),
                "pairs": len(ratios)}

    steps = {}
    for name in pair:
        with paddle.utils.unique_name.guard():
            steps[name] = _trainer(name, train_path, _config(settings, train_path))["step"]
    out = {"train": alternate({name: (lambda s=step: float(s(x, y))) for name, step in steps.items()})}
    del steps
    runners = {name: _eval_callable(name, "inference" if on_cpu() else "dygraph", workdir / f"pair_{name}")
               for name in pair}
    out["eval"] = alternate({name: (lambda r=runner: r(x).numpy()) for name, runner in runners.items()})
    logger.info("BA overhead, interleaved: train %+.1f %%, eval %+.1f %%", out["train"]["overhead_pct"],
                out["eval"]["overhead_pct"])
    return out


# ------------------------------------------------------------------------------ one row

def measure_here(task: str, settings: Settings, model: str, path: str, workers: int, tmp: Path) -> dict:
    notebook = path == "notebook"
    if task == "train_step":
        result = train_step_rate(model, "dygraph" if notebook else path, settings)
    elif task == "e2e":
        result = e2e_train_rate(model, path, settings, _read_split(settings, "train"), workers)
    elif task == "eval":
        runner = _eval_callable(model, "dygraph" if notebook else path, tmp)
        result = {"forward": forward_rate(runner, settings.batch_size, warmup=1, repeats=settings.repeats,
                                          steps=settings.steps),
                  "pass": eval_pass_rate(runner, *_read_split(settings, "test"), settings.batch_size, warmup_passes=1,
                                         repeats=settings.repeats, max_batches=settings.eval_batches)}
    elif task == "ba_overhead":
        result = ba_overhead_interleaved(settings, tmp, path)
    else:
        raise ValueError(f"unknown task {task!r}")
    result["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
    return result


__all__ = ["EVAL_PATHS", "MODELS", "Settings", "TRAIN_PATHS", "measure_gemm", "measure_here"]
