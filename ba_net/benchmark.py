"""Throughput of the training and evaluation paths on the current device (tools/benchmark.py).

One run measures, with the same settings and medians of repeats:

* the fp32 GEMM rate of this machine (Paddle ``matmul`` of two n x n matrices in this process's
  tuned environment, and NumPy's for reference), the yardstick for "% of GEMM";
* train-step images/s on a synthetic batch (forward, backward, optimizer update) for each path:
  ``notebook`` (dygraph in Paddle's default environment: one thread, no MKL CPU switch; run in a
  subprocess, because that environment must be set before Paddle loads), ``dygraph`` (tuned
  environment), ``to_static`` (``paddle.jit.to_static``, PIR) and ``fast`` (ba_net.accel);
* end-to-end training images/s: the engine's ``train_epoch`` over the CIFAR-10 data through
  ``data.build_loader`` with the notebook's per-image augmentation;
* evaluation images/s: a forward pass on a synthetic batch, and the notebook's throughput cell
  (an eval pass over the test split, loading and resizing included), in dygraph and with the
  exported model in Paddle Inference.

FLOPs count 2 per multiply-accumulate; a training step is taken as 3 x the forward
(``count_flops``), so % of GEMM = 6 x MACs x images/s / GEMM rate.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

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

    @classmethod
    def quick_settings(cls, **overrides) -> "Settings":
        """Tiny settings for a smoke test: numbers of no value, every row present."""
        base = dict(batch_size=8, steps=1, repeats=1, warmup=1, gemm_size=512, eval_batches=1, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def _median_rate(fn: Callable[[], int], warmup: int, repeats: int) -> tuple[float, list]:
    """fn() does one timed unit of work and returns how many images it processed; the first
    ``warmup`` calls are untimed. Returns (median images/s, all rates)."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


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
        rate, _ = _median_rate(fn, 1, max(3, repeats))
        out[name] = rate * flops / 1e9
    logger.info("GEMM %d^3 fp32: Paddle %.0f GFLOP/s, NumPy %.0f GFLOP/s", n, out["paddle"], out["numpy"])
    return out


# -------------------------------------------------------------------------------- training

def _config(settings: Settings, path: str, workers: int = 0) -> dict:
    from ba_net.config import load_config

    return load_config(None, (f"train.batch_size={settings.batch_size}", f"train.path={path}",
                              f"data.num_workers={workers}", "device=cpu" if _on_cpu() else "device=auto"))


def _on_cpu() -> bool:
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


def train_step_rate(model_name: str, path: str, settings: Settings) -> dict:
    """Images/s of training steps on one synthetic batch (median of repeats)."""
    import paddle

    cfg = _config(settings, "fast" if path == "fast" else "dygraph")
    with paddle.utils.unique_name.guard():
        step = _trainer(model_name, path, cfg)["step"]
        rng = np.random.default_rng(0)
        x = paddle.to_tensor(rng.standard_normal((settings.batch_size, 3, 128, 128), dtype=np.float32))
        y = paddle.to_tensor(rng.integers(0, 10, settings.batch_size).astype("int64"))
        for _ in range(settings.warmup):
            float(step(x, y))

        def run():
            for _ in range(settings.steps):
                float(step(x, y))
            return settings.steps * settings.batch_size

        rate, rates = _median_rate(run, 0, settings.repeats)
    return {"img_s": rate, "repeats_img_s": rates}


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

        rate, rates = _median_rate(run, 1, settings.repeats)
    return {"img_s": rate, "repeats_img_s": rates, "workers": workers}


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


def eval_forward_rate(model, settings: Settings) -> dict:
    """Images/s of eval-mode forward passes on one synthetic batch."""
    import paddle

    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((settings.batch_size, 3, 128, 128),
                                                                   dtype=np.float32))

    def run():
        with paddle.no_grad():
            for _ in range(settings.steps):
                model(x).numpy()
        return settings.steps * settings.batch_size

    rate, rates = _median_rate(run, 1, settings.repeats)
    return {"img_s": rate, "repeats_img_s": rates}


