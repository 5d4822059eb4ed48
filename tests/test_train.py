"""End-to-end training on the CIFAR-10 subset: files, schema, determinism, resume, errors."""
import json
import multiprocessing
from pathlib import Path

import numpy as np
import paddle
import pytest

from ba_net.train import engine
from ba_net.data import loading
from ba_net.train import loops
from ba_net.runs import folder as runs
from ba_net.config import load_config
from ba_net.data.loading import SeededBatchSampler
from ba_net.errors import RunStateError
from helpers import forked_tool, read_history, run_tool, strip_times, tiny_config, unreachable_url

EPOCH_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_acc5", "lr", "time_s"}


def _run(tmp_path, data_file, resume=False, force=False, **sections):
    cfg = load_config(None, base=tiny_config(tmp_path, data_file, **sections))
    return cfg, engine.run_experiment(cfg, resume=resume, force=force)


def _folder(cfg, model="resnet20", seed=0):
    return runs.run_folder(cfg, model, seed).root


def _weights(folder, tag="final"):
    return {k: v.numpy() for k, v in paddle.load(str(Path(folder) / f"{tag}.pdparams")).items()}


@pytest.fixture(scope="module")
def finished_run(module_tmp, small_cifar):
    tmp = module_tmp("run")
    cfg, summaries = _run(tmp, small_cifar)
    return cfg, summaries, _folder(cfg)


