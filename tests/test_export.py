"""tools/export.py: a finished tiny run to a Paddle inference model PaddleX can load (inference.json,
inference.pdiparams, inference.yml) with its spec, the built-in parity check (log-probabilities and
probabilities against the dygraph logits; passes on a good export, fails with exit 1 on corrupted
parameters or a mismatch, leaving nothing), the spec's transform equal to each CIFAR preset's
eval transform, earlier exports refused with the command that exports again, and one-line errors
that write nothing. PaddleX itself runs the exports in tests/test_paddlex.py."""
import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest
import yaml

from ba_net import data as D
from ba_net.train import engine
from ba_net.deploy import export as E
from ba_net.deploy import parity as P
from ba_net.deploy.predict import softmax
from ba_net.config import load_config
from ba_net.models import build_model
from helpers import REPO, forked_tool, read_history, tiny_config

TOOL = REPO / "tools" / "export.py"


def _tool_main():
    spec = importlib.util.spec_from_file_location("export_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def tiny_run(module_tmp, small_cifar):
    """A finished BA-AlexNet run (notebook preset, 128 px): 1 epoch of 2 steps of 8 images."""
    tmp = module_tmp("export")
    cfg = load_config(None, base=tiny_config(tmp, small_cifar, models=["ba_alexnet"], data={"transforms": "notebook"},
                                             train={"epochs": 1, "max_steps_per_epoch": 2, "path": "dygraph"}))
    engine.run_experiment(cfg)
    return Path(cfg["output_dir"]) / "tiny" / "ba_alexnet" / "seed0"


@pytest.fixture(scope="module")
def exported(tiny_run):
    """tools/export.py on the tiny run, default folder: (CompletedProcess, export folder). The tool
    runs in a child forked from tests/tool_server.py (the tests are about its answer, not its start-up)."""
    proc = forked_tool([str(TOOL), str(tiny_run)])
    return proc, tiny_run.parents[2] / "export" / "tiny-ba_alexnet-seed0-best"


def _leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []


def test_export_writes_model_and_spec_and_parity_passes(exported, tiny_run, small_cifar):
    proc, out = exported
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "inference.json", "inference.pdiparams",
                                                     "inference.yml"]
    assert _leftovers(out.parent) == []  # the temporary folder was renamed, nothing hidden stays
    spec = json.loads((out / "export.json").read_text())
    assert (spec["model"], spec["seed"], spec["experiment"], spec["weights"]) == ("ba_alexnet", 0, "tiny", "best")
    assert spec["source_run"] == str(tiny_run.resolve())
    assert spec["classes"] == list(D.CIFAR10_CLASSES) and spec["paddle_version"] == paddle.__version__
    assert spec["input"] == {"name": "images", "shape": [None, 3, 128, 128], "dtype": "float32", "layout": "NCHW",
                             "channels": "RGB"}
    assert spec["output"]["shape"] == [None, 10] and spec["output"]["values"].startswith("probabilities")
    t = spec["transform"]
    assert (t["preset"], t["image_size"], t["resize"], t["interpolation"], t["crop"]) == (
        "notebook", 128, {"size": 128}, "LINEAR", None)
    assert t["mean"] == pytest.approx(list(D.MEAN)) and t["std"] == pytest.approx(list(D.STD))
    assert spec["files"] == {"model": "inference.json", "params": "inference.pdiparams", "config": "inference.yml",
                             "onnx": None}
    parity = spec["parity"]
    assert parity["passed"] and parity["images"] == 64 and parity["data_file"] == str(small_cifar)
    assert parity["tolerance"] == pytest.approx(1e-4 * max(1.0, parity["logit_scale"]))
    assert parity["max_abs_diff"] < 1e-5 * max(1.0, parity["logit_scale"])  # measured ~1e-6 relative
    assert parity["max_prob_diff"] < 1e-5 and parity["top1_agree"] == 64
    line = next(line for line in proc.stdout.splitlines() if line.startswith("parity"))
    assert f"max |log-prob diff| {parity['max_abs_diff']:.2e}" in line and ": pass;" in line
    assert f"max |prob diff| {parity['max_prob_diff']:.2e}" in line
    assert "model_name='BA-Net'" in proc.stdout


