"""What each row of tools/benchmark.py measures, on the current device, medians of repeats
(timing: :mod:`ba_net.report.throughput`):

* the fp32 GEMM rate of this machine (Paddle ``matmul`` of two n x n matrices in this process's
  tuned environment, and NumPy's for reference), the yardstick for "% of GEMM";
* train-step images/s on a synthetic batch (forward, backward, optimizer update) for each path:
  ``notebook`` (dygraph in Paddle's default environment: one thread, no MKL CPU switch),
  ``dygraph`` (tuned environment), ``to_static`` (``paddle.jit.to_static``, PIR) and ``fast``
  (:mod:`ba_net.accel.paths`);
* end-to-end training images/s: the engine's ``train_epoch`` over the CIFAR-10 data through
  ``loading.build_loader`` with the notebook's per-image augmentation;
* evaluation images/s: a forward pass on a synthetic batch, and the notebook's throughput cell
  (an eval pass over the test split, loading and resizing included), in dygraph and with the
  exported model in Paddle Inference;
* BA's overhead over its plain model (BA-AlexNet over AlexNet, BA-ResNet-20 over ResNet-20, ...)
  with both models in one process, alternated step by step.

Every model is measured at its own input size (``model.input_size``: AlexNet 128 px, the CIFAR
ResNets 32 px, the ImageNet-form ResNets 224 px), the ImageNet-form ones with a small batch
(``Settings.large_batch_size``) and ``large_steps`` steps per repeat, so a row takes seconds;
the data rows (end-to-end training, the eval pass) use the preset of the model's size
(:func:`ba_net.data.presets_of_size`) and are not measured for a size no preset gives.
``suite="resnet"`` (tools/benchmark.py --resnet) measures the ResNet pairs on the paths training
and tools/compare.py use: the train step on the fast path and the eval forward in Paddle Inference.

:func:`measure_here` runs one of them in this process; :mod:`ba_net.bench.benchmark` runs each in a
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

from ba_net.report.throughput import eval_pass_rate, forward_rate, median_rate, synthetic_batch

logger = logging.getLogger(__name__)

MODELS = ("alexnet", "ba_alexnet")
RESNET_MODELS = ("resnet20", "ba_resnet20", "resnet50", "ba_resnet50")
SUITES = {"alexnet": MODELS, "resnet": RESNET_MODELS}
TRAIN_PATHS = ("notebook", "dygraph", "to_static", "fast")
EVAL_PATHS = ("notebook", "dygraph", "inference")
NUM_CLASSES = 10  # the benchmark measures CIFAR-10 (the embedded sample) and its 10-class models
LARGE_INPUT = 224  # models with inputs this large get large_batch_size and large_steps


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
    suite: str = "alexnet"  # alexnet: every path and section; resnet: fast train step and inference forward
    large_batch_size: int = 16  # batch of the models with 224 px inputs (ImageNet-form ResNets)
    large_steps: int = 1  # timed steps per repeat for those
    image_sizes: dict = dataclasses.field(default_factory=dict)  # model -> input side, filled by run_benchmark

    @classmethod
    def quick_settings(cls, **overrides) -> "Settings":
        """Tiny settings for a smoke test: numbers of no value, every row present."""
        base = dict(batch_size=8, steps=1, repeats=1, warmup=1, gemm_size=512, eval_batches=1, quick=True,
                    large_batch_size=2, large_steps=1)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def image_size(self, model: str) -> int:
        """The model's input side (``model.input_size``; 128 if it has none)."""
        if model not in self.image_sizes:
            self.image_sizes[model] = model_input_size(model)
        return int(self.image_sizes[model])

    def batch_for(self, model: str) -> int:
        return self.large_batch_size if self.image_size(model) >= LARGE_INPUT else self.batch_size

    def steps_for(self, model: str) -> int:
        return self.large_steps if self.image_size(model) >= LARGE_INPUT else self.steps


def model_input_size(model_name: str) -> int:
    """``input_size`` of a freshly built ``model_name`` (128 if it has none)."""
    import paddle

    from ba_net.data import model_input_size as size_of
    from ba_net.models import build_model

    with paddle.utils.unique_name.guard():
        return size_of(build_model(model_name, num_classes=NUM_CLASSES)) or 128


def preset_for(model_name: str, settings: Settings):
    """The data preset of the model's input size (notebook for 128 px, cifar for 32 px), None if
    no preset gives that size (the 224 px ImageNet-form models)."""
    from ba_net import data as D

    names = D.presets_of_size(settings.image_size(model_name))
    return D.preset(names[0]) if names else None


def ba_pairs(models) -> list:
    """(plain model, BA model) for every BA model whose plain model is also in ``models``."""
    return [(m[3:], m) for m in models if m.startswith("ba_") and m[3:] in models]


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

_SHARED: dict = {}  # quick mode: what the rows measured in one process share, by key; emptied after each run


