"""The command-line contract (ba_net/cli.py): every tool answers --version; the same flag means the
same thing everywhere; compare refuses an experiment with no finished run in one line and writes
nothing, compares the experiment a config trains, and names only the files it wrote; `make quick`
compares the experiment it trained; --list-models lists every model with its real count."""
import json
import re
import subprocess

import paddle
import pytest

import ba_net
from ba_net import count_params, build_model
from helpers import REPO, tiny_config, tool_main, tree_snapshot

TOOLS = ("train", "compare", "export", "predict", "benchmark")


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_answers_version(tool, capsys):
    with pytest.raises(SystemExit) as stop:
        tool_main(tool, ["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == ba_net.cli.version() and paddle.__version__ in ba_net.cli.version()


@pytest.mark.parametrize("tool", TOOLS)
def test_shared_flags_mean_the_same_everywhere(tool, capsys):
    """--data-file names a data file, --out a folder (DIR), --force replaces what exists: wherever a
    tool has one of them, its help says so in the same words."""
    with pytest.raises(SystemExit):
        tool_main(tool, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--data FILE" not in text and "--csv" not in text  # the old spellings are gone
    if "--out" in text:
        assert "--out DIR" in text and "folder to write into" in text
    if "--data-file" in text:
        assert "--data-file FILE" in text and "python tarball" in text
    if "--force" in text:
        assert re.search(r"--force +replace .* if it already exists", text), text


def test_list_models_prints_every_model_with_its_count(capsys):
    assert tool_main("train", ["--list-models"]) == 0
    out = capsys.readouterr().out
    listed = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in out.splitlines()
              if line.startswith("| ") and not line.startswith("| model")}
    assert sorted(listed) == ba_net.list_models()
    for name in ("alexnet", "ba_resnet20", "resnet50"):
        assert listed[name] == f"{count_params(build_model(name, num_classes=10))['trainable']:,}"
    assert "| alexnet | 7,524,042 | 128 x 128 px |" in out


def _stopped_experiment(root, data):
    """An experiment whose only run stopped during its first epoch (history says running); on the
    dygraph path (the fast path's tracing, before the first epoch, is not what compare reads)."""
    from ba_net.config import load_config
    from ba_net.train import engine
    from ba_net.train import loops

    cfg = load_config(None, base=tiny_config(root, data, models=["resnet20"], data={"transforms": "cifar"},
                                             train={"path": "dygraph"}))
    real = loops.train_epoch

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    engine.train_epoch = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.run_experiment(cfg)
    finally:
        engine.train_epoch = real
    return root / "out" / "tiny"


def test_compare_with_no_finished_run_is_one_line_and_writes_nothing(tmp_path, small_cifar, capsys):
    experiment = _stopped_experiment(tmp_path, small_cifar)
    before = tree_snapshot(tmp_path)
    capsys.readouterr()  # what the stopped training logged is not compare's
    assert tool_main("compare", [str(experiment)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "no finished run" in errors[0] and "resnet20 seed 0 interrupted" in errors[0], err
    assert "Traceback" not in err and tree_snapshot(tmp_path) == before


def test_compare_takes_the_config_that_trained_the_experiment(tmp_path, small_cifar, capsys):
    """compare -c CONFIG -o ... compares <output_dir>/<experiment> of that config, and its last
    line names exactly the files it wrote. (The run trains on the dygraph path: the fast path's
    tracing is not what this is about.)"""
    from ba_net.config import load_config
    from ba_net.train import engine

    out = tmp_path / "out"
    overrides = [f"output_dir={out}", "experiment=other", "models=[resnet20]", "seeds=[0]", "data.transforms=cifar",
                 f"data.data_file={small_cifar}", "train.epochs=1", "train.max_steps_per_epoch=2",
                 "train.batch_size=8", "data.num_workers=0", "train.path=dygraph"]
    engine.run_experiment(load_config(str(REPO / "experiments" / "quick.yaml"), tuple(overrides)))
    (out / "other" / "stale.txt").write_text("from an earlier compare")
    argv = ["-c", str(REPO / "experiments" / "quick.yaml"), "--no-throughput"]
    for o in overrides:
        argv += ["-o", o]
    assert tool_main("compare", argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"wrote into {out / 'other'}/: ")
    named = last.split(": ", 1)[1].split(";")[0].split(", ")
    assert "comparison.md" in named and "stale.txt" not in named
    assert all((out / "other" / name).is_file() for name in named)
    assert json.loads((out / "other" / "comparison.json").read_text())["experiment"] == "other"


def test_make_quick_compares_the_experiment_it_trained():
    """`make quick QUICK_ARGS="-o experiment=mk ..."` hands the same overrides to compare, so it
    compares output/mk and leaves output/quick alone (make -n: the commands, not their run)."""
    args = "-o experiment=mk -o seeds=[0]"
    proc = subprocess.run(["make", "-n", "quick", f"QUICK_ARGS={args}", "VENV=.venv"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    lines = [line for line in proc.stdout.splitlines() if "tools/" in line]
    train, compare = [line for line in lines if "tools/train.py" in line], [line for line in lines if "tools/compare.py" in line]
    assert len(train) == 1 and len(compare) == 1, proc.stdout
    assert train[0].endswith("-c experiments/quick.yaml " + args)
    assert compare[0].endswith("-c experiments/quick.yaml " + args)


def test_paddle_noise_is_held_back_and_nothing_else(capfd):
    """quiet_paddle drops the known harmless C++ lines written to file descriptor 2 and passes every
    other line through, also when the block raises."""
    import os

    from ba_net.runtime import HARMLESS_PADDLE_LINES, quiet_paddle

    with pytest.raises(RuntimeError):
        with quiet_paddle():
            os.write(2, b"W1203 eager_utils.cc:3584] " + HARMLESS_PADDLE_LINES[0].encode() + b" for now!!!!!\n")
            os.write(2, b"a real problem\n")
            os.write(2, (HARMLESS_PADDLE_LINES[1] + "\n").encode())
            raise RuntimeError("boom")
    assert capfd.readouterr().err == "a real problem\n"


def test_an_export_of_a_batchnorm_model_prints_no_pir_warning(tmp_path, capfd):
    """jit.save of a model with BatchNorm makes Paddle warn 'PIR not support input out tensor'
    (seen with the filter removed): the export keeps it out of the terminal."""
    import numpy as np

    from ba_net.accel.inference import InferenceRunner, export_for_inference

    model = build_model("resnet20", num_classes=10)
    prefix = export_for_inference(model, tmp_path / "export")
    InferenceRunner(prefix).run_numpy(np.zeros((1, 3, 32, 32), "float32"))
    assert "not support input out tensor" not in capfd.readouterr().err