def eval_pass_rate(model, test_split, settings: Settings, workers: int = 0) -> dict:
    """The notebook's throughput cell: images/s of an eval pass over the test split through the
    data loader (per-image resize and normalization included)."""
    import paddle

    from ba_net import data as D

    loader = D.build_loader(*test_split, D.eval_transform, settings.batch_size, train=False, num_workers=workers)

    def run():
        count = 0
        with paddle.no_grad():
            for i, (x, _) in enumerate(loader):
                if settings.eval_batches is not None and i >= settings.eval_batches:
                    break
                model(x).numpy()
                count += int(x.shape[0])
        return count

    rate, rates = _median_rate(run, 1, settings.repeats)
    return {"img_s": rate, "repeats_img_s": rates, "workers": workers}


# ------------------------------------------------------------------------ BA's overhead

def ba_overhead_interleaved(settings: Settings, workdir: Path, train_path: str = "fast") -> dict:
    """BA-AlexNet's cost over AlexNet with the load drift cancelled: one process holds both
    models and alternates them step by step in ABBA order, first training steps on
    ``train_path``, then eval forwards through Paddle Inference (in two separate loops: running a
    predictor between training steps slows the training program down); the overhead is the
    median over ``steps x repeats`` pairs of (BA time / AlexNet time - 1), in percent."""
    import paddle

    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((settings.batch_size, 3, 128, 128), dtype=np.float32))
    y = paddle.to_tensor(rng.integers(0, 10, settings.batch_size).astype("int64"))
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
    runners = {name: _eval_callable(name, "inference" if _on_cpu() else "dygraph", workdir / f"pair_{name}")
               for name in pair}
    out["eval"] = alternate({name: (lambda r=runner: r(x).numpy()) for name, runner in runners.items()})
    logger.info("BA overhead, interleaved: train %+.1f %%, eval %+.1f %%", out["train"]["overhead_pct"],
                out["eval"]["overhead_pct"])
    return out


# ---------------------------------------------------------------------- the notebook's way

def _child_env(notebook: bool) -> dict:
    """The environment of a measuring subprocess: this one's (tuned by ba_net), or for the
    notebook's way Paddle's out-of-the-box one (one thread, no MKL CPU-type switch)."""
    env = dict(os.environ)
    if notebook:
        env.pop("MKL_DEBUG_CPU_TYPE", None)
        env["OMP_NUM_THREADS"] = "1"  # what Paddle itself sets when the variable is unset
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def measure_in_subprocess(task: str, settings: Settings, model: str = "", path: str = "", workers: int = 0,
                          timeout: float = 3600) -> dict:
    """Run one measurement in a fresh interpreter and return its result. Every row gets its own
    process: programs, oneDNN primitive caches, thread pools and predictors of one path measurably
    slow down the next one in the same process (a Paddle Inference predictor run between training
    steps of the static program cost it ~25 %)."""
    with tempfile.TemporaryDirectory(prefix="ba_net_bench_") as tmp:
        out = Path(tmp) / "result.json"
        spec = {"task": task, "model": model, "path": path, "workers": workers,
                "settings": dataclasses.asdict(settings), "out": str(out), "tmp": tmp}
        code = "import sys, ba_net.benchmark as b; b._worker_main(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=_child_env(path == "notebook"),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise RuntimeError(f"measuring {task} {model} {path} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def _worker_main(arg: str) -> None:
    """Subprocess entry of :func:`measure_in_subprocess`. For the notebook's way Paddle is imported
    before ba_net, so ba_net's tuning does not apply."""
    spec = json.loads(arg)
    notebook = spec["path"] == "notebook"
    if notebook:
        import paddle  # noqa: F401  (first: Paddle's own defaults)

        os.environ.pop("MKL_DEBUG_CPU_TYPE", None)
    import ba_net  # noqa: F401

    if notebook:
        os.environ.pop("MKL_DEBUG_CPU_TYPE", None)  # ba_net sets it on AMD; MKL reads it at its first call
    from ba_net.runtime import setup_logging

    setup_logging(logging.WARNING)
    settings = Settings(**{**spec["settings"], "models": tuple(spec["settings"]["models"])})
    result = _measure_here(spec["task"], settings, spec["model"], spec["path"], spec["workers"], Path(spec["tmp"]))
    Path(spec["out"]).write_text(json.dumps(result))


