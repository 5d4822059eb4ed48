"""Device choice with what this machine lacks faked: a CUDA build with GPUs, a GPU-less one, and
the benchmark's measuring subprocesses under --device cpu (their environment, and their entry run
in this process)."""
import json
import logging

import paddle
import pytest

from ba_net.bench import benchmark
from ba_net.bench.rows import Settings
from ba_net.errors import ConfigError
from ba_net.runtime import select_device


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CUDA build with two GPUs; paddle.set_device records instead of switching."""
    chosen = []
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(paddle, "set_device", chosen.append)
    return chosen


def test_cpu_is_honoured_on_a_cuda_build(fake_cuda, monkeypatch):
    assert select_device("cpu") == "cpu" and fake_cuda == ["cpu"]
    assert select_device("auto") == "gpu:0"
    monkeypatch.setenv("FLAGS_selected_gpus", "1")  # what paddle.distributed.launch gives rank 1
    assert select_device("gpu") == "gpu:1" and fake_cuda[-1] == "gpu:1"


def test_gpu_without_cuda_is_one_line(monkeypatch):
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: False)
    with pytest.raises(ConfigError, match="device 'gpu' requested but Paddle has no usable CUDA device"):
        select_device("gpu")
    assert select_device("auto") == "cpu"


def test_benchmark_subprocesses_see_no_gpu_under_device_cpu(tmp_path, monkeypatch, fake_cuda):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert benchmark._child_env(False, "cpu")["CUDA_VISIBLE_DEVICES"] == ""
    assert benchmark._child_env(True, "cpu")["CUDA_VISIBLE_DEVICES"] == ""
    assert benchmark._child_env(False, "auto")["CUDA_VISIBLE_DEVICES"] == "0,1"
    # the worker sets the device the settings name before measuring: run its entry in this process
    # with a fake CUDA build (fake_cuda) and the measurement stubbed, and read back what it chose;
    # the ba_net logger it sets up is restored afterwards
    monkeypatch.setattr(benchmark, "measure_here", lambda *a, **k: {"chosen": list(fake_cuda)})
    logger = logging.getLogger("ba_net")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        for device, expected in (("cpu", ["cpu"]), ("auto", ["gpu:0"])):
            fake_cuda.clear()
            settings = Settings.quick_settings(device=device)
            out = tmp_path / f"{device}.json"
            spec = {"task": "gemm", "model": "", "path": "fast", "workers": 0, "out": str(out),
                    "tmp": str(out.parent), "settings": benchmark.dataclasses.asdict(settings)}
            benchmark._worker_main(json.dumps(spec))
            assert json.loads(out.read_text())["chosen"] == expected
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


# ------------------------------------------------------------------ AMP's loss scaler, resumed

class _GpuPlace:
    def __getattr__(self, name):  # is_gpu_place() -> True; is_xpu_place(), is_custom_place() -> False
        return lambda: name == "is_gpu_place"


class _GpuTracer:
    _expected_place = _GpuPlace()


@pytest.fixture
def gpu_scalers(monkeypatch, fake_cuda):
    """train.amp on a faked GPU: GradScaler believes it is on CUDA (its state machine runs on the
    CPU); every scaler the engine makes is kept, and grows its scale every 4 finite steps."""
    import paddle.amp.grad_scaler as grad_scaler

    from ba_net.train import amp

    made = []

    def scaler(amp, device):
        assert amp and device.startswith("gpu")
        with monkeypatch.context() as m:
            m.setattr(grad_scaler, "_dygraph_tracer", lambda: _GpuTracer())
            made.append(paddle.amp.GradScaler(init_loss_scaling=1024.0, incr_every_n_steps=4))
        return made[-1]

    monkeypatch.setattr(amp, "grad_scaler", scaler)
    return made


def test_a_resumed_amp_run_continues_with_the_loss_scale_of_the_uninterrupted_one(tmp_path, cifar_subset,
                                                                                  gpu_scalers, monkeypatch):
    """3 steps per epoch, the scale doubles after every 4 finite steps: uninterrupted, 6 steps end
    at scale 2048 with 2 steps counted since; a run stopped after epoch 1 and resumed must end the
    same (without the restored state it would end at 1024 with 3 counted)."""
    from ba_net.train import engine
    from ba_net.runs import folder as runs
    from ba_net.config import load_config
    from helpers import small_cifar10, tiny_config

    data = small_cifar10(cifar_subset, tmp_path / "small.tar.gz", n_train=100, n_test=16)

    def cfg(name):
        return load_config(None, base=tiny_config(tmp_path / name, data, device="gpu",
                                                  train={"amp": True, "path": "dygraph"}))

    engine.run_experiment(cfg("straight"))
    straight = gpu_scalers[-1].state_dict()
    assert (float(straight["scale"][0]), straight["incr_count"]) == (2048.0, 2)

    save = runs.save_resume_state

    def save_then_die(folder, epoch, *args):
        save(folder, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs, "save_resume_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.run_experiment(cfg("stopped"))
    monkeypatch.setattr(runs, "save_resume_state", save)
    state = json.loads((runs.run_folder(cfg("stopped"), "resnet20", 0).state).read_text())
    assert state["scaler"]["scale"] == 1024.0 and state["scaler"]["incr_count"] == 3
    engine.run_experiment(cfg("stopped"), resume=True)
    resumed = gpu_scalers[-1].state_dict()
    assert (float(resumed["scale"][0]), resumed["incr_count"]) == (2048.0, 2)
