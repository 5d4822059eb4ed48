"""Data parallel: a real 2-process CPU launch, and the rule that only rank 0 writes."""
import numpy as np
import paddle
import pytest

from ba_net import build_model
from ba_net.train import engine
from ba_net.runs import folder as runs
from ba_net import data as D
from ba_net.config import load_config
from ba_net.data.loading import build_loader
from ba_net.train.loops import evaluate
from ba_net.train.distributed import Distributed, per_process_batch, sync_batch_norm, sync_bn_wanted
from ba_net.errors import ConfigError
from ba_net.train.loss import LabelSmoothingCrossEntropy
from helpers import forked_tool, read_history, run_tool, tiny_config, tree_snapshot


def test_two_process_cpu_launch_reduces_over_both_ranks(tmp_path, small_cifar):
    """Each rank trains on its half of the batches; the validation metrics in history.json are
    those of the saved weights on the whole test split, i.e. summed over both ranks' halves."""
    out = tmp_path / "out"
    r = run_tool(["-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "logs"),
                  "tools/train.py", "-c", "experiments/quick.yaml", "-o", f"output_dir={out}",
                  "-o", f"data.data_file={small_cifar}", "-o", "models=[ba_alexnet]", "-o", "seeds=[3]",
                  "-o", "train.epochs=1", "-o", "train.max_steps_per_epoch=2", "-o", "train.batch_size=8",
                  "-o", "data.num_workers=0", "-o", "train.log_every=1"], timeout=600)
    worker_logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert r.returncode == 0, r.stderr[-2000:] + worker_logs[-2000:]
    folder = out / "quick" / "ba_alexnet" / "seed3"
    h = read_history(folder)
    assert h["status"] == "finished" and h["world_size"] == 2
    # train.batch_size is the global batch: each of the 2 processes took half of it
    assert h["global_batch"] == 8 and h["batch_per_process"] == 4 and h["paddle_version"]
    assert [i["iter"] for i in h["iters"]] == [1, 2]  # steps per epoch are per process
    assert "2 process(es)" in worker_logs
    model = build_model("ba_alexnet", num_classes=10)
    runs.load_weights(model, folder / "final.pdparams")  # one epoch: final = the weights validated
    test_images, test_labels = D.read_cifar10(small_cifar, "test")
    loader = build_loader(test_images, test_labels, D.eval_transform, 8, train=False)
    val_loss, val_acc = evaluate(model, loader, LabelSmoothingCrossEntropy(0.1))
    record = h["epochs"][0]
    assert record["val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert record["val_acc"] == pytest.approx(val_acc, abs=1.5 / len(test_labels))


class _Rank(Distributed):
    """One rank of a 2-process job, simulated in this process: the other rank is taken to have
    seen the same numbers (sums double), and the collective calls do nothing."""

    def __init__(self, rank):
        self.world, self.rank = 2, rank

    def sum(self, values):
        return [2.0 * float(v) for v in values]

    def average_buffers(self, model):
        pass  # the other rank is taken to hold the same statistics


def _as_rank(monkeypatch, rank):
    monkeypatch.setattr(engine, "Distributed", lambda: _Rank(rank))
    monkeypatch.setattr(engine.dist, "init_parallel_env", lambda: None)
    monkeypatch.setattr(engine.dist, "barrier", lambda: None)
    monkeypatch.setattr(engine.paddle, "DataParallel", lambda model: model)


@pytest.mark.parametrize("rank", [0, 1])
def test_only_rank_zero_writes(tmp_path, small_cifar, monkeypatch, rank):
    """The whole ablation (plan, run folder, train.log, VisualDL, checkpoints, history) as rank 1
    of two writes nothing at all; as rank 0, the same call writes the run folder."""
    _as_rank(monkeypatch, rank)
    cfg = load_config(None, base=tiny_config(tmp_path, small_cifar, train={"epochs": 1, "max_steps_per_epoch": 1}))
    before = tree_snapshot(tmp_path)
    summaries = engine.run_experiment(cfg)
    assert summaries[0]["status"] == "finished"
    folder = runs.run_folder(cfg, "resnet20", 0).root
    if rank == 1:
        assert tree_snapshot(tmp_path) == before
    else:
        for name in ("config.yaml", "history.json", "train.log", "final.pdparams"):
            assert (folder / name).is_file(), name
        assert read_history(folder)["world_size"] == 2


def test_global_batch_is_split_over_processes_or_refused():
    cfg = load_config(None, ("train.batch_size=128",))
    assert [per_process_batch(cfg, w) for w in (1, 2, 4, 8)] == [128, 64, 32, 16]
    with pytest.raises(ConfigError, match="global batch 128 does not split evenly over 3 processes; "
                                                 "use a multiple of 3 \\(e.g. 126\\)"):
        per_process_batch(cfg, 3)


def test_two_processes_train_exactly_as_one_with_the_same_global_batch(tmp_path, small_cifar):
    """2 processes x global batch 8 against 1 process x batch 8, same seed and initial weights,
    AlexNet (no BatchNorm) with dropout off, dygraph on both sides: the per-iteration losses and
    the final weights agree to float32 rounding. Tolerance: DataParallel averages the two ranks'
    gradients of their 4-image mean losses, which equals the gradient of the 8-image mean up to
    the order of float32 sums (relative ~1e-6 per step); Adam's update divides by sqrt(v), which
    can amplify that on near-zero gradients, so weights are compared with atol 1e-5 (lr is 2e-4:
    a wrong batch or a missing gradient reduction moves weights by ~lr per step)."""
    args = ["tools/train.py", "-c", "experiments/quick.yaml", "-o", f"data.data_file={small_cifar}",
            "-o", "models=[alexnet]", "-o", "seeds=[5]", "-o", "train.epochs=1", "-o", "train.max_steps_per_epoch=3",
            "-o", "train.batch_size=8", "-o", "data.num_workers=0", "-o", "train.log_every=1",
            "-o", "train.path=dygraph", "-o", "model_kwargs={dropout: 0.0}", "-o", "optimizer.lr=2e-4"]
    serial = forked_tool(args + ["-o", f"output_dir={tmp_path / 'serial'}"], timeout=600)  # the reference
    assert serial.returncode == 0, serial.stderr[-2000:]
    par = run_tool(["-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "logs")]
                   + args + ["-o", f"output_dir={tmp_path / 'parallel'}"], timeout=600)
    logs = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert par.returncode == 0, par.stderr[-2000:] + logs[-2000:]
    runs_ = {k: tmp_path / k / "quick" / "alexnet" / "seed5" for k in ("serial", "parallel")}
    h = {k: read_history(v) for k, v in runs_.items()}
    assert (h["serial"]["world_size"], h["parallel"]["world_size"]) == (1, 2)
    assert h["parallel"]["batch_per_process"] == 4 and h["serial"]["batch_per_process"] == 8
    assert set(h["serial"]) == set(h["parallel"]) and set(h["serial"]["epochs"][0]) == set(h["parallel"]["epochs"][0])
    assert [i["iter"] for i in h["parallel"]["iters"]] == [i["iter"] for i in h["serial"]["iters"]] == [1, 2, 3]
    np.testing.assert_allclose([i["loss"] for i in h["parallel"]["iters"]], [i["loss"] for i in h["serial"]["iters"]],
                               rtol=1e-5)
    np.testing.assert_allclose(h["parallel"]["epochs"][0]["val_loss"], h["serial"]["epochs"][0]["val_loss"], rtol=1e-5)
    w = {k: paddle.load(str(v / "final.pdparams")) for k, v in runs_.items()}
    assert set(w["serial"]) == set(w["parallel"])
    for name in w["serial"]:
        np.testing.assert_allclose(w["parallel"][name].numpy(), w["serial"][name].numpy(), rtol=0, atol=1e-5,
                                   err_msg=name)


# ------------------------------------------------------------------------------- train.sync_bn

def _batch_norms(model, kind):
    return [m for m in model.sublayers() if type(m) is kind]


def test_sync_bn_replaces_every_batch_norm_and_keeps_the_weights():
    """ResNet-20 by hand: the stem's BN, two per basic block (9 blocks), and one in each of the
    two projection shortcuts = 21 BatchNorm layers, all SyncBatchNorm after the conversion, with
    the same state-dict keys and values."""
    model = build_model("resnet20", num_classes=10)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    assert len(_batch_norms(model, paddle.nn.BatchNorm2D)) == 21
    converted = sync_batch_norm(model, True)
    assert len(_batch_norms(converted, paddle.nn.SyncBatchNorm)) == 21
    assert not _batch_norms(converted, paddle.nn.BatchNorm2D)
    after = converted.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        np.testing.assert_array_equal(after[k].numpy(), v, err_msg=k)
    plain = build_model("resnet20", num_classes=10)
    assert sync_batch_norm(plain, False) is plain


@pytest.mark.parametrize("setting,world,device,wanted", [
    (None, 2, "gpu:0", True), (True, 8, "gpu:3", True), (False, 2, "gpu:0", False),
    (None, 1, "gpu:0", False), (True, 1, "cpu", False), (None, 2, "cpu", False), (False, 2, "cpu", False)])
def test_sync_bn_is_on_for_several_gpu_processes_unless_switched_off(setting, world, device, wanted, caplog):
    assert sync_bn_wanted(setting, world, device) is wanted
    warned = "SyncBatchNorm is GPU-only" in caplog.text
    assert warned == (setting is None and world > 1 and device == "cpu")


def test_sync_bn_true_on_cpu_processes_is_refused_before_anything_is_written(tmp_path, small_cifar, monkeypatch):
    _as_rank(monkeypatch, 0)
    cfg = load_config(None, base=tiny_config(tmp_path, small_cifar, models=["resnet20"], train={"sync_bn": True},
                                             data={"transforms": "cifar"}))
    before = tree_snapshot(tmp_path)
    with pytest.raises(ConfigError, match=r"^train.sync_bn: Paddle's SyncBatchNorm runs only on GPUs.*"
                                          r"set train.sync_bn=false"):
        engine.run_experiment(cfg)
    assert tree_snapshot(tmp_path) == before


def test_runs_on_several_gpu_processes_train_with_sync_bn(tmp_path, small_cifar, monkeypatch):
    """Rank 1 of 2 on a faked GPU: the engine asks for the conversion of the model it trains."""
    _as_rank(monkeypatch, 1)
    monkeypatch.setattr(engine, "select_device", lambda name: "gpu:1")
    asked = []
    monkeypatch.setattr(engine, "sync_batch_norm", lambda model, wanted: asked.append(wanted) or model)
    cfg = load_config(None, base=tiny_config(tmp_path, small_cifar, models=["resnet20"], data={"transforms": "cifar"},
                                             train={"epochs": 1, "max_steps_per_epoch": 1}))
    engine.run_experiment(cfg)
    assert asked == [True]
