"""PaddleX, a real client of ba-net's exports: ``create_model(model_name=..., model_dir=...)`` and
the image-classification pipeline (``create_pipeline`` with ``SubModules.ImageClassification:
{model_name, model_dir}``) run tools/export.py's folders as they are, for AlexNet, BA-AlexNet
(notebook preset, 128 px) and ResNet-20 (cifar preset, 32 px), on real images of three sizes
(32 x 32 CIFAR test images as PNG, 61 x 45 PNG and 200 x 150 JPEG resized copies), and agree with
tools/predict.py on the same files: the same top-1 always, probabilities within 1e-4 (PaddleX
rounds its scores to 5 decimals, the CSV to 6). And ``ba_net.register_paddlex()``: a no-op when
the name is known, one log line without paddlex, never imported by ``import ba_net``.

PaddleX is an optional extra (``pip install -e ".[deploy]"``): the tests that need it skip when
it cannot run here, unless BA_NET_REQUIRE_PADDLEX is set (.ci/run sets it after installing the
extra), where they fail instead.
"""
import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import ba_net
from ba_net import data as D
from ba_net.config import load_config
from ba_net.deploy.export import export_run
from ba_net.deploy.paddlex import PADDLEX_MODEL_NAME, pipeline_config
from ba_net.train import engine
from helpers import REPO, run_tool, tiny_config

MODELS = (("alexnet", "notebook"), ("ba_alexnet", "notebook"), ("resnet20", "cifar"))
SIZES = ((32, 32, "png"), (61, 45, "png"), (200, 150, "jpg"))  # width, height, format
PER_SIZE = 4  # test images written at each size
TOPK = 10  # every CIFAR-10 class: all the probabilities are compared


def _paddlex():
    """paddlex, once it can run an image classifier here (its `cv` extra's packages present);
    else skip, or fail under BA_NET_REQUIRE_PADDLEX."""
    try:
        import paddlex
        from paddlex.utils.deps import EXTRAS, is_dep_available

        missing = [dep for dep in EXTRAS["cv"] if not is_dep_available(dep)]
        what = f"PaddleX {paddlex.__version__} lacks {', '.join(missing)}"
    except ImportError as exc:
        missing, what = True, f"no paddlex ({exc.__class__.__name__})"
    if missing:
        reason = f"PaddleX cannot run an image classifier here: {what}; pip install -e \".[deploy]\""
        if os.environ.get("BA_NET_REQUIRE_PADDLEX"):
            pytest.fail(reason)
        pytest.skip(reason)
    return paddlex


# ------------------------------------------------------------------- register_paddlex

