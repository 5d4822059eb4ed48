"""train.ema_decay: the weight average against a NumPy recursion, evaluated and saved beside the
raw weights, resumed exactly, reported by compare."""
import json

import numpy as np
import paddle
import pytest

from ba_net.train import engine
from ba_net.runs import folder as runs
from ba_net.report import tables
from ba_net.report import compare as R
from ba_net.config import load_config
from ba_net.train.ema import WeightEMA
from ba_net.errors import ConfigError, RunStateError
from ba_net.data.loading import build_loader
from ba_net.train.loops import evaluate
from ba_net.train.loss import LabelSmoothingCrossEntropy
from ba_net.models import build_model
from ba_net.runs.results import collect_runs
from helpers import read_history, small_cifar10, strip_times, tiny_config


def test_the_average_follows_the_recursion_with_its_warm_up():
    """Five steps of made-up weights: shadow_t = d_t shadow + (1 - d_t) w_t with
    d_t = min(0.9, (1 + t) / (10 + t)), t = 0, 1, ...; BatchNorm statistics are averaged alike."""
    model = paddle.nn.Sequential(paddle.nn.Linear(3, 2), paddle.nn.BatchNorm1D(2))
    ema = WeightEMA(model, 0.9)
    rng = np.random.default_rng(0)
    expected = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
    for t in range(5):
        new = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in expected.items()}
        model.set_state_dict(new)
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * new[k] for k in expected}
    assert set(ema.weights()) == set(expected) and "1._mean" in expected
    for k, v in ema.weights().items():
        np.testing.assert_allclose(v.numpy(), expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
    raw = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with ema.applied() as averaged:
        np.testing.assert_allclose(averaged.state_dict()["0.weight"].numpy(), expected["0.weight"], rtol=1e-5)
    for k, v in model.state_dict().items():  # the raw weights are back, exactly
        np.testing.assert_array_equal(v.numpy(), raw[k])


def test_ema_decay_must_be_below_one(tmp_path):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        load_config(None, ("train.ema_decay=1.0",))


@pytest.fixture(scope="module")
def data(module_tmp, cifar_subset):
    return small_cifar10(cifar_subset, module_tmp("ema") / "small.tar.gz", n_train=100, n_test=32)


def _cfg(root, data):
    return load_config(None, base=tiny_config(root, data, train={"ema_decay": 0.8, "epochs": 2}))


@pytest.fixture(scope="module")
def ema_run(module_tmp, data):
    cfg = _cfg(module_tmp("straight"), data)
    engine.run_experiment(cfg)
    return cfg, runs.run_folder(cfg, "resnet20", 0).root


def test_the_average_is_evaluated_and_saved_beside_the_weights(ema_run, data):
    from ba_net import data as D

    cfg, folder = ema_run
    h = read_history(folder)
    assert all({"ema_val_loss", "ema_val_acc"} <= set(e) for e in h["epochs"])
    emas = [e["ema_val_acc"] for e in h["epochs"]]
    assert h["best_ema_val_acc"] == max(emas) and h["best_ema_epoch"] == emas.index(max(emas)) + 1
    assert (folder / "best_ema.pdparams").is_file() and not (folder / "state.json").exists()
    # final_ema.pdparams scores the last epoch's recorded EMA loss on the validation split
    model = build_model("resnet20", num_classes=10)
    runs.load_weights(model, folder / "final_ema.pdparams")
    loader = build_loader(*D.read_cifar10(data, "test"), D.preset("cifar").eval, 8, train=False)
    loss, acc = evaluate(model, loader, LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"]))
    assert loss == pytest.approx(h["epochs"][-1]["ema_val_loss"], rel=1e-5)
    assert acc == pytest.approx(h["epochs"][-1]["ema_val_acc"], abs=1e-9)
    raw = paddle.load(str(folder / "final.pdparams"))
    average = paddle.load(str(folder / "final_ema.pdparams"))
    assert any(not np.allclose(raw[k].numpy(), average[k].numpy()) for k in raw)  # an average, not a copy


def test_a_resumed_run_continues_the_same_average(ema_run, data, tmp_path, monkeypatch):
    save = runs.save_resume_state

    def save_then_die(folder, epoch, *args):
        save(folder, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    cfg = _cfg(tmp_path, data)
    monkeypatch.setattr(runs, "save_resume_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        engine.run_experiment(cfg)
    monkeypatch.setattr(runs, "save_resume_state", save)
    folder = runs.run_folder(cfg, "resnet20", 0).root
    assert json.loads((folder / "state.json").read_text())["ema"].endswith(".ema.pdparams")
    engine.run_experiment(cfg, resume=True)
    assert strip_times(read_history(folder)) == strip_times(read_history(ema_run[1]))
    for name in ("final_ema.pdparams", "best_ema.pdparams"):
        a, b = paddle.load(str(folder / name)), paddle.load(str(ema_run[1] / name))
        for k in a:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=f"{name} {k}")


def test_compare_reports_the_average(ema_run):
    _, folder = ema_run
    h = read_history(folder)
    summary = R.summarize(collect_runs(folder.parent.parent), "resnet20")
    emas = [e["ema_val_acc"] for e in h["epochs"]]
    assert summary["rows"][0]["ema_acc_mean"] == max(emas)  # no hold-out: the best EMA val accuracy
    md = tables.markdown(summary)
    assert "EMA weights: best val acc %" in md and "train.ema_decay" in md


@pytest.mark.parametrize("extra, message", [
    ({"ema": "/elsewhere/evil.ema.pdparams"}, "ema '/elsewhere/evil.ema.pdparams' is not a file in"),
    ({"ema": "../../evil.ema.pdparams"}, "ema '../../evil.ema.pdparams' is not a file in"),
    ({"ema": 7}, "ema 7 is not a file in"),
    ({"scaler": {"incr_count": 3}}, "loss-scaler state has no numeric scale")])
def test_resume_state_naming_a_weight_average_outside_the_run_or_a_bad_scaler_is_refused(tmp_path, extra, message):
    """state.json's weight average is a pickle like the checkpoint: only a file in checkpoint/ is
    ever loaded; a scaler without a scale is one line, not a traceback."""
    folder = runs.RunFolder(tmp_path / "run")
    state = {"epoch": 1, "params": "checkpoint/epoch0001.pdparams", "opt": "checkpoint/epoch0001.pdopt",
             "history": {"epochs": [{}], "iters": []}, **extra}
    runs.check_state(folder, {k: v for k, v in state.items() if k not in extra}, 2)  # valid without it
    with pytest.raises(RunStateError, match=message):
        runs.check_state(folder, state, 2)