def test_inference_yml_is_what_paddlex_reads(exported):
    """inference.yml: the model name, the transform of export.json as PaddleX's steps (one
    ResizeImage, NormalizeImage with order '' and channel_num 3, ToCHWImage), Topk with the class names."""
    _, out = exported
    spec = json.loads((out / "export.json").read_text())
    cfg = yaml.safe_load((out / "inference.yml").read_text())
    assert cfg["Global"] == {"model_name": "BA-Net"} and spec["paddlex"] == {"model_name": "BA-Net",
                                                                            "config": "inference.yml"}
    ops = cfg["PreProcess"]["transform_ops"]
    assert [next(iter(op)) for op in ops] == ["ResizeImage", "NormalizeImage", "ToCHWImage"]
    assert ops[0]["ResizeImage"] == {"size": 128, "interpolation": "LINEAR", "backend": "cv2"}
    norm = ops[1]["NormalizeImage"]
    assert (norm["order"], norm["channel_num"], norm["scale"]) == ("", 3, pytest.approx(1 / 255))
    assert norm["mean"] == spec["transform"]["mean"] and norm["std"] == spec["transform"]["std"]
    assert cfg["PostProcess"] == {"Topk": {"topk": 5, "label_list": list(D.CIFAR10_CLASSES)}}


