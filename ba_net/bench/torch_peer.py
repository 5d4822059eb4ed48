"""The PyTorch peer of tools/benchmark.py: our AlexNet (:class:`ba_net.models.alexnet.AlexNet`,
without attention) and, in :mod:`ba_net.bench.torch_resnet`, ResNet-20 / BA-ResNet-20 and
ResNet-50 / BA-ResNet-50 written again in PyTorch, and their training step and eval forward timed
the way a PyTorch user would run them on this CPU (``spec['model']`` names the model, AlexNet
when absent).

Nothing in ba_net needs PyTorch: this module imports only the standard library and NumPy at the
top, and ``torch`` inside the functions that use it. :func:`torch_importable` tells whether the
peer can run without importing it.

The measurement runs in a subprocess of its own that never imports Paddle or ba_net
(:func:`measure_peer` loads this file by its path, so the package's ``__init__`` -- which loads
Paddle -- does not run; :func:`torch_models` loads torch_resnet.py the same way): the two frameworks bring their own OpenMP and math libraries, and a
framework left in a process slows the next one down. What it measures, on one synthetic batch of
the benchmark's size, medians of repeats after untimed warm-up steps:

* ``train step``: forward + label-smoothed cross entropy + backward + Adam (the config's learning
  rate and L2 weight decay) + ``zero_grad``, dropout on;
* ``eval fwd``: eval-mode forward under ``torch.inference_mode()``, logits copied to NumPy;

each in eager mode with contiguous (NCHW) tensors and with ``channels_last`` (NHWC) model and
input; and the fp32 GEMM rate of ``torch.mm`` (n x n x n, 2 n^3 FLOPs; not when ``gemm_size`` is
0), one more candidate for the benchmark's yardstick. Weights are PyTorch's default
initialisation: irrelevant to speed. ``spec['task'] == 'ba_overhead'`` measures BA's cost over
the plain model instead (:func:`ba_net.bench.torch_resnet.measure_ba_overhead`).

Rows measured one after the other see different loads on a shared machine, so
:func:`take_turns` also runs our fast train step / Paddle Inference forward and the peer in two
persistent processes (:func:`serve`) that take turns in ABBA order, one idle while the other runs.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional


logger = logging.getLogger(__name__)

LAYOUTS = ("eager", "channels_last")  # path labels of the peer rows: "pytorch eager", ...


def torch_importable() -> bool:
    """True if ``import torch`` can be attempted here (found on the path; not imported)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked entry in sys.modules
        return False


def build_torch_alexnet(num_classes: int, dropout: float = 0.5):
    """AlexNet as :class:`ba_net.models.alexnet.AlexNet` builds it (no attention), in PyTorch:
    conv1 11x11/4 (48) - pool - conv2 5x5 (128) - pool - conv3, conv4 3x3 (192) - conv5 3x3 (128)
    - pool, then 1152 -> 2048 -> 2048 -> classes with ReLU and dropout between."""
    import torch.nn as nn

    class TorchAlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 48, 11, stride=4, padding=5), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(48, 128, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            )
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(128 * 3 * 3, 2048), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(2048, 2048), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(2048, num_classes),
            )

        def forward(self, x):
            return self.classifier(self.features(x))

    return TorchAlexNet()


def torch_models():
    """The module :mod:`ba_net.bench.torch_resnet`: imported from the package when this file was,
    else (a peer worker, no ba_net) loaded by its path like this file."""
    if __package__:
        from ba_net.bench import torch_resnet

        return torch_resnet
    name = "ba_net_torch_resnet"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("torch_resnet.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def build_torch_model(name: str, num_classes: int):
    """The peer's ``name`` in PyTorch: alexnet, or one of :data:`ba_net.bench.torch_resnet.MODELS`."""
    if name == "alexnet":
        return build_torch_alexnet(num_classes)
    return torch_models().build_torch_resnet(name, num_classes)


def _median_rate(fn: Callable[[], int], repeats: int) -> dict:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return {"img_s": statistics.median(rates), "repeats_img_s": rates}


def _torch_gemm(n: int, repeats: int) -> float:
    """fp32 GFLOP/s of ``torch.mm`` on two n x n matrices (the median of max(3, repeats))."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    rate = _median_rate(lambda: (torch.mm(a, b), 1)[1], max(3, repeats))["img_s"]
    return rate * 2.0 * n ** 3 / 1e9


def _train_step(model, x, labels, spec: dict) -> Callable:
    """One training step of ``model`` on the batch (``x``, ``labels``): forward, label-smoothed
    cross entropy, backward, Adam with the spec's lr and weight decay; returns the loss."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=spec["label_smoothing"])
    model.train()

    def step() -> float:
        loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())
    return step


