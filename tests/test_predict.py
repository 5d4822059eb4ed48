"""tools/predict.py: top-k of the test split, of image files and of folders through an export
and through a run's weights, against the dygraph model's argmax computed here; its transform is
the preset's eval transform on 32 px images bit for bit, and one resize straight to the model's
side on any other image; probabilities, the CSV, a folder with a file that is no image, an earlier
export refused with the command that exports again, and one-line errors that write nothing."""
import csv
import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest

from ba_net import data as D
from ba_net.train import engine
from ba_net.config import load_config
from ba_net.deploy.export import export_run
from ba_net.models import build_model
from ba_net.deploy.predict import csv_columns, file_items, load_classifier, predict_items, split_items
from helpers import REPO, forked_tool, tiny_config

TOOL = REPO / "tools" / "predict.py"
N = 24  # test images classified


def _tool_main():
    spec = importlib.util.spec_from_file_location("predict_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def runs(module_tmp, small_cifar):
    """{preset: (run folder, export folder)}: AlexNet on the notebook preset (128 px) and
    ResNet-20 on the cifar preset (32 px), each 1 epoch of 2 steps, exported (best weights; the
    export's parity check on 8 images: tests/test_export.py checks the parity itself)."""
    tmp = module_tmp("predict")
    out = {}
    for model, preset in (("alexnet", "notebook"), ("resnet20", "cifar")):
        cfg = load_config(None, base=tiny_config(tmp, small_cifar, experiment=f"tiny_{preset}", models=[model],
                                                 data={"transforms": preset},
                                                 train={"epochs": 1, "max_steps_per_epoch": 2, "path": "dygraph"}))
        engine.run_experiment(cfg)
        run = Path(cfg["output_dir"]) / f"tiny_{preset}" / model / "seed0"
        out[preset] = (run, Path(export_run(run, parity_images=8)["export_dir"]))
    return out


def _dygraph_argmax(run: Path, preset: str, images) -> np.ndarray:
    """Computed here, not by ba_net.report.predictions: the run's best weights in a fresh model, the preset's
    eval transform, argmax of the logits."""
    model = build_model(run.parent.name, num_classes=10)
    model.set_state_dict(paddle.load(str(run / "best.pdparams")))
    model.eval()
    x = np.stack([D.preset(preset).eval(img) for img in images]).astype("float32")
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy().argmax(1)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("preset", ["notebook", "cifar"])
def test_export_and_run_weights_give_the_dygraph_top1(preset, runs, small_cifar, tmp_path):
    run, export = runs[preset]
    images, labels = D.read_cifar10(small_cifar, "test")  # the runs' test split (64 images)
    expected = _dygraph_argmax(run, preset, images[:N])
    for model in (export, run):
        csv_path = tmp_path / model.name / "predictions.csv"
        proc = forked_tool([str(TOOL), "-m", str(model), "--test-split", "--limit", str(N), "--batch-size", "10",
                         "--out", str(csv_path.parent)])
        assert proc.returncode == 0, proc.stderr
        rows = _read_csv(csv_path)
        assert [r["image"] for r in rows] == [f"test[{i:02d}]" for i in range(N)]
        assert [int(r["top1_index"]) for r in rows] == expected.tolist()
        assert [r["true_class"] for r in rows] == [D.CIFAR10_CLASSES[c] for c in labels[:N]]
        assert "img/s end to end" in proc.stdout and f"{N} images" in proc.stdout


def test_probabilities_sum_to_one_and_topk_is_sorted(runs, cifar_subset):
    """The export's probabilities come from its graph (float32 softmax), the run's from its logits."""
    run, export = runs["cifar"]
    for model, atol in ((export, 1e-6), (run, 1e-9)):
        classifier = load_classifier(model)
        items, _ = split_items(str(cifar_subset), None, 30)
        result = predict_items(classifier, items, batch_size=7, k=4)
        probs = result["probabilities"]
        assert probs.shape == (30, 10) and np.all(probs >= 0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=atol)
        for row, p in zip(result["rows"], probs):
            assert len(row["top"]) == 4
            assert [c for c, _, _ in row["top"]] == np.argsort(-p, kind="stable")[:4].tolist()
            assert [q for _, _, q in row["top"]] == sorted((q for _, _, q in row["top"]), reverse=True)
        assert result["img_s"] > 0 and result["forward_img_s"] >= result["img_s"]


def test_folder_with_a_non_image_warns_once_and_predicts_the_rest(runs, cifar_subset, tmp_path):
    run, export = runs["notebook"]
    images, _ = D.read_cifar10(cifar_subset, "test")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"img{i}.png"), cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR))  # PNG: lossless
    (folder / "notes.txt").write_text("not an image")
    csv_path = tmp_path / "out" / "predictions.csv"
    proc = forked_tool([str(TOOL), "-m", str(export), str(folder), "-k", "3", "--out", str(csv_path.parent)])
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "notes.txt" in line]
    assert len(warnings) == 1 and "skipped" in warnings[0]
    rows = _read_csv(csv_path)
    assert [Path(r["image"]).name for r in rows] == ["img0.png", "img1.png", "img2.png"]
    assert [int(r["top1_index"]) for r in rows] == _dygraph_argmax(run, "notebook", images[:3]).tolist()
    assert list(rows[0]) == csv_columns(3) == [
        "image", "true_class", "top1_index", "top1_class", "top1_prob", "top2_index", "top2_class", "top2_prob",
        "top3_index", "top3_class", "top3_prob"]
    assert all(r["true_class"] == "" and r["top1_class"] == D.CIFAR10_CLASSES[int(r["top1_index"])] for r in rows)
    assert "1 unreadable file(s) skipped" in proc.stdout and "img0.png" in proc.stdout  # the table