def _measure_here(task: str, settings: Settings, model: str, path: str, workers: int, tmp: Path) -> dict:
    notebook = path == "notebook"
    if task == "train_step":
        result = train_step_rate(model, "dygraph" if notebook else path, settings)
    elif task == "e2e":
        result = e2e_train_rate(model, path, settings, _read_split(settings, "train"), workers)
    elif task == "eval":
        runner = _eval_callable(model, "dygraph" if notebook else path, tmp)
        result = {"forward": eval_forward_rate(runner, settings),
                  "pass": eval_pass_rate(runner, _read_split(settings, "test"), settings, 0)}
    elif task == "ba_overhead":
        result = ba_overhead_interleaved(settings, tmp, path)
    else:
        raise ValueError(f"unknown task {task!r}")
    result["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
    return result


def measure(task: str, settings: Settings, model: str = "", path: str = "", workers: int = 0) -> dict:
    """One measurement in a fresh subprocess; with --quick (a smoke test) only the notebook's way,
    which needs its own environment, leaves this process."""
    if settings.quick and path != "notebook":
        with tempfile.TemporaryDirectory(prefix="ba_net_bench_") as tmp:
            return _measure_here(task, settings, model, path, workers, Path(tmp))
    return measure_in_subprocess(task, settings, model, path, workers)


# ------------------------------------------------------------------------------- the run

def describe_machine() -> dict:
    import paddle

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    from ba_net.accel import usable_cpus

    return {"cpu": cpu, "usable_cpus": usable_cpus(), "device": paddle.device.get_device(),
            "paddle": paddle.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}}


def _flops(model_name: str) -> int:
    from ba_net.complexity import count_flops
    from ba_net.models import build_model

    return int(count_flops(build_model(model_name), (1, 3, 128, 128)))