def measure_torch(spec: dict) -> dict:
    """Every peer measurement in this process (see the module notes); ``spec`` holds batch,
    image_size, steps, repeats, warmup, gemm_size, lr, weight_decay, label_smoothing, threads."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    batch, size, steps = int(spec["batch"]), int(spec["image_size"]), int(spec["steps"])
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "onednn": bool(torch.backends.mkldnn.is_available()), "rows": [], "model": spec.get("model", "alexnet")}
    out["gemm"] = _torch_gemm(int(spec["gemm_size"]), int(spec["repeats"])) if int(spec["gemm_size"]) else None
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 10, (batch,))
    for layout in LAYOUTS:
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = build_torch_model(out["model"], 10).to(memory_format=fmt)
        x = images.contiguous(memory_format=fmt)
        step = _train_step(model, x, labels, spec)
        for _ in range(int(spec["warmup"])):
            step()

        def train_run():
            for _ in range(steps):
                step()
            return steps * batch

        out["rows"].append({"section": "train step", "layout": layout,
                            **_median_rate(train_run, int(spec["repeats"]))})
        model.eval()

        def eval_run():
            with torch.inference_mode():
                for _ in range(steps):
                    model(x).numpy()
            return steps * batch

        eval_run()  # warm-up
        out["rows"].append({"section": "eval fwd", "layout": layout, **_median_rate(eval_run, int(spec["repeats"]))})
        del model, step
    return out


def worker_main(arg: str) -> None:
    """Entry of the peer's subprocess: ``arg`` is the JSON spec, with ``out`` the result file."""
    spec = json.loads(arg)
    try:
        if spec.get("task") == "ba_overhead":
            result = torch_models().measure_ba_overhead(spec, _train_step)
        else:
            result = measure_torch(spec)
    except ImportError as exc:
        result = {"unavailable": f"import torch failed: {(str(exc) or type(exc).__name__).splitlines()[0]}"}
    Path(spec["out"]).write_text(json.dumps(result))