def shared(settings: Settings, key: tuple, build):
    """``build()``, or in quick mode (a smoke run, every row but the notebook's in one process) the
    object built for ``key`` the first time in this process: the rows of a model then share one
    trainer per training path and batch (its fast path traced and checked once) and one exported
    model per eval path, instead of building them again for each row. Without --quick every row
    builds its own, in its own process."""
    if not settings.quick:
        return build()
    if key not in _SHARED:
        _SHARED[key] = build()
    return _SHARED[key]


def release_shared() -> None:
    """Forget what :func:`shared` kept (run_benchmark calls it when a run ends: nothing built for
    one run is reused by the next in the same process)."""
    _SHARED.clear()


def row_config(settings: Settings, path: str, workers: int = 0, model: Optional[str] = None) -> dict:
    from ba_net.config import load_config

    batch = settings.batch_for(model) if model else settings.batch_size
    return load_config(None, (f"train.batch_size={batch}", f"train.path={path}",
                              f"data.num_workers={workers}", "device=cpu" if on_cpu() else "device=auto"))


def on_cpu() -> bool:
    import paddle

    return not paddle.device.get_device().startswith("gpu")


def make_trainer(model_name: str, path: str, cfg: dict) -> dict:
    """Model, optimizer, scheduler, loss, ``step(images, target) -> loss`` and the fast trainer
    (None on the dygraph paths) for one training path."""
    import paddle

    from ba_net.accel import paths as accel
    from ba_net.train.optim import build_optimizer
    from ba_net.train.loss import LabelSmoothingCrossEntropy
    from ba_net.models import build_model

    paddle.seed(0)
    model = build_model(model_name, num_classes=NUM_CLASSES)
    scheduler = paddle.optimizer.lr.LambdaDecay(cfg["optimizer"]["lr"], lambda _: 1.0)
    optimizer = build_optimizer(cfg, model.parameters(), scheduler)
    loss_fn = LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"])
    model.train()
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "loss_fn": loss_fn, "fast": None}
    if path == "fast":
        from ba_net.data import model_input_size as size_of

        size = size_of(model) or 128  # the model just built says it (as model_input_size would, building another)
        fast = accel.prepare_training(cfg, model_name, model, optimizer, lambda p: build_optimizer(cfg, p, scheduler),
                                      loss_fn, device=paddle.device.get_device(),
                                      image_shape=(cfg["train"]["batch_size"], 3, size, size))
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


def sample_batch(settings: Settings, model: str):
    """A synthetic batch of the model's batch size and input size, and its labels."""
    import paddle

    batch = settings.batch_for(model)
    labels = np.random.default_rng(1).integers(0, 10, batch).astype("int64")
    return synthetic_batch(batch, settings.image_size(model)), paddle.to_tensor(labels)


def train_step_rate(model_name: str, path: str, settings: Settings) -> dict:
    """Images/s of training steps on one synthetic batch (median of repeats)."""
    import paddle

    cfg = row_config(settings, "fast" if path == "fast" else "dygraph", model=model_name)
    steps = settings.steps_for(model_name)
    with paddle.utils.unique_name.guard():
        step = shared(settings, ("train", model_name, path, settings.batch_for(model_name)),
                      lambda: make_trainer(model_name, path, cfg))["step"]
        x, y = sample_batch(settings, model_name)
        for _ in range(settings.warmup):
            float(step(x, y))

        def run():
            for _ in range(steps):
                float(step(x, y))
            return steps * int(x.shape[0])

        return median_rate(run, 0, settings.repeats)


def _read_split(settings: Settings, split: str):
    from ba_net import data as D

    return shared(settings, ("split", split),
                  lambda: D.read_cifar10(D.locate_cifar10(settings.data_file, download=False), split))


def e2e_train_rate(model_name: str, path: str, settings: Settings, train_split, workers: int) -> dict:
    """Images/s of the engine's train_epoch over the real data with the augmentation of the
    model's preset (the notebook's for AlexNet; ``steps`` batches per epoch, one epoch per repeat
    after an untimed epoch)."""
    import paddle

    from ba_net.data import loading
    from ba_net.train.distributed import Distributed
    from ba_net.train.loops import train_epoch

    cfg = row_config(settings, "fast" if path == "fast" else "dygraph", workers)
    preset = preset_for(model_name, settings)
    with paddle.utils.unique_name.guard():
        kind = "fast" if path == "fast" else "dygraph"
        t = shared(settings, ("train", model_name, kind, settings.batch_size),
                   lambda: make_trainer(model_name, kind, cfg))
        loader = loading.build_loader(*train_split, preset.train, settings.batch_size, seed=0, train=True,
                                num_workers=workers, max_steps=settings.steps, image_size=preset.image_size)
        if len(loader) < settings.steps:
            raise ValueError(f"{settings.steps} steps of {settings.batch_size} images need more than the "
                             f"{len(train_split[0])} training images")
        epoch = [0]
        ctx = Distributed()  # one process

        def run():
            epoch[0] += 1
            loader.batch_sampler.set_epoch(epoch[0])
            _, _, steps = train_epoch(t["model"], loader, t["loss_fn"], t["optimizer"], t["scheduler"],
                                      epoch=epoch[0], seed=0, mixup_alpha=0.0, log_every=10 ** 9,
                                      iter_offset=0, iters=[], ctx=ctx, num_classes=NUM_CLASSES, step_fn=t["fast"],
                                      label=f"train e2e {model_name} {path} ({workers} workers) epoch {epoch[0]}")
            return steps * settings.batch_size

        try:
            return {**median_rate(run, 1, settings.repeats), "workers": workers}
        finally:
            loader.close()


