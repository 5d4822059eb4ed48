"""tools/benchmark.py: throughput of the training and evaluation paths on the current device.

Every row (:mod:`ba_net.bench.rows` says what each measures) runs in a fresh subprocess:
programs, oneDNN primitive caches, thread pools and predictors of one path measurably slow down
the next one in the same process. The notebook's way needs a subprocess anyway: its environment
(Paddle's defaults: one thread, no MKL CPU switch) must be set before Paddle loads. The GEMM rate
is measured at the start and at the end; the higher is the yardstick.

When PyTorch is importable, the PyTorch peer (:mod:`ba_net.bench.torch_peer`: our AlexNet, and
with ``--resnet`` our ResNets from :mod:`ba_net.bench.torch_resnet`, written again in PyTorch) is
measured in the same run, in subprocesses that never load Paddle: train step and eval forward,
eager with contiguous and with channels-last tensors; each of our rows of those sections for a
model the peer has gets "x PyTorch" (its rate / PyTorch's best of that section and model), and
ours and the peer's best layout take turns (ABBA) per model. In the ResNet suite BA's overhead
over its plain model is measured in PyTorch too, the way ours is. Without PyTorch the peer is
skipped with one log line.

FLOPs count 2 per multiply-accumulate; a training step is taken as 3 x the forward
(:func:`ba_net.models.complexity.count_macs`, at the model's input size), so a row's rate is
6 x MACs x images/s (training) or 2 x MACs x images/s (evaluation). The yardstick is the best
rate measured in the run (:func:`yardstick`): the fp32 GEMM of Paddle, NumPy and PyTorch (if
present) and every row's own rate, so "% of best" is at most 100 by construction. ``--resnet`` (``Settings.suite == "resnet"``) measures ResNet-20 / BA-ResNet-20
(32 px) and ResNet-50 / BA-ResNet-50 (224 px, small batch) on the fast train step and the
Paddle Inference forward, with BA's overhead over each plain model.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ba_net.bench.rows import (
    EVAL_PATHS, NUM_CLASSES, TRAIN_PATHS, Settings, ba_pairs, measure_gemm, measure_here, on_cpu,
    release_shared,
)
from ba_net.errors import CheckFailed, ConfigError
from ba_net.runtime import cpu_model, load_average, select_device, usable_cpus
from ba_net.bench.torch_peer import TASKS, measure_peer, take_turns, torch_importable, worker_commands
from ba_net.bench.torch_resnet import MODELS as TORCH_RESNETS
from ba_net.bench.table import ratios, row_label, vs_pytorch, yardstick

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the notebook's way

def _child_env(notebook: bool, device: str = "auto") -> dict:
    """The environment of a measuring subprocess: this one's (tuned by ba_net), or for the
    notebook's way Paddle's out-of-the-box one (one thread, no MKL CPU-type switch); with
    ``device='cpu'`` no GPU is visible to it, whatever Paddle it runs."""
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if notebook:
        env.pop("MKL_DEBUG_CPU_TYPE", None)
        env["OMP_NUM_THREADS"] = "1"  # what Paddle itself sets when the variable is unset
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def measure_in_subprocess(task: str, settings: Settings, model: str = "", path: str = "", workers: int = 0,
                          timeout: float = 3600, jobs: list | None = None):
    """Run one measurement in a fresh interpreter and return its result. Every row gets its own
    process: programs, oneDNN primitive caches, thread pools and predictors of one path measurably
    slow down the next one in the same process (a Paddle Inference predictor run between training
    steps of the static program cost it ~25 %). ``jobs`` ([(task, model, path, workers), ...], all
    of ``path``'s environment): measured one after the other in that one process, a list returned."""
    with tempfile.TemporaryDirectory(prefix="ba_net_bench_") as tmp:
        out = Path(tmp) / "result.json"
        spec = {"task": task, "model": model, "path": path, "workers": workers, "jobs": jobs,
                "settings": dataclasses.asdict(settings), "out": str(out), "tmp": tmp}
        code = "import sys, ba_net.bench.benchmark as b; b._worker_main(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=_child_env(path == "notebook", settings.device),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            raise CheckFailed(f"measuring {task} {model} {path} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


def _worker_main(arg: str) -> None:
    """Subprocess entry of :func:`measure_in_subprocess`. For the notebook's way Paddle is imported
    before ba_net, so ba_net's tuning does not apply."""
    spec = json.loads(arg)
    jobs = spec.get("jobs") or [(spec["task"], spec["model"], spec["path"], spec["workers"])]
    notebook = jobs[0][2] == "notebook"
    if notebook:
        import paddle  # noqa: F401  (first: Paddle's own defaults)

        os.environ.pop("MKL_DEBUG_CPU_TYPE", None)
    import ba_net  # noqa: F401

    if notebook:
        os.environ.pop("MKL_DEBUG_CPU_TYPE", None)  # ba_net sets it on AMD; MKL reads it at its first call
    from ba_net.runtime import select_device, setup_logging

    setup_logging(logging.WARNING)
    select_device(spec["settings"]["device"])
    settings = Settings(**{**spec["settings"], "models": tuple(spec["settings"]["models"])})
    results = [measure_here(task, settings, model, path, workers, Path(spec["tmp"])) for task, model, path, workers in jobs]
    Path(spec["out"]).write_text(json.dumps(results if spec.get("jobs") else results[0]))


def measure(task: str, settings: Settings, model: str = "", path: str = "", workers: int = 0) -> dict:
    """One measurement in a fresh subprocess; with --quick (a smoke test) in this process, but for
    the notebook's way, which needs its own environment (:func:`_measure_rows` measures those rows
    in one subprocess then)."""
    if settings.quick and path != "notebook":
        with tempfile.TemporaryDirectory(prefix="ba_net_bench_") as tmp:
            return measure_here(task, settings, model, path, workers, Path(tmp))
    return measure_in_subprocess(task, settings, model, path, workers)


# ------------------------------------------------------------------------------- the run

def describe_machine() -> dict:
    import paddle

    cpu = cpu_model() or platform.processor() or platform.machine()
    return {"cpu": cpu, "usable_cpus": usable_cpus(), "device": paddle.device.get_device(),
            "paddle": paddle.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}}


