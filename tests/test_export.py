"""tools/export.py: a finished tiny run to a Paddle inference model with its spec, the built-in
parity check (passes on a good export, fails with exit 1 on corrupted parameters or a mismatch,
leaving nothing), the spec's transform equal to each preset's eval transform, and one-line
errors that write nothing."""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import paddle
import pytest

from ba_net import data as D
from ba_net.train import engine
from ba_net.deploy import export as E
from ba_net.deploy import parity as P
from ba_net.config import load_config
from ba_net.models import build_model
from helpers import REPO, read_history, run_tool, tiny_config

TOOL = REPO / "tools" / "export.py"


def _tool_main():
    spec = importlib.util.spec_from_file_location("export_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cifar_subset):
    """A finished BA-AlexNet run (notebook preset, 128 px): 1 epoch of 2 steps of 8 images."""
    tmp = tmp_path_factory.mktemp("export")
    cfg = load_config(None, base=tiny_config(tmp, cifar_subset, models=["ba_alexnet"],
                                             train={"epochs": 1, "max_steps_per_epoch": 2, "path": "dygraph"}))
    engine.run_experiment(cfg)
    return Path(cfg["output_dir"]) / "tiny" / "ba_alexnet" / "seed0"


@pytest.fixture(scope="module")
def exported(tiny_run):
    """tools/export.py on the tiny run, default folder: (CompletedProcess, export folder)."""
    proc = run_tool([str(TOOL), str(tiny_run)])
    return proc, tiny_run.parents[2] / "export" / "tiny-ba_alexnet-seed0-best"


def _leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []


def test_export_writes_model_and_spec_and_parity_passes(exported, tiny_run, cifar_subset):
    proc, out = exported
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.json", "model.pdiparams"]
    assert _leftovers(out.parent) == []  # the temporary folder was renamed, nothing hidden stays
    spec = json.loads((out / "export.json").read_text())
    assert (spec["model"], spec["seed"], spec["experiment"], spec["weights"]) == ("ba_alexnet", 0, "tiny", "best")
    assert spec["source_run"] == str(tiny_run.resolve())
    assert spec["classes"] == list(D.CIFAR10_CLASSES) and spec["paddle_version"] == paddle.__version__
    assert spec["input"] == {"name": "images", "shape": [None, 3, 128, 128], "dtype": "float32", "layout": "NCHW",
                             "channels": "RGB"}
    t = spec["transform"]
    assert (t["preset"], t["image_size"], t["source_size"]) == ("notebook", 128, 32)
    assert t["mean"] == pytest.approx(list(D.MEAN)) and t["std"] == pytest.approx(list(D.STD))
    parity = spec["parity"]
    assert parity["passed"] and parity["images"] == 64 and parity["data_file"] == str(cifar_subset)
    assert parity["tolerance"] == pytest.approx(1e-4 * max(1.0, parity["logit_scale"]))
    assert parity["max_abs_diff"] < 1e-5 * max(1.0, parity["logit_scale"])  # measured ~1e-6 relative
    line = next(line for line in proc.stdout.splitlines() if line.startswith("parity"))
    assert f"max |logit diff| {parity['max_abs_diff']:.2e}" in line and ": pass;" in line


def test_exported_logits_equal_the_runs_dygraph_model(exported, tiny_run, cifar_subset):
    """Independently of the tool: the run's best weights in a fresh model vs the export in Paddle
    Inference on other test images than the parity batch."""
    from ba_net.accel.inference import InferenceRunner

    _, out = exported
    model = build_model("ba_alexnet", num_classes=10)
    model.set_state_dict(paddle.load(str(tiny_run / "best.pdparams")))
    model.eval()
    images, _ = D.read_cifar10(cifar_subset, "test")
    x = np.stack([D.eval_transform(img) for img in images[100:116]]).astype("float32")
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x)).numpy()
    got = InferenceRunner(out / "model").run_numpy(x)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_existing_export_is_refused_then_replaced_with_force(exported, tiny_run, capsys):
    _, out = exported
    before = (out / "export.json").read_text()
    assert _tool_main()([str(tiny_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0] and "--force" in err[0]
    assert (out / "export.json").read_text() == before
    assert _tool_main()([str(tiny_run), "--force", "--weights", "final"] + ["--out", str(out)]) == 0
    spec = json.loads((out / "export.json").read_text())
    assert spec["weights"] == "final" and _leftovers(out.parent) == []


def test_corrupted_params_fail_the_check(exported, tmp_path):
    """An export whose parameter file has values changed (the last 1,024 float32 of
    model.pdiparams, the raw data of its last parameter, + 0.01: weights of ~0.03) fails --verify
    with exit 1 and one line; a truncated parameter file too."""
    _, out = exported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = bytearray((out / "model.pdiparams").read_bytes())
    tail = np.frombuffer(bytes(data[-4096:]), dtype=np.float32)
    assert np.all(np.isfinite(tail)) and 0 < np.abs(tail).max() < 1  # weights, not a header
    data[-4096:] = (tail + np.float32(0.01)).tobytes()
    (bad / "model.pdiparams").write_bytes(bytes(data))
    proc = run_tool([str(TOOL), "--verify", str(bad)])
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "parity check failed" in err[0] and "max |logit diff|" in err[0]
    (bad / "model.pdiparams").write_bytes(bytes(data[: len(data) // 2]))
    proc = run_tool([str(TOOL), "--verify", str(bad)])
    assert proc.returncode == 1 and "parity check failed" in proc.stderr
    proc = run_tool([str(TOOL), "--verify", str(out)])  # the good one still passes
    assert proc.returncode == 0 and ": pass;" in proc.stdout


def test_mismatch_fails_export_and_leaves_nothing(tiny_run, tmp_path, monkeypatch, capsys):
    """Paddle Inference answering 1 % of the logit scale off: exit 1, one line, no folder."""
    real = E.inference_forward

    def shifted(folder, what):
        forward = real(folder, what)
        return lambda batch: forward(batch) + 0.01 * max(1.0, float(np.abs(forward(batch)).max()))

    monkeypatch.setattr(E, "inference_forward", shifted)
    out = tmp_path / "exports" / "x"
    assert _tool_main()([str(tiny_run), "--out", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # + progress lines
    assert len(err) == 1 and "parity check failed" in err[0] and "nothing written" in err[0]
    assert not (tmp_path / "exports").exists()


def test_onnx_export_is_checked_with_onnx_runtime(tiny_run, tmp_path):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    spec = E.export_run(tiny_run, out=tmp_path / "onnx", onnx=True, parity_images=8)
    assert (tmp_path / "onnx" / "model.onnx").is_file() and spec["files"]["onnx"] == "model.onnx"
    assert spec["onnx_parity"]["passed"] and spec["onnx_parity"]["images"] == 8


def test_tolerance_rule():
    ref = np.array([[2.0, -4.0], [1.0, 0.5]])
    assert P.compare_logits(ref, ref + 3.9e-4)["passed"]  # scale 4: tolerance 4e-4
    assert not P.compare_logits(ref, ref + 4.1e-4)["passed"]
    small = np.array([[0.1, 0.2]])
    assert P.compare_logits(small, small + 0.9e-4)["passed"]  # scale floored at 1
    assert not P.compare_logits(small, small + 1.1e-4)["passed"]
    assert not P.compare_logits(ref, np.where(ref > 1.5, np.nan, ref))["passed"]  # NaN fails
    assert not P.compare_logits(ref, ref[:1])["passed"]


@pytest.mark.parametrize("name", sorted(D.PRESETS))
def test_spec_transform_is_the_presets_eval_transform(name, cifar_subset):
    """export.json's parameters rebuild each preset's eval transform exactly on 32 px images."""
    p = D.preset(name)
    spec = {"transform": {"source_size": 32, "image_size": p.image_size, "mean": list(p.mean), "std": list(p.std)}}
    prepare = E.spec_transform(spec)
    images, _ = D.read_cifar10(cifar_subset, "test")
    for img in images[:8]:
        np.testing.assert_array_equal(prepare(img), p.eval(img))
    big = np.zeros((200, 300, 3), np.uint8)  # any size: brought to 32 px first, then as the preset
    assert prepare(big).shape == (3, p.image_size, p.image_size)


def _unfinished(tiny_run, tmp_path):
    run = tmp_path / "out" / "tiny" / "ba_alexnet" / "seed0"
    shutil.copytree(tiny_run, run)
    h = read_history(run)
    h["status"] = "running"
    (run / "history.json").write_text(json.dumps(h))
    return run


@pytest.mark.parametrize("case", ["missing", "not_a_run", "running", "unknown_weights", "no_final", "verify_missing"])
def test_bad_input_is_one_line_and_writes_nothing(case, tiny_run, tmp_path, capsys):
    out = tmp_path / "exp"
    args = {"missing": [str(tmp_path / "nope")], "not_a_run": [str(tiny_run.parent)],
            "running": [str(_unfinished(tiny_run, tmp_path)) if case == "running" else ""],
            "unknown_weights": [str(tiny_run), "--weights", "last"], "no_final": None,
            "verify_missing": ["--verify", str(tmp_path / "nope")]}[case]
    if case == "no_final":
        run = tmp_path / "copy" / "tiny" / "ba_alexnet" / "seed0"
        shutil.copytree(tiny_run, run)
        (run / "final.pdparams").unlink()
        args = [str(run), "--weights", "final"]
    if case != "verify_missing":
        args += ["--out", str(out)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert _tool_main()(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].split(" ", 1)[1].startswith("error: "), err
    expected = {"missing": "does not exist", "not_a_run": "is not a run folder", "running": "not finished",
                "unknown_weights": "unknown weights 'last'", "no_final": "no final.pdparams",
                "verify_missing": "does not exist"}[case]
    assert expected in err[0]
    assert not out.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