def test_exported_probabilities_are_the_softmax_of_the_runs_dygraph_model(exported, tiny_run, cifar_subset):
    """Independently of the tool: the run's best weights in a fresh model vs the export in Paddle
    Inference on other test images than the parity batch; the export's output is the softmax of
    the logits."""
    from ba_net.accel.inference import InferenceRunner

    _, out = exported
    model = build_model("ba_alexnet", num_classes=10)
    model.set_state_dict(paddle.load(str(tiny_run / "best.pdparams")))
    model.eval()
    images, _ = D.read_cifar10(cifar_subset, "test")
    x = np.stack([D.eval_transform(img) for img in images[100:116]]).astype("float32")
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x)).numpy()
    got = InferenceRunner(out / "inference").run_numpy(x)
    assert got.shape == (16, 10) and np.allclose(got.sum(axis=1), 1.0, atol=1e-6)
    assert np.abs(got - softmax(ref)).max() <= 1e-5
    assert np.abs(np.log(got) - P.log_softmax(ref)).max() <= 1e-4 * max(1.0, np.abs(ref).max())


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
    inference.pdiparams, the raw data of its last parameters, +/- 0.01 alternately: weights of
    ~0.03; a uniform + 0.01 of a last layer's bias would move every logit alike and change no
    probability) fails --verify with exit 1 and one line; a truncated parameter file too."""
    _, out = exported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    data = bytearray((out / "inference.pdiparams").read_bytes())
    tail = np.frombuffer(bytes(data[-4096:]), dtype=np.float32)
    assert np.all(np.isfinite(tail)) and 0 < np.abs(tail).max() < 1  # weights, not a header
    data[-4096:] = (tail + np.float32(0.01) * np.where(np.arange(tail.size) % 2, -1, 1).astype(np.float32)).tobytes()
    (bad / "inference.pdiparams").write_bytes(bytes(data))
    proc = forked_tool([str(TOOL), "--verify", str(bad)])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "parity check failed" in err[0] and "max |log-prob diff|" in err[0]
    (bad / "inference.pdiparams").write_bytes(bytes(data[: len(data) // 2]))
    proc = forked_tool([str(TOOL), "--verify", str(bad)])
    assert proc.returncode == 1 and "parity check failed" in proc.stderr
    proc = forked_tool([str(TOOL), "--verify", str(out)])  # the good one still passes
    assert proc.returncode == 0 and ": pass;" in proc.stdout


def test_mismatch_fails_export_and_leaves_nothing(tiny_run, tmp_path, monkeypatch, capsys):
    """Paddle Inference answering probabilities 0.01 off (on every image: 8 parity images are
    enough): exit 1, one line, no folder."""
    real = E.inference_forward

    def shifted(folder, what):
        forward = real(folder, what)
        return lambda batch: forward(batch) + 0.01 * max(1.0, float(np.abs(forward(batch)).max()))

    monkeypatch.setattr(E, "inference_forward", shifted)
    out = tmp_path / "exports" / "x"
    assert _tool_main()([str(tiny_run), "--out", str(out), "--parity-images", "8"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # + progress lines
    assert len(err) == 1 and "parity check failed" in err[0] and "nothing written" in err[0]
    assert not (tmp_path / "exports").exists()


def test_onnx_export_is_checked_with_onnx_runtime(tiny_run, tmp_path):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    spec = E.export_run(tiny_run, out=tmp_path / "onnx", onnx=True, parity_images=8)
    assert (tmp_path / "onnx" / "inference.onnx").is_file() and spec["files"]["onnx"] == "inference.onnx"
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


def test_probabilities_are_compared_as_log_probabilities_and_as_probabilities():
    """The export's probabilities against the dygraph logits: log p = logits - logsumexp (a shift
    of the logits changes nothing), the tolerance 1e-4 x the logit scale for both numbers; a
    probability that float32 cannot hold (below 1e-30) is compared as a probability only."""
    logits = np.array([[2.0, -4.0, 0.5], [1.0, 0.5, -1.0]])
    p = softmax(logits)
    result = P.compare_outputs(logits, p.astype(np.float32))
    assert result["passed"] and result["max_abs_diff"] < 1e-6 and result["max_prob_diff"] < 1e-7
    assert result["top1_agree"] == 2 and result["tolerance"] == pytest.approx(4e-4)
    assert P.compare_outputs(logits + 100.0, p)["passed"]  # a constant shift of the logits is no difference
    shifted = softmax(logits + np.array([[3.9e-4, 0, 0], [0, 0, 0]]))  # log p of class 0 moves by ~3.9e-4 x (1 - p)
    assert P.compare_outputs(logits, shifted)["passed"]
    moved = softmax(logits + np.array([[0, 0, 1e-2], [0, 0, 0]]))
    failed = P.compare_outputs(logits, moved)
    assert not failed["passed"] and failed["max_abs_diff"] > 4e-4
    huge = np.array([[0.0, -200.0, -5.0]])  # exp(-200) underflows float32: 0 on the export's side
    assert P.compare_outputs(huge, softmax(huge).astype(np.float32))["passed"]
    assert not P.compare_outputs(huge, np.array([[0.5, 0.5, 0.0]]))["passed"]
    assert not P.compare_outputs(logits, np.where(p > 0.5, np.nan, p))["passed"]  # NaN fails
    assert not P.compare_outputs(logits, p - 0.5)["passed"]  # negative probabilities fail
    assert not P.compare_outputs(logits, p[:1])["passed"]


@pytest.mark.parametrize("name", ["notebook", "plain", "cifar"])
def test_spec_transform_is_the_presets_eval_transform(name, cifar_subset):
    """export.json's transform rebuilds each CIFAR preset's eval transform bit for bit on 32 px
    images; any other image is resized once, straight to the model's side, with the spec's
    interpolation (LINEAR for the 128 px presets, AREA for cifar), stretched, not cropped."""
    p = D.preset(name)
    spec = {"transform": {"image_size": p.image_size, **E.preset_transform(p), "mean": list(p.mean),
                          "std": list(p.std)}}
    prepare = E.spec_transform(spec)
    images, _ = D.read_cifar10(cifar_subset, "test")
    for img in images[:8]:
        np.testing.assert_array_equal(prepare(img), p.eval(img))
    flag = {"LINEAR": cv2.INTER_LINEAR, "AREA": cv2.INTER_AREA}[spec["transform"]["interpolation"]]
    for big in (cv2.resize(images[0], (61, 45), interpolation=cv2.INTER_CUBIC),
                np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)):
        once = cv2.resize(big, (p.image_size, p.image_size), interpolation=flag)
        np.testing.assert_array_equal(prepare(big), D.to_normalized_chw(once, np.asarray(p.mean, np.float32),
                                                                        np.asarray(p.std, np.float32)))


def test_short_side_resize_and_centre_crop_follow_paddlex():
    """A spec with resize_short and crop (as PaddleX's ResizeByShort + CropImage): both sides
    scaled and rounded, the centred crop's offsets rounded down."""
    spec = {"transform": {"resize": {"resize_short": 40}, "interpolation": "AREA", "crop": 32,
                          "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}}
    img = np.random.default_rng(1).integers(0, 256, (150, 201, 3), dtype=np.uint8)
    resized = cv2.resize(img, (round(201 * 40 / 150), 40), interpolation=cv2.INTER_AREA)  # 54 x 40
    expected = resized[4:36, 11:43].astype(np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_array_equal(E.spec_transform(spec)(img), expected)


def test_an_unknown_preset_is_refused():
    from ba_net.errors import RunStateError

    with pytest.raises(RunStateError, match="no single-step transform PaddleX can run"):
        E.preset_transform(D.Preset("odd", None, None, 64, (0.5,) * 3, (0.5,) * 3, "odd"))


def test_an_earlier_export_is_refused_with_the_command_that_exports_again(exported, tiny_run, tmp_path, capsys):
    """An export of an earlier ba-net (model.json + model.pdiparams, export.json 'ba-net export
    1') is refused by --verify (and by tools/predict.py, tests/test_predict.py) in one line that
    names the command exporting the run again."""
    _, out = exported
    old = tmp_path / "old-export"
    old.mkdir()
    spec = json.loads((out / "export.json").read_text())
    spec["format"] = "ba-net export 1"
    (old / "export.json").write_text(json.dumps(spec))
    shutil.copy(out / "inference.json", old / "model.json")
    shutil.copy(out / "inference.pdiparams", old / "model.pdiparams")
    assert _tool_main()(["--verify", str(old)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier ba-net" in err[0]
    again = f"python tools/export.py {tiny_run.resolve()} --weights {spec['weights']} --out {old} --force"
    assert f"export the run again: {again}" in err[0]


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