@pytest.mark.parametrize("preset", ["notebook", "cifar"])
def test_predicts_transform_is_the_presets_eval_transform_on_32px_images(preset, runs, cifar_subset):
    """Bit for bit, for an export and for a run folder: what compare's figures apply is what
    tools/predict.py (and PaddleX, tests/test_paddlex.py) apply."""
    run, export = runs[preset]
    images, _ = D.read_cifar10(cifar_subset, "test")
    for model in (export, run):
        transform = load_classifier(model).transform
        for img in images[:16]:
            np.testing.assert_array_equal(transform(img), D.preset(preset).eval(img))


@pytest.mark.parametrize("preset,flag", [("notebook", cv2.INTER_LINEAR), ("cifar", cv2.INTER_AREA)])
def test_a_larger_image_file_is_resized_once_to_the_models_side(preset, flag, runs, cifar_subset, tmp_path):
    """A 96 x 64 photo is resized straight to the model's side (128 px bilinear for notebook, 32
    px INTER_AREA for cifar), stretched, then normalized as the preset; the export and the run
    folder give the dygraph model's probabilities of that image."""
    run, export = runs[preset]
    images, _ = D.read_cifar10(cifar_subset, "test")
    big = cv2.resize(images[5], (96, 64), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    p = D.preset(preset)
    once = cv2.resize(big, (p.image_size, p.image_size), interpolation=flag)
    model = build_model(run.parent.name, num_classes=10)
    model.set_state_dict(paddle.load(str(run / "best.pdparams")))
    model.eval()
    with paddle.no_grad():
        logits = model(paddle.to_tensor(p.eval(once)[None])).numpy()[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for source, atol in ((run, 1e-6), (export, 1e-5)):
        result = predict_items(load_classifier(source), file_items([path]), k=1)
        np.testing.assert_allclose(result["probabilities"][0], expected, atol=atol)


def test_an_earlier_export_is_refused_with_the_command_that_exports_again(runs, tmp_path, capsys):
    """model.json + model.pdiparams with an export.json of format 'ba-net export 1': one line."""
    run, export = runs["cifar"]
    old = tmp_path / "old"
    old.mkdir()
    spec = json.loads((export / "export.json").read_text())
    spec["format"] = "ba-net export 1"
    (old / "export.json").write_text(json.dumps(spec))
    shutil.copy(export / "inference.json", old / "model.json")
    shutil.copy(export / "inference.pdiparams", old / "model.pdiparams")
    assert _tool_main()(["-m", str(old), "--test-split", "--limit", "2", "--out", str(tmp_path / "p")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "earlier ba-net" in err[0]
    assert f"python tools/export.py {run.resolve()} --weights best --out {old} --force" in err[0]
    assert not (tmp_path / "p").exists()


def _cases(runs, tmp_path):
    run, export = runs["cifar"]
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG but not really")
    unfinished = tmp_path / "unfinished" / "tiny" / "resnet20" / "seed0"
    shutil.copytree(run, unfinished)
    h = json.loads((unfinished / "history.json").read_text())
    h["status"] = "running"
    (unfinished / "history.json").write_text(json.dumps(h))
    return {
        "missing_model": (["-m", str(tmp_path / "nope"), "--test-split"], "does not exist"),
        "not_a_model": (["-m", str(tmp_path), "--test-split"], "neither an export folder"),
        "unfinished_run": (["-m", str(unfinished), "--test-split"], "not finished"),
        "unknown_weights": (["-m", str(run), "--weights", "last", "--test-split"], "unknown weights 'last'"),
        "weights_on_export": (["-m", str(export), "--weights", "best", "--test-split"], "--weights applies"),
        "unreadable_image": (["-m", str(export), str(bad)], "cannot read"),
        "missing_image": (["-m", str(export), str(tmp_path / "nope.png")], "does not exist"),
        "empty_folder": (["-m", str(export), str(empty)], "holds no files"),
        "no_input": (["-m", str(export)], "--test-split (one of the two)"),
    }


@pytest.mark.parametrize("case", ["missing_model", "not_a_model", "unfinished_run", "unknown_weights",
                                  "weights_on_export", "unreadable_image", "missing_image", "empty_folder",
                                  "no_input"])
def test_bad_input_is_one_line_and_writes_nothing(case, runs, tmp_path, capsys):
    args, expected = _cases(runs, tmp_path)[case]
    csv_path = tmp_path / "p" / "predictions.csv"
    assert _tool_main()(args + ["--out", str(csv_path.parent)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and expected in err[0], err
    assert not csv_path.exists()


def test_existing_csv_is_kept_without_force(runs, tmp_path, capsys):
    _, export = runs["cifar"]
    csv_path = tmp_path / "predictions.csv"
    csv_path.write_text("mine\n")
    assert _tool_main()(["-m", str(export), "--test-split", "--limit", "3", "--out", str(tmp_path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0]
    assert csv_path.read_text() == "mine\n"
    assert _tool_main()(["-m", str(export), "--test-split", "--limit", "3", "--out", str(tmp_path), "--force"]) == 0
    assert len(_read_csv(csv_path)) == 3
