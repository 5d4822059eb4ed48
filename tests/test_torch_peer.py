"""The benchmark's PyTorch peer (ba_net/bench/torch_peer.py, torch_resnet.py) and its yardstick.

Tests that need PyTorch skip when it is not installed (CI has none; ba_net never requires it);
the rest fake a missing torch and check that the benchmark skips the peer with one line."""
import logging
import sys

import numpy as np
import paddle
import pytest

from ba_net import build_model
from ba_net.bench import benchmark
from ba_net.bench.rows import Settings
from ba_net.models.complexity import count_params
from ba_net.bench import table, torch_peer, torch_resnet
from ba_net.errors import CheckFailed

needs_torch = pytest.mark.skipif(not torch_peer.torch_importable(), reason="PyTorch is not installed (optional peer)")


def _hand_count(num_classes=10):
    """AlexNet's parameters from its layer shapes (weights + biases)."""
    convs = [(3, 48, 11), (48, 128, 5), (128, 192, 3), (192, 192, 3), (192, 128, 3)]
    linears = [(128 * 3 * 3, 2048), (2048, 2048), (2048, num_classes)]
    return sum(i * o * k * k + o for i, o, k in convs) + sum(i * o + o for i, o in linears)


@needs_torch
def test_torch_alexnet_is_our_alexnet():
    """Same parameter count as ours (paddle's count and the hand count), same shapes layer by
    layer, [N, 10] logits at 128 px, and with our weights copied in, our eval-mode logits."""
    import torch

    peer = torch_peer.build_torch_alexnet(10)
    with paddle.utils.unique_name.guard():
        paddle.seed(0)
        ours = build_model("alexnet", num_classes=10)
    assert torch_peer.count_torch_params(peer) == count_params(ours)["trainable"] == _hand_count()
    ours_params = [p for p in ours.parameters()]
    peer_params = list(peer.parameters())
    assert len(peer_params) == len(ours_params)
    with torch.no_grad():
        for p, q in zip(peer_params, ours_params):
            value = q.numpy()
            if value.ndim == 2:  # Paddle's Linear weight is [in, out], PyTorch's [out, in]
                value = value.T
            assert tuple(p.shape) == value.shape
            p.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    x = np.random.default_rng(0).standard_normal((3, 3, 128, 128)).astype("float32")
    peer.eval()
    ours.eval()
    with torch.no_grad():
        got = peer(torch.from_numpy(x)).numpy()
        got_nhwc = peer.to(memory_format=torch.channels_last)(
            torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()
    with paddle.no_grad():
        want = ours(paddle.to_tensor(x)).numpy()
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_nhwc, want, rtol=1e-4, atol=1e-5)


@needs_torch
def test_peer_measures_train_and_eval_in_both_layouts():
    spec = dict(batch=2, image_size=128, steps=1, repeats=1, warmup=1, gemm_size=64, lr=1e-4, weight_decay=1e-5,
                label_smoothing=0.1, threads=1)
    out = torch_peer.measure_peer(spec)
    assert "unavailable" not in out, out
    assert {(r["section"], r["layout"]) for r in out["rows"]} == {
        (s, lay) for s in ("train step", "eval fwd") for lay in ("eager", "channels_last")}
    assert all(r["img_s"] > 0 for r in out["rows"]) and out["gemm"] > 0


