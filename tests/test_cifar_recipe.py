"""The CIFAR ResNet recipe end to end on a tiny budget: runs of the cifar preset (32 px) next to
AlexNet runs of the notebook preset (128 px) in one experiment folder, and tools/compare.py
counting, timing and predicting each model at its own input size with its runs' preset."""
import numpy as np
import paddle
import pytest

from ba_net import build_model, count_macs
from ba_net.train import engine
from ba_net import data as D
from ba_net.report import compare as report
from ba_net.config import load_config
from ba_net.runs.folder import load_weights
from ba_net.report.throughput import ThroughputSettings
from helpers import read_history, tiny_config


@pytest.fixture(scope="module")
def mixed(module_tmp, small_cifar):
    """out/mixed: alexnet (notebook preset) and resnet20, ba_resnet20 (cifar preset, SGD), seed 0; one
    epoch of two steps each on the 200 / 64 image copy of the sample."""
    root = module_tmp("cifar_recipe")
    short = {"epochs": 1, "max_steps_per_epoch": 2}
    engine.run_experiment(load_config(None, base=tiny_config(root, small_cifar, experiment="mixed", models=["alexnet"],
                                                              data={"transforms": "notebook"}, train=short)))
    cifar = tiny_config(root, small_cifar, experiment="mixed", models=["resnet20", "ba_resnet20"],
                        data={"transforms": "cifar"}, optimizer={"name": "momentum", "lr": 0.05},
                        loss={"label_smoothing": 0.0}, train=short)
    engine.run_experiment(load_config(None, base=cifar))
    return root / "out" / "mixed", small_cifar


def test_compare_uses_each_models_input_size_and_preset(mixed, tmp_path, monkeypatch):
    experiment, data = mixed
    sizes, transforms = {}, {}
    forward_rate, eval_pass_rate = report.forward_rate, report.eval_pass_rate

    def spy_forward(model, batch_size, image_size, **kw):
        sizes[len(sizes)] = image_size
        return forward_rate(model, batch_size, image_size, **kw)

    def spy_pass(model, images, labels, batch_size, **kw):
        transforms[len(transforms)] = kw.get("transform")
        return eval_pass_rate(model, images, labels, batch_size, **kw)

    monkeypatch.setattr(report, "forward_rate", spy_forward)
    monkeypatch.setattr(report, "eval_pass_rate", spy_pass)
    settings = ThroughputSettings(batch_size=4, warmup=0, repeats=1, max_batches=1)
    summary = report.compare_experiment(experiment, tmp_path, throughput=settings)

    rows = {r["model"]: r for r in summary["rows"]}
    assert summary["baseline"] == "alexnet" and list(rows) == ["alexnet", "ba_resnet20", "resnet20"]
    expected = {"alexnet": 128, "ba_resnet20": 32, "resnet20": 32}
    assert {m: r["input_size"] for m, r in rows.items()} == expected
    assert rows["alexnet"]["macs"] == 97_012_352  # README: AlexNet per 128 px image
    for name in ("resnet20", "ba_resnet20"):
        assert rows[name]["macs"] == count_macs(build_model(name, num_classes=10), (1, 3, 32, 32))
    assert 40e6 < rows["resnet20"]["macs"] < 42e6  # He et al.'s ~41 M for ResNet-20 on 32 px
    assert list(sizes.values()) == [expected[m] for m in rows]  # the throughput forward, per model
    assert list(transforms.values()) == [D.eval_transform, D.cifar_eval_transform, D.cifar_eval_transform]
    assert summary["complexity"] == {"image_size": None, "image_sizes": expected}
    assert summary["throughput"]["image_sizes"] == expected
    md = (tmp_path / "comparison.md").read_text()
    assert "image at each model's input size (alexnet 128 px, ba_resnet20 32 px, resnet20 32 px)" in md

    # predictions: resnet20's best weights on the 32 px cifar eval transform, as the engine validated them
    images, labels = D.read_cifar10(data, "test")
    model = build_model("resnet20", num_classes=10)
    load_weights(model, experiment / "resnet20" / "seed0" / "best.pdparams")
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.stack([D.cifar_eval_transform(im) for im in images]))).numpy()
    predicted = logits.argmax(axis=1)
    want = np.zeros((10, 10), dtype=np.int64)
    np.add.at(want, (labels, predicted), 1)
    got = np.asarray(summary["predictions"]["resnet20"]["confusion"])
    assert np.abs(got - want).sum() <= 2  # Paddle Inference vs dygraph: at most one image flips
    history = read_history(experiment / "resnet20" / "seed0")
    assert abs(summary["predictions"]["resnet20"]["accuracy"] - history["best_val_acc"]) <= 1 / len(labels) + 1e-9


def test_compare_defaults_to_the_plain_resnet_as_baseline(mixed, tmp_path):
    """Without alexnet in the folder, the baseline is the first model built without attention."""
    import shutil

    experiment, _ = mixed
    only = tmp_path / "resnets"
    for name in ("resnet20", "ba_resnet20"):
        shutil.copytree(experiment / name, only / name)
    summary = report.compare_experiment(only, tmp_path / "out", throughput=None, predictions=False)
    assert summary["baseline"] == "resnet20"
    assert [r["model"] for r in summary["rows"]] == ["resnet20", "ba_resnet20"]
    assert report.default_baseline(report.collect_runs(experiment)) == "alexnet"


def test_cifar_runs_train_on_the_fast_path_with_32_px_images(mixed):
    experiment, _ = mixed
    for name in ("resnet20", "ba_resnet20"):
        log = (experiment / name / "seed0" / "train.log").read_text()
        assert "training path: fast" in log, log[-2000:]
        cfg = load_config(experiment / name / "seed0" / "config.yaml")
        assert cfg["data"]["transforms"] == "cifar" and cfg["optimizer"]["name"] == "momentum"
        assert read_history(experiment / name / "seed0")["status"] == "finished"
