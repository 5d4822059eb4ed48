"""Device choice with what this machine lacks faked: a CUDA build with GPUs, a GPU-less one, and
the benchmark's measuring subprocesses under --device cpu."""
import json
import subprocess
import sys

import paddle
import pytest

from ba_net import benchmark
from ba_net.benchmark_rows import Settings
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


def test_benchmark_subprocesses_see_no_gpu_under_device_cpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert benchmark._child_env(False, "cpu")["CUDA_VISIBLE_DEVICES"] == ""
    assert benchmark._child_env(True, "cpu")["CUDA_VISIBLE_DEVICES"] == ""
    assert benchmark._child_env(False, "auto")["CUDA_VISIBLE_DEVICES"] == "0,1"
    # the worker sets the device the settings name before measuring: run its entry with a fake
    # CUDA build and read back what it chose
    code = ("import json, sys, paddle\n"
            "paddle.device.is_compiled_with_cuda = lambda: True\n"
            "paddle.device.cuda.device_count = lambda: 1\n"
            "chosen = []\n"
            "paddle.set_device = chosen.append\n"
            "import ba_net.benchmark as b\n"
            "b.measure_here = lambda *a, **k: {'chosen': chosen}\n"
            "b._worker_main(sys.argv[1])\n")
    for device, expected in (("cpu", ["cpu"]), ("auto", ["gpu:0"])):
        settings = Settings.quick_settings(device=device)
        out = benchmark.Path(benchmark.tempfile.mkdtemp()) / "r.json"
        spec = {"task": "gemm", "model": "", "path": "fast", "workers": 0, "out": str(out), "tmp": str(out.parent),
                "settings": benchmark.dataclasses.asdict(settings)}
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                              env=benchmark._child_env(False, device), timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["chosen"] == expected