def _complexity(model_name: str) -> dict:
    """The input side (``input_size``, 128 if none), forward multiply-accumulates per image at that
    side and parameter counts, of one build of the model."""
    import paddle

    from ba_net.data import model_input_size
    from ba_net.models.complexity import count_macs, count_params
    from ba_net.models import build_model

    with paddle.utils.unique_name.guard():
        model = build_model(model_name, num_classes=NUM_CLASSES)
        size = model_input_size(model) or 128
        return {"size": size, "macs": int(count_macs(model, (1, 3, size, size))), **count_params(model)}


def plan_models(settings: Settings) -> dict:
    """Each model's input side (also into ``settings``, for the subprocesses), batch, MACs, parameters."""
    complexity = {m: _complexity(m) for m in settings.models}
    settings.image_sizes.update({m: c.pop("size") for m, c in complexity.items()})
    return {"settings": dataclasses.asdict(settings), "macs_per_image": {m: c["macs"] for m, c in complexity.items()},
            "params": {m: {"total": c["total"], "trainable": c["trainable"]} for m, c in complexity.items()},
            "input": {m: {"image_size": settings.image_size(m), "batch_size": settings.batch_for(m)}
                      for m in settings.models}}


def run_benchmark(settings: Settings) -> dict:
    """Every measurement, each row in its own subprocess; returns the result dict (rows plus the
    method's parameters)."""
    try:
        return _run(settings)
    finally:
        release_shared()


def _run(settings: Settings) -> dict:
    load_before = load_average()
    started = time.time()
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": describe_machine(),
              "settings": dataclasses.asdict(settings), "rows": []}
    logger.info("benchmark on %s: batch %d, %d steps x %d repeats after %d warm-up", result["machine"]["device"],
                settings.batch_size, settings.steps, settings.repeats, settings.warmup)
    gemm_start = measure_gemm(settings.gemm_size, settings.repeats)
    result.update(plan_models(settings))
    _measure_rows(result, settings)
    # the GEMM rate again at the end; the higher of the two (the less disturbed) is kept
    gemm_end = measure_gemm(settings.gemm_size, settings.repeats)
    result["gemm"] = {"paddle": max(gemm_start["paddle"], gemm_end["paddle"]),
                      "numpy": max(gemm_start["numpy"], gemm_end["numpy"]), "start": gemm_start, "end": gemm_end}
    if (result.get("peer") or {}).get("gemm"):
        result["gemm"]["pytorch"] = result["peer"]["gemm"]
    yardstick(result)
    vs_pytorch(result)
    result["ba_overhead_interleaved"] = {ba: measure("ba_overhead", settings, ba, "fast" if on_cpu() else "dygraph")
                                         for _, ba in ba_pairs(settings.models)}
    if settings.suite == "resnet" and result.get("peer"):
        result["peer_ba_overhead"] = {ba: measure_torch_ba_overhead(result, settings, ba)
                                      for _, ba in ba_pairs(settings.models) if ba in PEER_MODELS}
    ratios(result)
    result["load_average_1min"] = {"before": load_before, "after": load_average()}
    result["seconds"] = round(time.time() - started, 1)
    return result


