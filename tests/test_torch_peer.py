"""The benchmark's PyTorch peer (ba_net/bench/torch_peer.py) and its yardstick.

Tests that need PyTorch skip when it is not installed (CI has none; ba_net never requires it);
the rest fake a missing torch and check that the benchmark skips the peer with one line."""
import logging
import sys

import numpy as np
import paddle
import pytest

from ba_net.errors import CheckFailed
from ba_net import build_model
from ba_net.bench import benchmark
from ba_net.bench.rows import Settings
from ba_net.models.complexity import count_params
from ba_net.bench import torch_peer

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
    best = benchmark.yardstick(result)
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
    benchmark.vs_pytorch(result)
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