# ------------------------------------------------------------------------------ evaluation

def eval_callable(model_name: str, path: str, workdir: Path):
    import paddle

    from ba_net.accel import paths as accel
    from ba_net.models import build_model

    paddle.seed(0)
    model = build_model(model_name, num_classes=NUM_CLASSES)
    model.eval()
    if path == "inference":
        return accel.InferenceRunner(accel.export_for_inference(model, workdir / f"infer_{model_name}"))
    return model


# ------------------------------------------------------------------------ BA's overhead

def ba_overhead_interleaved(settings: Settings, workdir: Path, train_path: str = "fast",
                            ba_model: str = "ba_alexnet") -> dict:
    """The cost of ``ba_model`` over its plain model (``ba_alexnet`` over ``alexnet``, ...) with the
    load drift cancelled: one process holds both models and alternates them step by step in ABBA
    order, first training steps on ``train_path``, then eval forwards through Paddle Inference (in
    two separate loops: running a predictor between training steps slows the training program
    down); the overhead is the median over ``steps x repeats`` pairs (``large_steps x repeats``
    for 224 px models) of (BA time / plain time - 1), in percent."""
    import paddle

    pair = (ba_model[3:], ba_model)
    x, y = sample_batch(settings, ba_model)
    batch = int(x.shape[0])

    def alternate(fns: dict) -> dict:
        for fn in fns.values():
            for _ in range(max(1, settings.warmup)):
                fn()
        times = {name: [] for name in pair}
        for i in range(settings.steps_for(ba_model) * settings.repeats):
            for name in (pair if i % 2 == 0 else pair[::-1]):  # ABBA: a drift hits both models alike
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        ratios = [b / a for a, b in zip(times[pair[0]], times[pair[1]])]
        return {"overhead_pct": 100.0 * (statistics.median(ratios) - 1.0),
                **{f"{name}_img_s": batch / statistics.median(times[name]) for name in pair},
                "pairs": len(ratios)}

    steps = {}
    for name in pair:
        with paddle.utils.unique_name.guard():
            steps[name] = shared(settings, ("train", name, train_path, settings.batch_for(name)), lambda: make_trainer(
                name, train_path, row_config(settings, train_path, model=name)))["step"]
    out = {"train": alternate({name: (lambda s=step: float(s(x, y))) for name, step in steps.items()})}
    del steps
    eval_path = "inference" if on_cpu() else "dygraph"
    runners = {name: shared(settings, ("eval", name, eval_path),
                            lambda: eval_callable(name, eval_path, workdir / f"pair_{name}")) for name in pair}
    out["eval"] = alternate({name: (lambda r=runner: r(x).numpy()) for name, runner in runners.items()})
    logger.info("%s overhead, interleaved: train %+.1f %%, eval %+.1f %%", ba_model, out["train"]["overhead_pct"],
                out["eval"]["overhead_pct"])
    return out


# ------------------------------------------------------------------------------ one row

def measure_here(task: str, settings: Settings, model: str, path: str, workers: int, tmp: Path) -> dict:
    notebook = path == "notebook"
    if task == "train_step":
        result = train_step_rate(model, "dygraph" if notebook else path, settings)
    elif task == "e2e":
        result = e2e_train_rate(model, path, settings, _read_split(settings, "train"), workers)
    elif task in ("eval", "eval_fwd"):
        eval_path = "dygraph" if notebook else path
        runner = shared(settings, ("eval", model, eval_path), lambda: eval_callable(model, eval_path, tmp))
        result = {"forward": forward_rate(runner, settings.batch_for(model), settings.image_size(model), warmup=1,
                                          repeats=settings.repeats, steps=settings.steps_for(model))}
        if task == "eval":
            result["pass"] = eval_pass_rate(runner, *_read_split(settings, "test"), settings.batch_size,
                                            warmup_passes=1, repeats=settings.repeats,
                                            max_batches=settings.eval_batches,
                                            transform=preset_for(model, settings).eval)
    elif task == "ba_overhead":
        result = ba_overhead_interleaved(settings, tmp, path, model or "ba_alexnet")
    else:
        raise ValueError(f"unknown task {task!r}")
    result["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
    return result


__all__ = ["EVAL_PATHS", "MODELS", "RESNET_MODELS", "SUITES", "Settings", "TRAIN_PATHS", "ba_pairs", "measure_gemm",
           "NUM_CLASSES", "eval_callable", "make_trainer", "measure_here", "model_input_size", "preset_for",
           "release_shared", "row_config", "sample_batch", "shared"]
