"""The paper's table in compare (issue 24 item 4): top-5 of the same epoch as the compared top-1
(ba_net.runs.results.Run.acc5) beside it for data sets of more than 10 classes, 'n/a' for
histories from before top-5; the published ImageNet figures with their source, shown only for a
1000-class image folder; reproducibility ignoring where the data lives (data.data_dir) but not
what it is (the recorded classes); the parity batch of an image-folder export from its val/.
The acceptance run: ba_resnet50 and ba_mobilenetv3_large, one epoch on a 12-class image folder
written from the embedded CIFAR-10 sample, through tools/train.py and tools/compare.py."""
import csv
import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from ba_net.report import compare as R
from ba_net.report import published as P
from ba_net.report import tables
from ba_net.report.repro import config_differences
from ba_net.runs.results import collect_runs, read_run

from helpers import REPO, forked_tool

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# --------------------------------------------------------------------------- synthetic runs

def write_run(root, model, seed, epochs, classes=None, dataset="cifar10", data=None):
    """A finished run whose history has ``epochs`` (dicts of accuracies; losses and times added)."""
    folder = root / model / f"seed{seed}"
    folder.mkdir(parents=True)
    records = [{"epoch": i + 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "lr": 0.1, "time_s": 1.0, **e}
               for i, e in enumerate(epochs)]
    history = {"experiment": root.name, "model": model, "seed": seed, "status": "finished", "reason": None,
               "best_val_acc": max(e["val_acc"] for e in epochs), "epochs_planned": len(epochs), "world_size": 1,
               "device": "cpu", "epochs": records, "iters": []}
    if classes is not None:
        history["classes"] = list(classes)
    (folder / "history.json").write_text(json.dumps(history))
    config = {"experiment": root.name, "models": [model], "seeds": [seed], "model_kwargs": {},
              "data": {"dataset": dataset, "num_workers": 0, **(data or {})}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def names(n):
    return [f"c{i:04d}" for i in range(n)]


def test_acc5_comes_from_the_epoch_of_the_compared_top1(tmp_path):
    root = tmp_path / "exp"
    # best val 0.6 at epochs 2 and 3: the first of equals (best.pdparams) is epoch 2; its top-5, not the best top-5
    run = read_run(write_run(root, "resnet50", 0, [{"val_acc": 0.5, "val_acc5": 0.95}, {"val_acc": 0.6, "val_acc5": 0.8},
                                                   {"val_acc": 0.6, "val_acc5": 0.9}]), "resnet50", 0)
    assert (run.best_val_acc, run.acc5, run.best_epoch["epoch"]) == (0.6, 0.8, 2)
    held = read_run(write_run(root, "held", 0, [  # a hold-out: test top-5 at the best held-out epoch
        {"val_acc": 0.7, "val_acc5": 0.9, "test_acc": 0.55, "test_acc5": 0.85},
        {"val_acc": 0.6, "val_acc5": 0.99, "test_acc": 0.65, "test_acc5": 0.97}]), "held", 0)
    assert (held.test_acc, held.acc5) == (0.55, 0.85)
    old = read_run(write_run(root, "old", 0, [{"val_acc": 0.5}]), "old", 0)  # before top-5 was recorded
    assert old.acc5 is None and old.describe()["acc5"] is None and run.describe()["acc5"] == 0.8


def _top5_experiment(tmp_path, n_classes, old_history=False):
    root = tmp_path / f"exp{n_classes}"
    for seed, (top1, top5) in enumerate([(0.40, 0.70), (0.44, 0.76)]):
        for model, shift in (("resnet50", 0.0), ("ba_resnet50", 0.02)):
            e = {"val_acc": top1 + shift} if old_history and model == "resnet50" else \
                {"val_acc": top1 + shift, "val_acc5": top5 + shift}
            write_run(root, model, seed, [{"val_acc": 0.1, "val_acc5": 0.99}, e], classes=names(n_classes),
                      dataset="imagefolder", data={"data_dir": "/data/somewhere"})
    return collect_runs(root)


def _csv_rows(summary):
    return {r["model"]: r for r in csv.DictReader(io.StringIO(tables._csv(summary)))}


def test_top5_column_for_more_than_ten_classes_only(tmp_path):
    summary = R.summarize(_top5_experiment(tmp_path, 12), "resnet50")
    assert summary["top5"] and summary["num_classes"] == 12 and summary["dataset"] == "imagefolder"
    ba = next(r for r in summary["rows"] if r["model"] == "ba_resnet50")
    assert ba["acc5_mean"] == pytest.approx(0.75) and ba["acc5_std"] == pytest.approx(np.std([0.72, 0.78], ddof=1))
    table = tables.comparison_table(summary)
    head, _, base_row, ba_row = table.splitlines()
    cells = [c.strip() for c in head.split("|")[1:-1]]
    assert cells[2:4] == ["best val acc %", tables.TOP5_HEADER]  # top-5 right beside the compared top-1
    assert [c.strip() for c in ba_row.split("|")[1:-1]][2:4] == ["44.00 ± 2.83", "75.00 ± 4.24"]
    assert float(_csv_rows(summary)["ba_resnet50"]["acc5_mean"]) == pytest.approx(0.75)
    md = tables.markdown(summary)
    assert "| top-5 % |" in md and "| 72.00 |" in md and "| n/a |" not in md
    assert "top-5 accuracy (the label among the five highest logits) of the same epoch" in md
    # ten classes (CIFAR-10): no column, no CSV field, no note
    ten = R.summarize(_top5_experiment(tmp_path, 10), "resnet50")
    assert not ten["top5"] and tables.TOP5_HEADER not in tables.markdown(ten) and "top-5" not in tables.markdown(ten)
    assert "acc5_mean" not in next(iter(_csv_rows(ten).values()))


def test_histories_without_top5_still_compare(tmp_path):
    summary = R.summarize(_top5_experiment(tmp_path, 12, old_history=True), "resnet50")
    base = next(r for r in summary["rows"] if r["model"] == "resnet50")
    assert (base["acc5_mean"], base["acc5_std"]) == (None, None) and base["val_acc_best_mean"] == pytest.approx(0.42)
    row = tables.comparison_table(summary).splitlines()[2]
    assert [c.strip() for c in row.split("|")[1:-1]][2:4] == ["42.00 ± 2.83", "n/a"]
    assert _csv_rows(summary)["resnet50"]["acc5_mean"] == ""
    assert "a run's history was written before top-5 was recorded" in tables.markdown(summary)


def test_published_figures_only_beside_an_imagenet_like_folder(tmp_path):
    runs = _top5_experiment(tmp_path, 1000)
    summary = R.summarize(runs, "resnet50")
    pub = summary["published"]
    assert pub["shown"] and pub["models"] == {"resnet50": {"top1": 76.13, "source": P.TORCHVISION},
                                              "ba_resnet50": {"top1": 78.854, "source": P.BA_NET}}
    head, _, base_row, ba_row = tables.comparison_table(summary).splitlines()
    assert P.HEADER in head and "reference, not this run" in head
    assert "| 78.854 (official BA-Net results/) |" in ba_row and "| 76.130 (torchvision docs (weights V1)) |" in base_row
    md = tables.markdown(summary)
    assert "github.com/zhaoy376/Bridge-Attention" in md and "IMAGENET1K_V1" in md
    assert _csv_rows(summary)["ba_resnet50"]["published_top1_pct"] == "78.854"
    # a 12-class folder and CIFAR-10: no column, one note saying why
    for n in (12, 10):
        other = R.summarize(_top5_experiment(tmp_path / str(n), n), "resnet50")
        assert not other["published"]["shown"] and P.HEADER not in tables.comparison_table(other)
        assert "not a 1000-class image folder" in tables.markdown(other)
        assert "published_top1_pct" not in next(iter(_csv_rows(other).values()))
    cifar = P.published_column(["alexnet", "ba_alexnet"], "cifar10", 10)
    assert cifar == {"shown": False, "models": {}, "sources": {}, "note": None}  # nothing published: nothing said


def test_published_figures_are_the_stated_ones():
    """The issue's figures (the official results/ and torchvision's documented V1 accuracies), for
    models ba-net builds only."""
    from ba_net.models import list_models

    assert set(P.PUBLISHED) <= set(list_models())
    assert {m: v for m, (v, s) in P.PUBLISHED.items() if s == P.BA_NET} == {
        "ba_resnet50": 78.854, "ba_resnet101": 80.026, "ba_resnext50_32x4d": 79.578, "ba_mobilenetv3_large": 73.506,
        "ba_mobilenetv3_small": 65.850, "ba_efficientnet_b0": 71.704}
    assert {m: v for m, (v, s) in P.PUBLISHED.items() if s == P.TORCHVISION} == {
        "resnet50": 76.13, "resnet101": 77.374, "resnet152": 78.312, "resnext50_32x4d": 77.618,
        "mobilenetv3_large": 74.042, "mobilenetv3_small": 67.668, "efficientnet_b0": 77.692}


def test_a_moved_data_folder_is_the_same_data_but_other_classes_are_not(tmp_path):
    root = tmp_path / "exp"
    for seed, where in ((0, "/disk1/imagenet"), (1, "/disk2/imagenet")):  # and loaded by other worker counts
        write_run(root, "resnet50", seed, [{"val_acc": 0.5}], classes=names(12), dataset="imagefolder",
                  data={"data_dir": where, "eval_num_workers": seed})
    runs = collect_runs(root)
    assert config_differences(runs) == []
    rep = R.summarize(runs, "resnet50")["reproducibility"][0]
    assert rep["configs_identical"] and rep["warning"] is None
    other = json.loads((root / "resnet50" / "seed1" / "history.json").read_text())
    other["classes"] = names(11)
    (root / "resnet50" / "seed1" / "history.json").write_text(json.dumps(other))
    assert config_differences(collect_runs(root)) == [
        "recorded classes: 12 classes c0000, c0001, c0002, ... (seed 0), 11 classes c0000, c0001, c0002, ... (seed 1)"]


# ------------------------------------------------------------------- a 12-class image folder

CLASSES_12 = [*CIFAR10[:2], "bird_a", "bird_b", *CIFAR10[3:8], "ship_a", "ship_b", "truck"]  # sorted below
TRAIN, VAL = 2, 1


@pytest.fixture(scope="module")
def folder12(tmp_path_factory):
    """train/ and val/ of 12 classes (bird and ship split in two), 2 train and 1 val image each, 64
    px JPEG from the embedded CIFAR-10 sample."""
    from ba_net.data import read_cifar10

    images, labels = read_cifar10(REPO / "data" / "cifar-10-sample.tar.gz", "train")
    root = tmp_path_factory.mktemp("folder12") / "images"
    for name in CLASSES_12:
        label = CIFAR10.index(name.split("_")[0])
        offset = 3 if name.endswith("_b") else 0
        for i, index in enumerate(np.flatnonzero(labels == label)[offset:offset + TRAIN + VAL]):
            path = root / ("train" if i < TRAIN else "val") / name / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            rgb = cv2.resize(images[index], (64, 64), interpolation=cv2.INTER_CUBIC)
            assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def trained12(folder12):
    """tools/train.py: ba_resnet50 and ba_mobilenetv3_large, one epoch of one step (batch 4) on
    the 12-class folder, dygraph."""
    out = folder12.parent / "out"
    config = {"experiment": "paper12", "models": ["ba_mobilenetv3_large", "ba_resnet50"], "seeds": [0],
              "output_dir": str(out),
              "data": {"dataset": "imagefolder", "data_dir": str(folder12), "data_file": None, "transforms": "imagenet",
                       "num_workers": 0},
              "train": {"epochs": 1, "batch_size": 4, "max_steps_per_epoch": 1, "log_every": 1, "path": "dygraph"},
              "optimizer": {"name": "momentum", "lr": 0.01}}
    cfg = folder12.parent / "paper12.yaml"
    cfg.write_text(yaml.safe_dump(config))
    r = forked_tool(["tools/train.py", "-c", str(cfg)], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "paper12"


def test_one_epoch_of_the_paper_backbones_through_train_and_compare(trained12, tmp_path):
    """Issue 24's acceptance run: compare writes top-1 and top-5 (the same epoch) for both models."""
    out = tmp_path / "cmp"
    r = forked_tool(["tools/compare.py", str(trained12), "--out", str(out), "--no-throughput"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "comparison.json").read_text())
    assert (summary["dataset"], summary["num_classes"], summary["top5"]) == ("imagefolder", 12, True)
    assert not summary["published"]["shown"]  # 12 classes: no published ImageNet figure beside a toy run
    csv_rows = {row["model"]: row for row in csv.DictReader(io.StringIO((out / "comparison.csv").read_text()))}
    md = (out / "comparison.md").read_text()
    assert tables.TOP5_HEADER in md and tables.TOP5_HEADER in r.stdout
    assert "not a 1000-class image folder" in md
    for model in ("ba_resnet50", "ba_mobilenetv3_large"):
        history = json.loads((trained12 / model / "seed0" / "history.json").read_text())
        [epoch] = history["epochs"]
        assert history["classes"] == sorted(CLASSES_12)
        assert 0.0 <= epoch["val_acc"] <= epoch["val_acc5"] <= 1.0
        row = next(x for x in summary["rows"] if x["model"] == model)
        assert (row["val_acc_best_mean"], row["acc5_mean"]) == (epoch["val_acc"], epoch["val_acc5"])
        assert float(csv_rows[model]["acc5_mean"]) == pytest.approx(epoch["val_acc5"])
        assert f"| {model} | 1 of 1 | {100 * epoch['val_acc']:.2f} | {100 * epoch['val_acc5']:.2f} |" in md
        # the saved weights give the history's top-1 back on val/ (12 images)
        assert summary["predictions"][model]["accuracy"] == pytest.approx(epoch["val_acc"], abs=1e-9)


def test_an_image_folder_export_checks_parity_on_its_val_folder(trained12, folder12, tmp_path):
    from ba_net.deploy.export import export_run, verify_export
    from ba_net.deploy.parity import split_images
    from ba_net.errors import DataError

    run_dir = trained12 / "ba_mobilenetv3_large" / "seed0"
    images, labels, path = split_images(None, str(folder12), "imagefolder")
    assert path == folder12 and len(images) == 12 * VAL and labels.tolist() == list(range(12))
    assert images.path(0).startswith(str(folder12 / "val"))
    spec = export_run(run_dir, out=tmp_path / "export", parity_images=4)
    assert spec["data_file"] == str(folder12) and spec["parity"]["data_file"] == str(folder12)
    assert spec["parity"]["passed"] and spec["parity"]["images"] == 4
    moved = tmp_path / "moved"  # a moved data folder: --data-file names it
    shutil.copytree(folder12, moved)
    assert verify_export(tmp_path / "export", data_file=str(moved))["data_file"] == str(moved)
    with pytest.raises(DataError, match="is not a folder"):
        split_images(str(moved / "val" / "truck" / "2.jpg"), None, "imagefolder")
    with pytest.raises(DataError, match="records no image folder"):
        split_images(None, None, "imagefolder")
