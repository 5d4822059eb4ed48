"""data.val_split: a class-stratified hold-out of the training images picks the best epoch; the
test split is only reported, and compare tests the test accuracy at the held-out best epoch."""
import json

import numpy as np
import paddle
import pytest

from ba_net import data as D
from ba_net.train import engine
from ba_net.runs import folder as runs
from ba_net.report import tables
from ba_net.report import compare as R
from ba_net.config import load_config
from ba_net.data.loading import build_loader
from ba_net.train.loops import evaluate
from ba_net.errors import ConfigError, RunStateError
from ba_net.train.loss import LabelSmoothingCrossEntropy
from ba_net.models import build_model
from ba_net.runs.results import collect_runs
from helpers import read_history, tiny_config
from test_compare import write_run


def test_hold_out_is_stratified_disjoint_and_the_same_every_time():
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.repeat([0, 1, 2], [5, 3, 2]))
    kept, held = D.hold_out(labels, 5)
    # by hand: shares 5 * (5, 3, 2) / 10 = 2.5, 1.5, 1.0 -> floors 2, 1, 1; the one left over goes to the
    # largest remainder, a tie of 0.5 between classes 0 and 1 that the lower class wins
    assert np.bincount(labels[held], minlength=3).tolist() == [3, 1, 1]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(10))
    again = D.hold_out(labels, 5)
    assert np.array_equal(again[1], held) and np.array_equal(again[0], kept)
    other = [D.hold_out(labels, 5, seed=s)[1].tolist() for s in range(1, 6)]
    assert any(o != held.tolist() for o in other)  # the seed draws the images


def test_hold_out_of_the_embedded_sample_takes_the_same_number_from_every_class(cifar_subset):
    labels = D.read_cifar10(cifar_subset, "train")[1]
    _, held = D.hold_out(labels, 200)
    assert np.bincount(labels[held], minlength=10).tolist() == [20] * 10


@pytest.mark.parametrize("n", [0, 10])
def test_a_hold_out_that_leaves_nothing_to_train_on_is_refused(n):
    with pytest.raises(ConfigError, match="data.val_split"):
        D.hold_out(np.arange(10) % 2, n)


def test_config_refuses_a_non_positive_val_split(tmp_path, small_cifar):
    with pytest.raises(ConfigError, match="data.val_split"):
        load_config(None, base=tiny_config(tmp_path, small_cifar, data={"val_split": 0}))


@pytest.fixture(scope="module")
def held_out_run(module_tmp, small_cifar):
    tmp = module_tmp("valsplit")
    cfg = load_config(None, base=tiny_config(tmp, small_cifar, models=["resnet20"],
                                             data={"transforms": "cifar", "val_split": 40},
                                             train={"epochs": 3, "batch_size": 16, "max_steps_per_epoch": 4},
                                             optimizer={"name": "momentum", "lr": 0.05}))
    engine.run_experiment(cfg)
    return cfg, runs.run_folder(cfg, "resnet20", 0).root


def test_the_best_epoch_is_picked_on_the_held_out_images_and_test_is_reported(held_out_run, small_cifar):
    cfg, folder = held_out_run
    h = read_history(folder)
    assert [e["epoch"] for e in h["epochs"]] == [1, 2, 3]
    for e in h["epochs"]:
        # accuracies over 40 held-out and 64 test images: whole counts of each
        assert e["val_acc"] * 40 == pytest.approx(round(e["val_acc"] * 40), abs=1e-9)
        assert e["test_acc"] * 64 == pytest.approx(round(e["test_acc"] * 64), abs=1e-9)
        assert 0 < e["test_loss"] < 20
    vals = [e["val_acc"] for e in h["epochs"]]
    assert h["best_epoch"] == vals.index(max(vals)) + 1 and h["best_val_acc"] == max(vals)

    # best.pdparams scores the recorded best val accuracy on the held-out images, and the recorded
    # test accuracy of that epoch on the test split
    images, labels = D.read_cifar10(small_cifar, "train")
    _, held = D.hold_out(labels, 40)
    model = build_model("resnet20", num_classes=10)
    model.set_state_dict(paddle.load(str(folder / "best.pdparams")))
    preset = D.preset("cifar")
    loss_fn = LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"])
    for split, key in (((images[held], labels[held]), "val_acc"), (D.read_cifar10(small_cifar, "test"), "test_acc")):
        loader = build_loader(*split, preset.eval, 50, train=False, image_size=32)
        _, acc = evaluate(model, loader, loss_fn)
        assert acc == pytest.approx(h["epochs"][h["best_epoch"] - 1][key], abs=1e-9), key


def test_compare_tests_the_test_accuracy_at_the_best_held_out_epoch(held_out_run):
    cfg, folder = held_out_run
    h = read_history(folder)
    summary = R.summarize(collect_runs(folder.parent.parent), "resnet20")
    row = summary["rows"][0]
    assert summary["metric"] == "test_acc"
    assert row["test_acc_mean"] == h["epochs"][h["best_epoch"] - 1]["test_acc"]
    assert row["test_acc_best_mean"] == max(e["test_acc"] for e in h["epochs"])
    assert "test acc % (epoch of best val)" in tables.markdown(summary)


def _held_out(folder, test):
    """Give the synthetic run in ``folder`` a test accuracy per epoch."""
    path = folder / "history.json"
    h = json.loads(path.read_text())
    for e, t in zip(h["epochs"], test):
        e.update(test_loss=1.0, test_acc=t)
    path.write_text(json.dumps(h))


def test_statistics_use_test_at_the_best_val_epoch_not_the_best_test(tmp_path):
    root = tmp_path / "exp"
    # val picks epoch 2 in every run; the best test accuracy is at epoch 3
    base = {0: [0.50, 0.52, 0.70], 1: [0.51, 0.55, 0.71], 2: [0.49, 0.50, 0.69]}
    ba = {0: [0.53, 0.56, 0.60], 1: [0.52, 0.57, 0.62], 2: [0.50, 0.56, 0.61]}
    for model, tests in (("resnet20", base), ("ba_resnet20", ba)):
        for seed, test in tests.items():
            _held_out(write_run(root, model, seed, [0.40, 0.60, 0.55]), test)
    summary = R.summarize(collect_runs(root), "resnet20")
    ba_row = next(r for r in summary["rows"] if r["model"] == "ba_resnet20")
    # by hand: epoch-2 test accuracies 0.56, 0.57, 0.56 against 0.52, 0.55, 0.50 -> differences
    # 0.04, 0.02, 0.06, mean 0.04; the best-test figures would give -0.09
    assert ba_row["delta_vs_baseline"] == pytest.approx(0.04, abs=1e-12)
    assert ba_row["test_acc_mean"] == pytest.approx(np.mean([0.56, 0.57, 0.56]), abs=1e-12)
    assert ba_row["test_acc_best_mean"] == pytest.approx(np.mean([0.60, 0.62, 0.61]), abs=1e-12)
    assert ba_row["test"] == "paired"
    md = tables.markdown(summary)
    assert "best test acc % (epoch picked on test" in md and "held out" in md


def test_runs_selected_on_test_and_on_a_hold_out_are_not_pooled(tmp_path):
    root = tmp_path / "exp"
    for seed in (0, 1):
        write_run(root, "resnet20", seed, [0.4, 0.5])
        _held_out(write_run(root, "ba_resnet20", seed, [0.4, 0.5]), [0.45, 0.47])
    with pytest.raises(RunStateError, match="not comparable"):
        R.summarize(collect_runs(root), "resnet20")