def measure_peer(spec: dict, env: Optional[dict] = None, timeout: float = 1800) -> dict:
    """Run :func:`measure_torch` in a fresh interpreter that loads this file by path (no Paddle,
    no ba_net ``__init__``). Returns its result, or ``{"unavailable": reason}`` when torch cannot
    be imported there; raises RuntimeError if the subprocess fails otherwise."""
    with tempfile.TemporaryDirectory(prefix="ba_net_peer_") as tmp:
        out = Path(tmp) / "peer.json"
        code = ("import importlib.util, sys\n"
                "spec = importlib.util.spec_from_file_location('ba_net_torch_peer', sys.argv[1])\n"
                "module = importlib.util.module_from_spec(spec)\n"
                "spec.loader.exec_module(module)\n"
                "module.worker_main(sys.argv[2])\n")
        proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve()),
                               json.dumps({**spec, "out": str(out)})], env=env if env is not None else dict(os.environ),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=tmp)
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
            from ba_net.errors import CheckFailed  # here: the peer's own workers never import ba_net (Paddle)

            raise CheckFailed(f"measuring the PyTorch peer failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text())


# ------------------------------------------------------------------ taking turns (interleaved)

TASKS = ("train", "eval")


def _torch_tasks(spec: dict) -> dict:
    """task -> zero-argument callable for the PyTorch peer: a train step in ``spec['train_layout']``
    and an eval forward in ``spec['eval_layout']`` (as in :func:`measure_torch`)."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    batch, size = int(spec["batch"]), int(spec["image_size"])
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def prepare(task):
        fmt = torch.channels_last if spec[f"{task}_layout"] == "channels_last" else torch.contiguous_format
        model = build_torch_model(spec.get("model", "alexnet"), 10).to(memory_format=fmt)
        x = images.contiguous(memory_format=fmt)
        if task == "eval":
            model.eval()

            def forward():
                with torch.inference_mode():
                    model(x).numpy()
            return forward
        return _train_step(model, x, labels, spec)

    return prepare


def _paddle_tasks(spec: dict, workdir: Path) -> Callable:
    """task -> callable for our ``spec['model']`` (AlexNet when absent): the fast path's train
    step and the Paddle Inference forward (the predictor is made only when the eval turns start, after every train turn: a
    predictor in the process slows the training program down), its exported model in ``workdir``."""
    from ba_net.bench.rows import Settings, eval_callable, make_trainer, row_config, sample_batch

    name = spec.get("model", "alexnet")
    settings = Settings(batch_size=int(spec["batch"]), large_batch_size=int(spec["batch"]),
                        image_sizes={name: int(spec["image_size"])})
    x, y = sample_batch(settings, name)
    held = {}

    def prepare(task):
        import paddle

        held.clear()  # the trainer goes before the predictor comes
        if task == "eval":
            runner = eval_callable(name, "inference", Path(tempfile.mkdtemp(dir=workdir)))
            held["runner"] = runner
            return lambda: runner(x).numpy()
        with paddle.utils.unique_name.guard():
            step = make_trainer(name, "fast", row_config(settings, "fast", model=name))["step"]
        held["step"] = step
        return lambda: float(step(x, y))

    return prepare


def serve(kind: str, arg: str) -> None:
    """A worker of :func:`take_turns`: prints ``ready``, then for each stdin line ``<task> <k>``
    runs ``k`` units of ``task`` and prints the seconds they took. A task is prepared and warmed
    up (``spec['warmup']`` untimed units) the first time it is asked for, outside the timing. Our
    exported inference models live in a temporary folder removed when stdin closes."""
    spec = json.loads(arg)
    with tempfile.TemporaryDirectory(prefix="ba_net_turns_") as workdir:
        prepare = _torch_tasks(spec) if kind == "pytorch" else _paddle_tasks(spec, Path(workdir))
        ready, current = {}, [None]
        print("ready", flush=True)
        for line in sys.stdin:
            task, k = line.split()
            if current[0] != task:
                ready.clear()
                ready[task] = prepare(task)
                for _ in range(max(1, int(spec["warmup"]))):
                    ready[task]()
                current[0] = task
            t0 = time.perf_counter()
            for _ in range(int(k)):
                ready[task]()
            print(time.perf_counter() - t0, flush=True)
        ready.clear()


def worker_commands(spec: dict) -> dict:
    """The two workers of the interleaved comparison: ours (imports ba_net) and the PyTorch peer
    (this file loaded by path, no Paddle)."""
    arg = json.dumps(spec)
    by_path = ("import importlib.util, sys\n"
               "spec = importlib.util.spec_from_file_location('ba_net_torch_peer', sys.argv[1])\n"
               "module = importlib.util.module_from_spec(spec)\n"
               "spec.loader.exec_module(module)\n"
               "module.serve('pytorch', sys.argv[2])\n")
    return {"ours": [sys.executable, "-c", "import sys, ba_net.bench.torch_peer as t; t.serve('paddle', sys.argv[1])", arg],
            "pytorch": [sys.executable, "-c", by_path, str(Path(__file__).resolve()), arg]}


def take_turns(commands: dict, tasks, turns: int, units: int, images_per_unit: int, env: Optional[dict] = None,
               timeout: float = 1800, pause: float = 0.5) -> dict:
    """Two persistent worker processes (``commands``: "ours" and "pytorch" -> argv of a
    :func:`serve` loop) take turns, one idle while the other runs: for each task, ``turns`` turns
    each of ``units`` units, in ABBA order so a drift of the load hits both alike. Returns per
    task each worker's images/s (median turn) and ``ours_over_pytorch``, the median over the
    paired turns of (PyTorch's time / ours): above 1, ours is faster. ``pause`` seconds pass
    between turns: an OpenMP runtime keeps its threads spinning for a while after its work
    (Intel's 200 ms by default), which would otherwise eat into the next worker's turn."""
    names = ("ours", "pytorch")
    logs = {n: tempfile.TemporaryFile(mode="w+") for n in names}  # a pipe could fill up and block the worker
    procs = {n: subprocess.Popen(commands[n], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[n],
                                 text=True, env=env, cwd=tempfile.gettempdir()) for n in names}
    deadline = time.time() + timeout

    def read(name):
        line = procs[name].stdout.readline()
        if not line or time.time() > deadline:
            logs[name].seek(0)
            err = "\n".join(logs[name].read().strip().splitlines()[-10:])
            from ba_net.errors import CheckFailed

            raise CheckFailed(f"interleaved worker {name} stopped (exit {procs[name].poll()}):\n{err}")
        return line.strip()

    try:
        for name in names:
            while read(name) != "ready":
                pass
        out = {}
        for task in tasks:
            seconds = {n: [] for n in names}
            for i in range(turns):
                for name in (names if i % 2 == 0 else names[::-1]):
                    time.sleep(pause)
                    procs[name].stdin.write(f"{task} {units}\n")
                    procs[name].stdin.flush()
                    seconds[name].append(float(read(name)))
            out[task] = {**{f"{n}_img_s": units * images_per_unit / statistics.median(seconds[n]) for n in names},
                         "ours_over_pytorch": statistics.median(
                             [b / a for a, b in zip(seconds["ours"], seconds["pytorch"])]),
                         "turns": turns, "units_per_turn": units}
        return out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for log in logs.values():
            log.close()


def count_torch_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


__all__ = ["LAYOUTS", "TASKS", "build_torch_alexnet", "build_torch_model", "count_torch_params", "measure_peer",
           "measure_torch", "serve", "take_turns", "torch_importable", "torch_models", "worker_commands", "worker_main"]