def test_import_ba_net_never_imports_paddlex():
    code = ("import sys, ba_net; ba_net.register_paddlex; import ba_net.deploy.export; "
            "print('paddlex' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_register_paddlex_without_paddlex_is_one_line(monkeypatch, caplog):
    """paddlex missing (simulated: a None entry in sys.modules makes `import paddlex` fail): no
    exception, None, one log line saying how to install it."""
    for name in [m for m in sys.modules if m == "paddlex" or m.startswith("paddlex.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "paddlex", None)
    caplog.set_level(logging.DEBUG, logger="ba_net")
    assert ba_net.register_paddlex() is None
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ba_net")]
    assert len(lines) == 1 and "paddlex is not usable here" in lines[0] and '.[deploy]' in lines[0]
    assert "\n" not in lines[0]


def test_register_paddlex_is_a_no_op_when_the_name_is_known(monkeypatch):
    _paddlex()
    from paddlex.inference.models import bindings

    assert ba_net.register_paddlex() == PADDLEX_MODEL_NAME
    binding = bindings.get_binding(PADDLEX_MODEL_NAME, "paddle_static")
    calls = []
    monkeypatch.setattr(bindings, "register_predictor_binding_map", lambda *a, **k: calls.append(a))
    assert ba_net.register_paddlex() == PADDLEX_MODEL_NAME
    assert calls == [] and bindings.get_binding(PADDLEX_MODEL_NAME, "paddle_static") is binding


# ---------------------------------------------------------------------- a real client

@pytest.fixture(scope="module")
def exports(module_tmp, small_cifar):
    """{model: export folder}: each model trained 1 epoch of 3 steps on the small sample, exported."""
    _paddlex()
    tmp = module_tmp("paddlex")
    out = {}
    for model, preset in MODELS:
        cfg = load_config(None, base=tiny_config(tmp, small_cifar, experiment=f"px_{preset}", models=[model],
                                                 data={"transforms": preset},
                                                 train={"epochs": 1, "max_steps_per_epoch": 3, "path": "dygraph"}))
        engine.run_experiment(cfg)
        run = Path(cfg["output_dir"]) / f"px_{preset}" / model / "seed0"
        out[model] = Path(export_run(run, out=tmp / "export" / model, parity_images=16)["export_dir"])
    return out


@pytest.fixture(scope="module")
def images(module_tmp, small_cifar):
    """Image files: the first test images of the sample at 32 x 32 (PNG, lossless) and resized
    (bicubic) to 61 x 45 (PNG) and 200 x 150 (JPEG)."""
    folder = module_tmp("paddlex_images")
    test, _ = D.read_cifar10(small_cifar, "test")
    paths = []
    for i, img in enumerate(test[:PER_SIZE]):
        for w, h, ext in SIZES:
            sized = img if (w, h) == (32, 32) else cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
            path = folder / f"test{i}_{w}x{h}.{ext}"
            assert cv2.imwrite(str(path), cv2.cvtColor(sized, cv2.COLOR_RGB2BGR))
            paths.append(path)
    return paths


def _tool_predictions(export: Path, paths, out: Path) -> dict:
    """tools/predict.py on the files: {file name: {class index: probability}} and the top-1s."""
    proc = run_tool([str(REPO / "tools" / "predict.py"), "-m", str(export), *map(str, paths), "-k", str(TOPK),
                     "--out", str(out), "--show", "0"])
    assert proc.returncode == 0, proc.stderr
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {Path(r["image"]).name: {int(r[f"top{i}_index"]): float(r[f"top{i}_prob"]) for i in range(1, TOPK + 1)}
            for r in rows}, {Path(r["image"]).name: int(r["top1_index"]) for r in rows}


def _paddlex_predictions(results, paths) -> tuple:
    """{file: {class: score}}, {file: top-1}, {file: label names}. One image per batch (PaddleX's
    default): PaddleX 3.7.2 gives every result its whole batch's class_ids (2-D), docs/paddlex.md."""
    probs, top1, labels = {}, {}, {}
    for path, result in zip(paths, results):
        ids = np.asarray(result["class_ids"]).reshape(-1)
        scores = np.asarray(result["scores"], dtype=np.float64).reshape(-1)
        assert len(ids) == TOPK and np.all(np.diff(scores) <= 0)
        probs[path.name] = dict(zip(ids.tolist(), scores.tolist()))
        top1[path.name] = int(ids[0])
        labels[path.name] = list(result["label_names"])
    return probs, top1, labels


@pytest.mark.parametrize("model", [m for m, _ in MODELS])
def test_paddlex_runs_the_export_and_agrees_with_predict(model, exports, images, tmp_path):
    paddlex = _paddlex()
    export = exports[model]
    name = ba_net.register_paddlex()
    assert name == PADDLEX_MODEL_NAME
    expected, expected_top1 = _tool_predictions(export, images, tmp_path)

    predictor = paddlex.create_model(model_name=name, model_dir=str(export))
    pipeline = paddlex.create_pipeline(config=pipeline_config(export, topk=TOPK))
    for client in (predictor, pipeline):
        probs, top1, labels = _paddlex_predictions(list(client.predict([str(p) for p in images], topk=TOPK)), images)
        assert top1 == expected_top1  # every image, every size
        diff = max(abs(probs[f][c] - expected[f][c]) for f in expected for c in expected[f])
        assert diff <= 1e-4, diff
        assert all(labels[f][0] == D.CIFAR10_CLASSES[top1[f]] for f in labels)
        print(f"{model} {type(client).__name__}: {len(images)} images ({', '.join(f'{w}x{h}' for w, h, _ in SIZES)}), "
              f"top-1 agrees on all, max |prob diff| vs tools/predict.py {diff:.2e}")


def test_paddlex_refuses_another_name_than_the_ymls(exports):
    """Global.model_name is checked: a built-in name on a ba-net export is refused by PaddleX."""
    paddlex = _paddlex()
    with pytest.raises(ValueError, match="mismatch"):
        paddlex.create_model(model_name="ResNet18", model_dir=str(exports["resnet20"]))