def test_benchmark_skips_the_peer_with_one_line_without_torch(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError

    def must_not_run(*args, **kwargs):
        raise AssertionError("the peer was measured without torch")

    monkeypatch.setattr(benchmark, "measure_peer", must_not_run)
    result = {}
    with caplog.at_level(logging.DEBUG, logger="ba_net"):
        rows = benchmark.measure_torch_peer(result, Settings.quick_settings())
    assert rows == [] and "peer" not in result
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("PyTorch peer: skipped"), lines


def test_peer_subprocess_without_torch_reports_it(tmp_path, caplog, monkeypatch):
    """torch found by the parent but failing to import in the measuring subprocess: one line, no
    rows (a fake torch package on PYTHONPATH raises ImportError)."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torch here (fake)')\n")
    spec = dict(batch=2, image_size=128, steps=1, repeats=1, warmup=0, gemm_size=64, lr=1e-4, weight_decay=0.0,
                label_smoothing=0.0, threads=1)
    out = torch_peer.measure_peer(spec, env={**benchmark._child_env(False), "PYTHONPATH": str(fake.parent)})
    assert out == {"unavailable": "import torch failed: no torch here (fake)"}
    monkeypatch.setattr(benchmark, "torch_importable", lambda: True)
    monkeypatch.setattr(benchmark, "measure_peer", lambda spec, env: out)
    result = {}
    with caplog.at_level(logging.DEBUG, logger="ba_net"):
        assert benchmark.measure_torch_peer(result, Settings.quick_settings()) == []
    assert [r.getMessage() for r in caplog.records] == ["PyTorch peer: skipped (import torch failed: no torch here "
                                                        "(fake))"]


def _result(gemm, rows, macs):
    return {"gemm": gemm, "macs_per_image": macs, "rows": [
        {"section": s, "model": m, "path": p, "img_s": v} for s, m, p, v in rows]}


@pytest.mark.parametrize("seed", range(5))
def test_yardstick_share_is_at_most_100(seed):
    """Whatever the rates, the yardstick is the best of the GEMM rates and the rows' own rates,
    so no row exceeds 100 % and the best one (if it beats every GEMM) is exactly 100 %."""
    rng = np.random.default_rng(seed)
    macs = {"alexnet": 97_012_352, "ba_alexnet": 97_049_408}
    gemm = {"paddle": float(rng.uniform(50, 300)), "numpy": float(rng.uniform(50, 300)), "start": {"paddle": 1.0},
            "pytorch": float(rng.uniform(50, 300))}
    sections = ["train step", "train e2e", "eval fwd", "eval pass"]
    rows = [(sections[i % 4], ("alexnet", "ba_alexnet")[i % 2], f"p{i}", float(rng.uniform(10, 2000)))
            for i in range(12)]
    result = _result(gemm, rows, macs)
    best = table.yardstick(result)
    own = [(6 if s.startswith("train") else 2) * macs[m] * v / 1e9 for s, m, _, v in rows]
    assert best == pytest.approx(max(gemm["paddle"], gemm["numpy"], gemm["pytorch"], *own))
    pct = [r["pct_best"] for r in result["rows"]]
    assert all(0 < p <= 100.0 + 1e-9 for p in pct)
    if max(own) > max(gemm["paddle"], gemm["numpy"], gemm["pytorch"]):
        assert max(pct) == pytest.approx(100.0)
        assert result["yardstick"]["source"] != "fp32 GEMM (paddle)"


def test_x_pytorch_is_against_the_best_layout_of_the_section():
    result = _result({}, [("train step", "alexnet", "fast", 300.0), ("train step", "alexnet", "pytorch eager", 400.0),
                          ("train step", "alexnet", "pytorch channels_last", 600.0),
                          ("eval fwd", "alexnet", "inference", 900.0), ("eval fwd", "alexnet", "pytorch eager", 450.0),
                          ("train step", "ba_alexnet", "fast", 280.0), ("eval pass", "alexnet", "inference", 500.0)],
                     {})
    table.vs_pytorch(result)
    got = {(r["section"], r["model"], r["path"]): r.get("vs_pytorch") for r in result["rows"]}
    assert got[("train step", "alexnet", "fast")] == pytest.approx(0.5)
    assert got[("train step", "alexnet", "pytorch channels_last")] == pytest.approx(1.0)
    assert got[("eval fwd", "alexnet", "inference")] == pytest.approx(2.0)
    assert got[("train step", "ba_alexnet", "fast")] is None  # the peer is AlexNet only
    assert got[("eval pass", "alexnet", "inference")] is None  # no peer row in that section


FAKE_WORKER = """
import sys
name, per_unit, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
print("ready", flush=True)
for line in sys.stdin:
    task, k = line.split()
    with open(log, "a") as f:
        f.write(f"{name} {task} {k}\\n")
    print(per_unit * int(k) * (2 if task == "eval" else 1), flush=True)
"""


def test_take_turns_alternates_abba_and_pairs_the_times(tmp_path):
    """Fake workers report their seconds (ours 0.1 s per batch, PyTorch 0.3 s; eval twice that):
    the turns go ABBA, each worker runs `units` batches per turn, and ours / PyTorch is 3."""
    log = tmp_path / "turns.log"
    commands = {name: [sys.executable, "-c", FAKE_WORKER, name, str(per_unit), str(log)]
                for name, per_unit in (("ours", 0.1), ("pytorch", 0.3))}
    out = torch_peer.take_turns(commands, ("train", "eval"), turns=4, units=2, images_per_unit=8, pause=0.0)
    calls = log.read_text().split("\n")[:-1]
    names = [c.split()[0] for c in calls]
    assert names == ["ours", "pytorch", "pytorch", "ours"] * 4  # 4 turns per task, 2 tasks
    assert [c.split()[1] for c in calls] == ["train"] * 8 + ["eval"] * 8 and all(c.endswith(" 2") for c in calls)
    assert out["train"]["ours_over_pytorch"] == pytest.approx(3.0)
    assert out["train"]["ours_img_s"] == pytest.approx(2 * 8 / 0.2)
    assert out["eval"]["pytorch_img_s"] == pytest.approx(2 * 8 / 1.2)
    assert out["eval"]["turns"] == 4


def test_take_turns_reports_a_dead_worker(tmp_path):
    commands = {"ours": [sys.executable, "-c", FAKE_WORKER, "ours", "0.1", str(tmp_path / "log")],
                "pytorch": [sys.executable, "-c", "import sys; sys.exit('no torch (fake)')"]}
    with pytest.raises(CheckFailed, match="worker pytorch stopped.*\n.*no torch"):
        torch_peer.take_turns(commands, ("train",), turns=2, units=1, images_per_unit=1, pause=0.0)



@needs_torch
def test_the_real_workers_take_turns_and_leave_no_files(tmp_path):
    """Our worker (fast train step, then a Paddle Inference predictor of an exported model) and
    the PyTorch one, tiny BA-ResNet-20: both tasks measured, and the exported model's folder is
    gone once the turns are over (it used to stay in the temporary folder after every run)."""
    import os

    spec = dict(model="ba_resnet20", batch=2, image_size=32, warmup=1, threads=1, lr=1e-4, weight_decay=1e-5,
                label_smoothing=0.1, train_layout="eager", eval_layout="channels_last")
    env = {**benchmark._child_env(False, "cpu"), "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = torch_peer.take_turns(torch_peer.worker_commands(spec), torch_peer.TASKS, turns=2, units=1,
                                images_per_unit=2, env=env, pause=0.0)
    for task in torch_peer.TASKS:
        assert out[task]["ours_img_s"] > 0 and out[task]["pytorch_img_s"] > 0 and out[task]["ours_over_pytorch"] > 0
    assert [n for n in os.listdir(tmp_path) if n.startswith("ba_net")] == []  # torch's own cache may stay


# ------------------------------------------------------------------ the ResNets (torch_resnet.py)

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype="float32").reshape(1, 3, 1, 1)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype="float32").reshape(1, 3, 1, 1)


def _ours_with_random_state(name, seed=0):
    """Our model with every BatchNorm's weight, bias, mean and variance drawn at random, set
    through the state dict, so eval mode is more than the identity BN of a fresh model."""
    rng = np.random.default_rng(seed)
    with paddle.utils.unique_name.guard():
        paddle.seed(seed)
        model = build_model(name, num_classes=10)
    state = {}
    for key, value in model.state_dict().items():
        v = value.numpy()
        if v.ndim == 1:  # BatchNorm: weight, bias, _mean, _variance (the fc bias too)
            if key.endswith("_variance"):
                v = rng.uniform(0.5, 2.0, v.shape)
            elif key.endswith(".weight"):
                v = rng.uniform(0.5, 1.5, v.shape)
            else:
                v = rng.normal(0.0, 0.2, v.shape)
        state[key] = v.astype("float32")
    model.set_state_dict(state)
    return model


def _inputs(size, cifar_subset):
    """Real CIFAR-10 test images for 32 px (8, normalised); for 224 px 4 random images with some
    structure (8 x 8 Gaussian cells of 28 px plus half as much pixel noise: plain N(0, 1) noise
    pools to nearly the same vector for every image, which leaves BA's BatchNorm1d in train mode a
    batch variance near its epsilon, an ill-conditioned comparison)."""
    if size == 32:
        from ba_net.data import read_cifar10

        images = read_cifar10(cifar_subset, "test")[0][:8]
        return ((images.transpose(0, 3, 1, 2).astype("float32") / 255.0 - CIFAR_MEAN) / CIFAR_STD).astype("float32")
    rng = np.random.default_rng(0)
    cells = np.kron(rng.standard_normal((4, 3, 8, 8)), np.ones((1, 1, size // 8, size // 8)))
    return (cells + 0.5 * rng.standard_normal((4, 3, size, size))).astype("float32")


def _train_logits(name, state, x, dtype):
    """Train-mode logits of ours and of the PyTorch copy (fresh models, ``state`` loaded) in
    ``dtype``: (ours, peer)."""
    import torch

    paddle.set_default_dtype(dtype)
    try:
        with paddle.utils.unique_name.guard():
            ours = build_model(name, num_classes=10)
        ours.set_state_dict({k: v.astype(dtype) for k, v in state.items()})
        ours.train()
        with paddle.no_grad():
            want = ours(paddle.to_tensor(x.astype(dtype))).numpy()
    finally:
        paddle.set_default_dtype("float32")
    peer = torch_resnet.build_torch_resnet(name, 10)
    peer = peer.double() if dtype == "float64" else peer
    torch_resnet.load_paddle_state(peer, state)
    peer.train()
    with torch.no_grad():
        got = peer(torch.from_numpy(x.astype(dtype))).numpy()
    return want, got


@needs_torch
@pytest.mark.parametrize("name", torch_resnet.MODELS)
def test_torch_resnet_gives_our_logits(name, cifar_subset):
    """Our state dict copied into the PyTorch ResNet (key by key, Linear weights transposed):
    the same trainable parameter count, our eval-mode logits (NCHW and channels_last) and our
    train-mode logits (batch statistics) on the same batch.

    float32 at rtol 1e-4 / atol 1e-5: eval for all four, train for the 32 px models. ResNet-50's
    train-mode float32 logits differ by 0.3 to 1.0 x that tolerance depending on the batch
    (measured on 5 batches): each framework alone is ~1.5-1.8e-5 away from its own float64 result
    there, pure float32 rounding. So train mode is also compared in float64, for all four, at rtol
    1e-7 / atol 1e-8 (measured: 1e-11 for the plain models, 7.5e-10 for BA-ResNet-50, whose
    BatchNorm1d over 4 pooled vectors amplifies rounding): the same arithmetic, a thousand times
    tighter."""
    import torch

    ours = _ours_with_random_state(name)
    state = {k: v.numpy() for k, v in ours.state_dict().items()}
    peer = torch_resnet.build_torch_resnet(name, 10)
    assert torch_peer.count_torch_params(peer) == count_params(ours)["trainable"]
    torch_resnet.load_paddle_state(peer, ours.state_dict())
    x = _inputs(torch_resnet.INPUT_SIZE[name], cifar_subset)
    ours.eval()
    peer.eval()
    with paddle.no_grad():
        want = ours(paddle.to_tensor(x)).numpy()
    with torch.no_grad():
        got = peer(torch.from_numpy(x)).numpy()
        got_nhwc = peer.to(memory_format=torch.channels_last)(
            torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()
    assert got.shape == (len(x), 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_nhwc, want, rtol=1e-4, atol=1e-5)
    # train mode on fresh copies: a train forward moves the running statistics (and PyTorch
    # updates the running variance with the unbiased batch variance where Paddle uses the biased)
    if torch_resnet.INPUT_SIZE[name] == 32:
        want, got = _train_logits(name, state, x, "float32")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    want, got = _train_logits(name, state, x, "float64")
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8)


@needs_torch
def test_load_paddle_state_refuses_what_does_not_fit():
    with paddle.utils.unique_name.guard():
        state = build_model("ba_resnet20", num_classes=10).state_dict()
    peer = torch_resnet.build_torch_resnet("resnet20", 10)
    with pytest.raises(KeyError, match="only ours.*attention"):
        torch_resnet.load_paddle_state(peer, state)  # BA's weights into the plain model
    peer = torch_resnet.build_torch_resnet("ba_resnet20", 100)
    with pytest.raises(ValueError, match="fc"):
        torch_resnet.load_paddle_state(peer, state)  # 10 classes into 100
    assert torch_resnet.torch_key("layer1.0.attention.norms.1._variance") == "layer1.0.attention.norms.1.running_var"
    with pytest.raises(ValueError, match="no 'resnet18'"):
        torch_resnet.build_torch_resnet("resnet18", 10)


def test_the_peer_files_load_without_paddle_or_ba_net():
    """The peer's workers load torch_peer.py by path and it loads torch_resnet.py the same way:
    with paddle and ba_net blocked, neither is imported (torch is not needed to load them)."""
    import subprocess

    code = ("import sys, importlib.util\n"
            "sys.modules['paddle'] = None; sys.modules['ba_net'] = None\n"
            "spec = importlib.util.spec_from_file_location('p', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "r = m.torch_models()\n"
            "assert r.__name__ == 'ba_net_torch_resnet' and r.MODELS[-1] == 'ba_resnet50', r\n"
            "assert sys.modules['paddle'] is None and sys.modules['ba_net'] is None\n"
            "print('torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code, torch_peer.__file__], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"  # torch itself is imported only when a model is built


@needs_torch
def test_peer_measures_a_resnet_and_ba_overhead():
    spec = dict(batch=4, image_size=32, steps=1, repeats=1, warmup=1, gemm_size=0, lr=1e-4, weight_decay=1e-5,
                label_smoothing=0.1, threads=1, model="ba_resnet20")
    out = torch_peer.measure_peer(spec)
    assert out["model"] == "ba_resnet20" and out["gemm"] is None
    assert {(r["section"], r["layout"]) for r in out["rows"]} == {
        (s, lay) for s in ("train step", "eval fwd") for lay in ("eager", "channels_last")}
    over = torch_peer.measure_peer({**spec, "task": "ba_overhead", "pairs": 2, "train_layout": "channels_last",
                                    "eval_layout": "eager"})
    assert over["layouts"] == {"train": "channels_last", "eval": "eager"}
    for task in ("train", "eval"):
        assert over[task]["pairs"] == 2 and over[task]["resnet20_img_s"] > 0 and over[task]["ba_resnet20_img_s"] > 0
        assert over[task]["overhead_pct"] > -100


def test_x_pytorch_is_per_model():
    result = _result({}, [("train step", "resnet20", "fast", 300.0), ("train step", "resnet20", "pytorch eager", 600.0),
                          ("train step", "ba_resnet20", "fast", 200.0),
                          ("train step", "ba_resnet20", "pytorch channels_last", 100.0),
                          ("eval fwd", "resnet50", "inference", 10.0)], {})
    table.vs_pytorch(result)
    got = {(r["section"], r["model"], r["path"]): r.get("vs_pytorch") for r in result["rows"]}
    assert got[("train step", "resnet20", "fast")] == pytest.approx(0.5)
    assert got[("train step", "ba_resnet20", "fast")] == pytest.approx(2.0)
    assert got[("eval fwd", "resnet50", "inference")] is None


def test_resnet_suite_without_torch_skips_the_peer_with_one_line(monkeypatch, caplog):
    """--resnet without torch: our rows, no peer row, one line (not one per model)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr(benchmark, "measure", lambda task, settings, model="", path="", workers=0: (
        {"img_s": 1.0} if task == "train_step" else {"forward": {"img_s": 2.0}}))
    settings = Settings.quick_settings(suite="resnet", models=torch_resnet.MODELS)
    result = {"rows": []}
    with caplog.at_level(logging.INFO, logger="ba_net"):
        benchmark._measure_rows(result, settings)
    assert {(r["section"], r["path"]) for r in result["rows"]} == {("train step", "fast"), ("eval fwd", "inference")}
    assert len(result["rows"]) == 8
    lines = [r.getMessage() for r in caplog.records if "PyTorch" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("PyTorch peer: skipped"), lines


def test_table_shows_the_peer_beside_each_resnet_and_bas_cost_in_both():
    turns = {"train": {"ours_over_pytorch": 0.62, "turns": 6, "units_per_turn": 5},
             "eval": {"ours_over_pytorch": 1.31, "turns": 6, "units_per_turn": 5},
             "layouts": {"train": "eager", "eval": "channels_last"}}
    models = ["resnet20", "ba_resnet20"]
    result = {"date": "today", "machine": {"cpu": "cpu", "usable_cpus": 2, "device": "cpu", "paddle": "3",
                                           "env": {"OMP_NUM_THREADS": "2", "MKL_DEBUG_CPU_TYPE": None}},
              "settings": {"gemm_size": 64, "models": models, "repeats": 3, "steps": 5, "large_steps": 1, "warmup": 2,
                           "suite": "resnet"},
              "gemm": {"paddle": 1.0, "numpy": 1.0, "start": {"paddle": 1.0}, "end": {"paddle": 1.0}},
              "peer": {"torch": "2", "threads": 2, "onednn": True, "gemm": None},
              "peer_turns": {m: turns for m in models}, "yardstick": {"gflops": 1.0, "source": "x"},
              "rows": [{"section": "train step", "model": m, "path": "fast", "img_s": 100.0} for m in models],
              "input": {m: {"image_size": 32, "batch_size": 128} for m in models},
              "macs_per_image": {m: 1 for m in models}, "params": {m: {"trainable": 1} for m in models},
              "ba_overhead_interleaved": {"ba_resnet20": {"train": {"overhead_pct": 12.0},
                                                          "eval": {"overhead_pct": 30.0}}},
              "peer_ba_overhead": {"ba_resnet20": {"train": {"overhead_pct": 20.0, "pairs": 15},
                                                   "eval": {"overhead_pct": 40.0, "pairs": 15},
                                                   "layouts": {"train": "eager", "eval": "channels_last"}}}}
    text = table.format_table(result)
    assert "| ours / PyTorch train (turns) |" in text and "| PyTorch's BA overhead train / eval |" in text
    assert "| ba_resnet20 | 32 px | 128 | 1 | 1 | 100.0 | 0.62 (eager) |  | 1.31 (channels_last) | " \
           "+12.0 % / +30.0 % | +20.0 % / +40.0 % |" in text
    assert "in PyTorch, measured the same way: training (eager) +20.0 %, eval (channels_last) +40.0 %" in text
    assert "resnet20, ba_resnet20: ours and PyTorch's faster layout taking turns" in text