def test_run_writes_every_file_with_sane_values(finished_run):
    cfg, summaries, folder = finished_run
    assert summaries[0]["status"] == "finished"
    for name in ("config.yaml", "history.json", "train.log", "best.pdparams", "best.pdopt",
                 "final.pdparams", "final.pdopt"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert not (folder / "state.json").exists()  # the resume checkpoint is dropped once final.* exist
    assert len(list((folder / "vdl").glob("vdlrecords*"))) == 1  # one log file: VisualDL shows one run
    saved = load_config(folder / "config.yaml")
    assert saved["train"] == cfg["train"] and saved["models"] == ["resnet20"] and saved["seeds"] == [0]

    h = read_history(folder)
    assert {"model", "seed", "status", "best_val_acc", "best_epoch", "epochs", "iters"} <= set(h)
    assert (h["model"], h["seed"], h["status"]) == ("resnet20", 0, "finished")
    assert [e["epoch"] for e in h["epochs"]] == [1, 2]
    for e in h["epochs"]:
        assert set(e) == EPOCH_KEYS
        assert 0 <= e["train_acc"] <= 1 and 0 <= e["val_acc"] <= 1
        assert 0 < e["train_loss"] < 20 and 0 < e["val_loss"] < 20 and e["time_s"] > 0
    assert h["best_val_acc"] == max(e["val_acc"] for e in h["epochs"])
    assert h["epochs"][h["best_epoch"] - 1]["val_acc"] == h["best_val_acc"]
    # 3 iterations per epoch, loss recorded every 2: iterations 2, 4, 6
    assert [i["iter"] for i in h["iters"]] == [2, 4, 6]
    assert all(set(i) == {"iter", "loss", "lr"} and np.isfinite(i["loss"]) for i in h["iters"])
    # the per-iteration cosine: T = 3 steps x 2 epochs, lr at iteration 2 is lr(t=1)
    assert h["iters"][0]["lr"] == pytest.approx(2e-4 * (1 + np.cos(np.pi * 1 / 6)) / 2)
    assert h["epochs"][0]["lr"] == pytest.approx(2e-4)
    log = (folder / "train.log").read_text()
    assert "epoch 2/2" in log and "val loss" in log


def test_final_weights_reproduce_the_logged_val_accuracy(finished_run, small_cifar):
    cfg, _, folder = finished_run
    from ba_net import build_model
    from ba_net import data as D
    from ba_net.train.loss import LabelSmoothingCrossEntropy

    model = build_model("resnet20", num_classes=10)
    model.set_state_dict(paddle.load(str(folder / "final.pdparams")))
    loader = loading.build_loader(*D.read_cifar10(small_cifar, "test"), D.preset("cifar").eval, 64, train=False)
    loss, acc = loops.evaluate(model, loader, LabelSmoothingCrossEntropy(0.1))
    last = read_history(folder)["epochs"][-1]
    assert acc == pytest.approx(last["val_acc"]) and loss == pytest.approx(last["val_loss"], rel=1e-5)


def test_finished_run_is_skipped_and_force_reruns(finished_run, small_cifar):
    cfg, _, folder = finished_run
    before = (folder / "history.json").read_text()
    mtime = (folder / "final.pdparams").stat().st_mtime_ns
    assert engine.run_experiment(cfg)[0]["status"] == "finished"
    assert (folder / "history.json").read_text() == before
    assert (folder / "final.pdparams").stat().st_mtime_ns == mtime
    changed = json.loads(json.dumps(cfg))
    changed["train"]["epochs"] = 3
    with pytest.raises(RunStateError, match=r"different config \(train.epochs: 2 -> 3\)"):
        engine.run_experiment(changed)
    assert (folder / "history.json").read_text() == before
    with pytest.raises(RunStateError, match="no run .* has a saved state"):
        engine.run_experiment(cfg, resume=True)


def test_same_seed_same_history_different_seed_different_order(tmp_path, small_cifar, finished_run):
    """Run again with loader workers (decoding in 2 processes): the same history and weights, and
    no worker process left once the run is done."""
    before = multiprocessing.active_children()
    cfg, summaries = _run(tmp_path, small_cifar, output_dir=str(tmp_path / "again"), data={"num_workers": 2})
    assert multiprocessing.active_children() == before
    h1, h2 = read_history(finished_run[2]), read_history(_folder(cfg))
    assert strip_times(h1) == strip_times(h2)
    for k, v in _weights(finished_run[2]).items():
        np.testing.assert_array_equal(v, _weights(_folder(cfg))[k])
    a = [b for b in SeededBatchSampler(100, 10, seed=0)]
    b = [b for b in SeededBatchSampler(100, 10, seed=1)]
    assert a != b and sorted(i for batch in a for i, _, _ in batch) == sorted(i for batch in b for i, _, _ in batch)
    s = SeededBatchSampler(100, 10, seed=0)
    s.set_epoch(1)
    assert [x for x in s] != a  # a new order every epoch


def test_sampler_shards_ranks_without_overlap():
    shards = [SeededBatchSampler(103, 8, seed=3, rank=r, world=2) for r in range(2)]
    seen = [[i for batch in s for i, _, _ in batch] for s in shards]
    assert len(seen[0]) == len(seen[1]) == 48 and not set(seen[0]) & set(seen[1])
    assert len(shards[0]) == 6
    ev = [SeededBatchSampler(103, 8, shuffle=False, drop_last=False, rank=r, world=2) for r in range(2)]
    assert sorted(i for s in ev for batch in s for i, _, _ in batch) == list(range(103))


def test_resumed_run_equals_uninterrupted(tmp_path, small_cifar, finished_run, monkeypatch):
    save = runs.save_resume_state

    def save_then_die(folder, epoch, *args):
        save(folder, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt  # stopped after the first epoch's checkpoint

    monkeypatch.setattr(runs, "save_resume_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, small_cifar)
    monkeypatch.setattr(runs, "save_resume_state", save)
    cfg = load_config(None, base=tiny_config(tmp_path, small_cifar))
    folder = _folder(cfg)
    assert read_history(folder)["status"] == "interrupted" and (folder / "state.json").exists()
    with pytest.raises(RunStateError, match="stopped after epoch 1 of 2: rerun with --resume"):
        engine.run_experiment(cfg)
    engine.run_experiment(cfg, resume=True)
    assert strip_times(read_history(folder)) == strip_times(read_history(finished_run[2]))
    ref = _weights(finished_run[2])
    for k, v in _weights(folder).items():
        np.testing.assert_array_equal(v, ref[k], err_msg=k)
    assert "resuming after epoch 1" in (folder / "train.log").read_text()


def test_mixup_trains_with_soft_targets(tmp_path, small_cifar, monkeypatch):
    """With data.mixup_alpha every training step gets mixup's images and its soft targets (rows
    of two classes weighted lam, 1 - lam), whichever path trains."""
    mixed, stepped = [], []
    real_mixup, real_step = loading.mixup, loops._step

    def mixup(x, y, alpha, rng, *num_classes):
        out = real_mixup(x, y, alpha, rng, *num_classes)
        mixed.append((alpha, x.numpy(), out[0].numpy(), out[1].numpy()))
        return out

    def step(model, images, target, *args):
        stepped.append((images.numpy(), target.numpy()))
        return real_step(model, images, target, *args)

    monkeypatch.setattr(loading, "mixup", mixup)
    monkeypatch.setattr(loops, "_step", step)
    cfg, summaries = _run(tmp_path, small_cifar, data={"mixup_alpha": 0.4},
                          train={"epochs": 1})
    h = read_history(_folder(cfg))
    assert h["status"] == "finished" and 0 <= h["epochs"][0]["train_acc"] <= 1
    assert len(mixed) == len(stepped) == 3  # max_steps_per_epoch
    for (alpha, x, x_mixed, soft), (images, target) in zip(mixed, stepped):
        assert alpha == 0.4 and soft.shape == (8, 10) and not np.allclose(x_mixed, x)
        np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)
        assert (soft.max(1) < 1.0).any()  # soft: some rows weigh two classes (the rest drew their own class)
        np.testing.assert_array_equal(images, x_mixed)
        np.testing.assert_array_equal(target, soft)  # the soft targets reach the step, not the labels


def test_offline_without_data_is_a_one_line_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    r = run_tool(["tools/train.py", "-c", "experiments/quick.yaml", "-o", "data.data_file=null",
                  "-o", f"data.download_url={unreachable_url()}", "-o", f"output_dir={out}"],
                 env_extra={"HOME": str(home)}, timeout=300)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "CIFAR-10 not found" in errors[0] and "Connection refused" in errors[0]
    for fix in ("data.data_file", "BA_NET_CIFAR10", "cifar-10-python.tar.gz"):
        assert fix in errors[0]


def test_bad_config_is_a_one_line_error(tmp_path):
    r = forked_tool(["tools/train.py", "-c", "experiments/quick.yaml", "-o", "train.epoch=3",
                     "-o", f"output_dir={tmp_path}"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown key 'train.epoch'" in r.stderr
    assert not any(tmp_path.iterdir())