def _measure_rows(result: dict, settings: Settings) -> None:
    """The train step, train e2e, eval fwd and eval pass rows of every model, into result["rows"]."""
    workers = settings.workers
    if workers is None:
        from ba_net.config import defaults

        workers = defaults()["data"]["num_workers"]
    cpu = on_cpu()

    def add(section, model, path, measured, **extra):
        row = {"section": section, "model": model, "path": path, "img_s": measured["img_s"],
               "repeats_img_s": measured.get("repeats_img_s"), **extra}
        result["rows"].append(row)
        if path == "notebook" and "env" in measured:  # an eval row's measured["forward"] has none
            result["notebook_env"] = measured["env"]
        logger.info("%-10s %-10s %-10s %8.1f img/s", section, model, row_label(row), measured["img_s"])

    e2e_path = "fast" if cpu else "dygraph"
    if settings.suite == "resnet":  # the paths training and tools/compare.py use
        peer = peer_ready() and any(m in PEER_MODELS for m in settings.models)
        for model in settings.models:
            add("train step", model, e2e_path, measure("train_step", settings, model, e2e_path))
            peer_rows = measure_torch_peer(result, settings, model, checked=True) if peer and model in PEER_MODELS else []
            add("eval fwd", model, "inference" if cpu else "dygraph",
                measure("eval_fwd", settings, model, "inference" if cpu else "dygraph")["forward"])
            for row in sorted(peer_rows, key=lambda r: r["section"] != "train step"):
                add(row["section"], model, row["path"], row)
        return
    notebook = {}  # quick: the notebook's rows one after the other in one fresh subprocess of its environment
    if settings.quick and cpu:
        jobs = [(task, m, "notebook", 0) for m in settings.models for task in ("train_step", "e2e", "eval")]
        notebook = dict(zip(jobs, measure_in_subprocess("notebook rows", settings, path="notebook", jobs=jobs)))

    def take(task, model, path, w=0):
        return notebook.pop((task, model, path, w), None) or measure(task, settings, model, path, w)

    if PEER_MODEL not in settings.models:
        logger.info("PyTorch peer: not measured (it is %s, which --models leaves out)", PEER_MODEL)
    for model in settings.models:
        for path in (p for p in TRAIN_PATHS if cpu or p not in ("notebook", "fast")):
            add("train step", model, path, take("train_step", model, path))
        peer_eval = []
        if model == PEER_MODEL:  # right after our train steps, so the two are measured close in time
            for row in measure_torch_peer(result, settings, model):
                if row["section"] == "train step":
                    add(row["section"], model, row["path"], row)
                else:
                    peer_eval.append(row)  # printed beside our eval rows
        if cpu:
            add("train e2e", model, "notebook", take("e2e", model, "notebook"), workers=0)
        for w in sorted({0, workers}):
            add("train e2e", model, e2e_path, take("e2e", model, e2e_path, w), workers=w)
        for path in (p for p in EVAL_PATHS if cpu or p != "notebook"):
            measured = take("eval", model, path)
            add("eval fwd", model, path, measured["forward"])
            add("eval pass", model, path, measured["pass"], workers=0)
        for row in peer_eval:
            add(row["section"], model, row["path"], row)


# ------------------------------------------------------------------------- the PyTorch peer

PEER_MODEL = "alexnet"  # the model of the AlexNet suite that ba_net.bench.torch_peer defines in PyTorch
PEER_MODELS = (PEER_MODEL, *TORCH_RESNETS)  # every model the peer has


def peer_ready() -> bool:
    """True if the peer can be measured here (CPU, torch importable); else one log line."""
    if not on_cpu():
        logger.info("PyTorch peer: skipped (measured on CPU only)")
        return False
    if not torch_importable():
        logger.info("PyTorch peer: skipped (torch is not importable; `pip install torch` to measure it)")
        return False
    return True


def _peer_spec(settings: Settings, model: str) -> dict:
    from ba_net.config import load_config

    cfg = load_config(None)
    return {"model": model, "batch": settings.batch_for(model), "image_size": settings.image_size(model),
            "steps": settings.steps_for(model), "repeats": settings.repeats, "warmup": settings.warmup,
            "gemm_size": settings.gemm_size, "threads": usable_cpus(), "lr": cfg["optimizer"]["lr"],
            "weight_decay": cfg["optimizer"]["weight_decay"], "label_smoothing": cfg["loss"]["label_smoothing"]}