def run_benchmark(settings: Settings) -> dict:
    """Every measurement, each row in its own subprocess; returns the result dict (rows plus the
    method's parameters)."""
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.time()
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": describe_machine(),
              "settings": dataclasses.asdict(settings), "rows": []}
    workers = settings.workers
    if workers is None:
        from ba_net.config import defaults

        workers = defaults()["data"]["num_workers"]
    on_cpu = _on_cpu()
    logger.info("benchmark on %s: batch %d, %d steps x %d repeats after %d warm-up", result["machine"]["device"],
                settings.batch_size, settings.steps, settings.repeats, settings.warmup)
    result["gemm"] = measure_gemm(settings.gemm_size, settings.repeats)
    gemm_start = dict(result["gemm"])
    result["macs_per_image"] = {m: _flops(m) for m in settings.models}

    def add(section, model, path, measured, **extra):
        row = {"section": section, "model": model, "path": path, "img_s": measured["img_s"],
               "repeats_img_s": measured.get("repeats_img_s"), **extra}
        result["rows"].append(row)
        if path == "notebook":
            result["notebook_env"] = measured.get("env")
        logger.info("%-10s %-10s %-10s %8.1f img/s", section, model, _label(row), measured["img_s"])

    train_paths = [p for p in TRAIN_PATHS if on_cpu or p not in ("notebook", "fast")]
    eval_paths = [p for p in EVAL_PATHS if on_cpu or p != "notebook"]
    e2e_path = "fast" if on_cpu else "dygraph"
    for model in settings.models:
        for path in train_paths:
            add("train step", model, path, measure("train_step", settings, model, path))
        if on_cpu:
            add("train e2e", model, "notebook", measure("e2e", settings, model, "notebook", 0), workers=0)
        for w in sorted({0, workers}):
            add("train e2e", model, e2e_path, measure("e2e", settings, model, e2e_path, w), workers=w)
        for path in eval_paths:
            measured = measure("eval", settings, model, path)
            add("eval fwd", model, path, measured["forward"])
            add("eval pass", model, path, measured["pass"], workers=0)
    # the GEMM rate again at the end; the higher of the two (the less disturbed) is the yardstick
    gemm_end = measure_gemm(settings.gemm_size, settings.repeats)
    result["gemm"] = {"paddle": max(gemm_start["paddle"], gemm_end["paddle"]),
                      "numpy": max(gemm_start["numpy"], gemm_end["numpy"]), "start": gemm_start, "end": gemm_end}
    for row in result["rows"]:
        if row["section"] in ("train step", "train e2e"):
            row["pct_gemm"] = (100.0 * 6 * result["macs_per_image"][row["model"]] * row["img_s"]
                               / (result["gemm"]["paddle"] * 1e9))
    if set(MODELS) <= set(settings.models):
        result["ba_overhead_interleaved"] = measure("ba_overhead", settings, "", e2e_path)
    _ratios(result)
    result["targets"] = [{"target": n, "measured": t, "hit": ok} for n, t, ok in targets(result)]
    result["load_average_1min"] = {"before": load_before,
                                   "after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    result["seconds"] = round(time.time() - started, 1)
    return result


def _ratios(result: dict) -> None:
    """Ratio of each row to the notebook's way (same section and model), and BA's overhead."""
    rows = result["rows"]
    ref = {(r["section"], r["model"]): r["img_s"] for r in rows if r["path"] == "notebook"}
    for r in rows:
        base = ref.get((r["section"], r["model"]))
        r["vs_notebook"] = r["img_s"] / base if base else None
    overhead = {}
    by_key = {(r["section"], r["model"], _label(r)): r["img_s"] for r in rows}
    for (section, model, label), rate in by_key.items():
        if model == "ba_alexnet" and (section, "alexnet", label) in by_key:
            overhead[f"{section} / {label}"] = 100.0 * (by_key[(section, "alexnet", label)] / rate - 1.0)
    result["ba_overhead_pct"] = overhead


def targets(result: dict) -> list:
    """The issue's targets against this run: (name, measured text, hit) per target."""
    rows = result["rows"]

    def best(section, model, key="img_s"):
        found = [r for r in rows if r["section"] == section and r["model"] == model and r["path"] != "notebook"]
        return max(found, key=lambda r: r["img_s"]) if found else None

    out = []
    for model in result["settings"]["models"]:
        r = best("train step", model)
        if r:
            out.append((f"train step >= 60 % of GEMM ({model})", f"{r['pct_gemm']:.1f} % ({_label(r)})",
                        r["pct_gemm"] >= 60.0))
        r = best("train e2e", model)
        if r and r.get("vs_notebook"):
            out.append((f"end-to-end training >= 4x the notebook's way ({model})",
                        f"{r['vs_notebook']:.2f}x ({_label(r)}, {r['img_s']:.0f} img/s)", r["vs_notebook"] >= 4.0))
        r = best("eval pass", model)
        if r and r.get("vs_notebook"):
            out.append((f"eval pass >= 6x the notebook's and >= 777 img/s ({model})",
                        f"{r['vs_notebook']:.2f}x, {r['img_s']:.0f} img/s ({_label(r)})",
                        r["vs_notebook"] >= 6.0 and r["img_s"] >= 777.0))
    for kind, what in (("train", "training (fast train step)"), ("eval", "eval (Paddle Inference forward)")):
        o = result.get("ba_overhead_interleaved", {}).get(kind)
        if o:
            out.append((f"BA overhead <= 3 % in {what}", f"{o['overhead_pct']:+.1f} % (interleaved, median of "
                        f"{o['pairs']} pairs)", o["overhead_pct"] <= 3.0))
    return out


def _label(row: dict) -> str:
    return row["path"] + (f" ({row['workers']} workers)" if row.get("workers") else "")


def _fmt(value) -> str:
    return "?" if value is None else f"{value:.2f}"


def format_table(result: dict) -> str:
    """The table and the method, as printed by tools/benchmark.py."""
    m, s = result["machine"], result["settings"]
    lines = [f"ba-net benchmark, {result['date']}",
             f"machine: {m['cpu']}, {m['usable_cpus']} usable cores, device {m['device']}, Paddle {m['paddle']}; "
             f"tuned env OMP_NUM_THREADS={m['env']['OMP_NUM_THREADS']} "
             f"MKL_DEBUG_CPU_TYPE={m['env']['MKL_DEBUG_CPU_TYPE']}",
             f"fp32 GEMM {s['gemm_size']}^3, this run: Paddle {result['gemm']['paddle']:.1f} GFLOP/s (tuned env; "
             f"{result['gemm']['start']['paddle']:.1f} at the start, {result['gemm']['end']['paddle']:.1f} at the end, "
             f"the higher is used), NumPy {result['gemm']['numpy']:.1f} GFLOP/s",
             "",
             "| section | model | path | img/s | % of GEMM | x notebook |",
             "|---|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        pct = f"{r['pct_gemm']:.1f}" if r.get("pct_gemm") is not None else ""
        ratio = f"{r['vs_notebook']:.2f}" if r.get("vs_notebook") else ""
        lines.append(f"| {r['section']} | {r['model']} | {_label(r)} | {r['img_s']:.1f} | {pct} | {ratio} |")
    if result.get("ba_overhead_interleaved"):
        o = result["ba_overhead_interleaved"]
        lines += ["", "BA-AlexNet's overhead over AlexNet, both models in one process, alternated step by step "
                  f"(median of paired time ratios - 1): training (fast train step) {o['train']['overhead_pct']:+.1f} %, "
                  f"eval (Paddle Inference forward) {o['eval']['overhead_pct']:+.1f} %."]
    if result.get("ba_overhead_pct"):
        lines += ["From the rows above (measured at different moments, so load drift enters): " + ", ".join(
            f"{k} {v:+.1f} %" for k, v in result["ba_overhead_pct"].items())]
    goals = targets(result)
    if goals:
        lines += ["", "Targets (issue 6): " + "; ".join(f"{name}: {text}, {'hit' if ok else 'missed'}"
                                                      for name, text, ok in goals)]
    load = result.get("load_average_1min", {})
    lines += ["", "Method: " + " ".join([
        f"batch {s['batch_size']}, 3x128x128 images; each figure is the median of {s['repeats']} repeats of "
        f"{s['steps']} steps (or batches) after {s['warmup']} untimed warm-up steps (eval and e2e: one untimed pass).",
        "train step: forward + backward + optimizer update (Adam, the config's defaults) on one synthetic batch.",
        "train e2e: the engine's train_epoch over the CIFAR-10 training split, data.build_loader with the "
        "notebook's per-image augmentation (0 loader workers unless the row says otherwise; the config "
        "default data.num_workers is measured too).",
        "eval fwd: eval-mode forward on one synthetic batch; eval pass: the notebook's throughput cell, an eval "
        "pass over the test split with per-image resize and normalization in the loader"
        + (f" (capped at {s['eval_batches']} batches)" if s.get("eval_batches") else "") + ".",
        ("Every row is measured in a fresh subprocess (paths left in one process slow each other down). "
         if not s.get("quick") else "Quick mode: only the notebook's rows run in subprocesses. ") +
        "Paths: notebook = dygraph in Paddle's default environment (OMP_NUM_THREADS=1, no MKL_DEBUG_CPU_TYPE), "
        "0 loader workers; dygraph = tuned environment; to_static = paddle.jit.to_static "
        "(PIR); fast = ba_net.accel (legacy static program, oneDNN convolutions); inference = paddle.jit.save + "
        "Paddle Inference with oneDNN.",
        "% of GEMM = 6 x forward multiply-accumulates per image (count_flops) x img/s / the Paddle GEMM rate "
        "(the higher of the measurements at the start and at the end of the run).",
        f"1-min load average {_fmt(load.get('before'))} before, {_fmt(load.get('after'))} after "
        f"({result.get('seconds')} s); other processes on these cores lower every figure."])]
    return "\n".join(lines)


__all__ = ["Settings", "format_table", "measure_gemm", "measure_in_subprocess", "run_benchmark", "targets"]