def measure_torch_peer(result: dict, settings: Settings, model: str = PEER_MODEL, checked: bool = False) -> list:
    """The PyTorch peer's rows of ``model`` (train step and eval fwd, paths "pytorch eager" and
    "pytorch channels_last") at its batch and input size, measured in a subprocess of their own,
    then ours and the peer's best layouts taking turns (result["peer_turns"][model]; AlexNet's
    also as result["peer_interleaved"]); result["peer"] gets the versions and PyTorch's GEMM rate
    (measured with the first model). Returns [] with one log line when PyTorch cannot be imported
    (or not on CPU; ``checked``: :func:`peer_ready` was asked already), [] silently after that."""
    if result.get("peer_unavailable") or not (checked or peer_ready()):
        return []
    spec = _peer_spec(settings, model)
    spec["gemm_size"] = 0 if result.get("peer") else spec["gemm_size"]
    measured = measure_peer(spec, env=_child_env(False, settings.device))
    if "unavailable" in measured:
        logger.info("PyTorch peer: skipped (%s)", measured["unavailable"])
        result["peer_unavailable"] = measured["unavailable"]
        return []
    result.setdefault("peer", {k: measured[k] for k in ("torch", "threads", "onednn", "gemm")})
    rows = [{**r, "path": f"pytorch {r['layout']}"} for r in measured["rows"]]
    best = {s: max((r for r in rows if r["section"] == s), key=lambda r: r["img_s"])["layout"]
            for s in ("train step", "eval fwd")}
    turns = max(4, 2 * settings.repeats)
    try:
        done = take_turns(worker_commands({**spec, "train_layout": best["train step"], "eval_layout": best["eval fwd"]}),
                          TASKS, turns, spec["steps"], spec["batch"], env=_child_env(False, settings.device))
        result.setdefault("peer_turns", {})[model] = {**done, "layouts": {"train": best["train step"],
                                                                          "eval": best["eval fwd"]}}
        if model == PEER_MODEL:
            result["peer_interleaved"] = result["peer_turns"][model]
    except (RuntimeError, CheckFailed) as exc:
        logger.warning("PyTorch peer, taking turns: failed (%s)", str(exc).splitlines()[0])
    return rows


def measure_torch_ba_overhead(result: dict, settings: Settings, ba_model: str) -> dict:
    """BA's overhead over its plain model in PyTorch, measured as ours is
    (:func:`ba_net.bench.torch_resnet.measure_ba_overhead`, ``steps x repeats`` pairs), each task
    in the layout PyTorch runs ``ba_model`` fastest in (its rows in result["rows"])."""
    best = {}
    for r in result["rows"]:
        if r["model"] == ba_model and r["path"].startswith("pytorch ") and r["img_s"] > best.get(r["section"], (0,))[0]:
            best[r["section"]] = (r["img_s"], r["path"][len("pytorch "):])
    spec = {**_peer_spec(settings, ba_model), "task": "ba_overhead", "gemm_size": 0,
            "pairs": settings.steps_for(ba_model) * settings.repeats,
            "train_layout": best.get("train step", (0, "eager"))[1], "eval_layout": best.get("eval fwd", (0, "eager"))[1]}
    try:
        out = measure_peer(spec, env=_child_env(False, settings.device))
    except (RuntimeError, CheckFailed) as exc:
        logger.warning("PyTorch peer, %s's overhead: failed (%s)", ba_model, str(exc).splitlines()[0])
        return {}
    if "train" in out:
        logger.info("%s overhead in PyTorch, interleaved: train %+.1f %%, eval %+.1f %%", ba_model,
                    out["train"]["overhead_pct"], out["eval"]["overhead_pct"])
    return out


def benchmark_command(args) -> int:
    """tools/benchmark.py: the settings from its flags (refused in one line when out of range), the
    run, DIR/benchmark.json (``--out DIR``, default ``output``) and the printed table."""
    from ba_net.bench.rows import RESNET_MODELS
    from ba_net.bench.table import format_table

    data_file = args.data_file or str(Path(__file__).resolve().parents[2] / "data" / "cifar-10-sample.tar.gz")
    given = {"steps": args.steps, "repeats": args.repeats, "warmup": args.warmup, "batch_size": args.batch_size,
             "data_file": data_file, "workers": args.workers, "device": args.device,
             "models": tuple(args.models) if args.models else (RESNET_MODELS if args.resnet else None),
             "suite": "resnet" if args.resnet else None, "large_batch_size": args.large_batch_size}
    for key in ("steps", "repeats", "batch_size", "large_batch_size"):
        if given[key] is not None and given[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1")
    if given["warmup"] is not None and given["warmup"] < 0:
        raise ConfigError("--warmup must be at least 0")
    if not Path(data_file).is_file():
        raise ConfigError(f"--data-file {data_file} is not a file; pass a CIFAR-10 python tarball")
    select_device(args.device)
    settings = (Settings.quick_settings(**given) if args.quick else
                Settings(**{k: v for k, v in given.items() if v is not None}))
    result = run_benchmark(settings)
    result["command"] = args.command
    out = Path(args.out or "output") / "benchmark.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(format_table(result))
    print(f"\nJSON: {out}")
    return 0


__all__ = ["PEER_MODEL", "PEER_MODELS", "Settings", "benchmark_command", "measure_gemm", "measure_in_subprocess",
           "measure_torch_ba_overhead", "measure_torch_peer", "peer_ready", "plan_models", "run_benchmark"]
