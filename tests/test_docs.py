"""Every command shown in the README and the docs works (issue 23): each command line of a fenced
``bash`` block of README.md and docs/**/*.md is

* **run** -- tools/*.py commands whose data is here (the embedded sample), with tiny settings
  appended (one epoch of two steps, seed 0, the models the docs use, 8 images), in a temporary
  folder that holds ``output/``; training first, then compare, export, export --verify, predict;
  ``. .venv/bin/activate`` in a shell; ``visualdl``'s log folder must hold the runs' logs;
* **checked** -- GPU, multi-process, full-data and long commands: the flags go through the tool's
  own argument parser (an unknown flag fails), the config is loaded with every ``-o`` (an unknown
  key or a bad value fails), ``--throughput-settings``, ``--weights`` and ``--models`` are
  checked; ``make`` lines are expanded with ``make -n`` and the tool commands in them checked;
  ``python -m paddle.distributed.launch``'s flags are checked against Paddle's launcher;
* **elsewhere** -- listed in :data:`ELSEWHERE` with the test or ``.ci/run`` that runs it (checked
  to exist), or in :data:`NOT_RUN` with the reason (installs from the package registry).

A command line that is none of these fails :func:`test_every_doc_command_is_classified`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from helpers import REPO, small_cifar10, tool_main

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TOOLS = ("train", "compare", "export", "predict", "benchmark")
FULL_DATA = "needs the full data set (downloaded or supplied; not here)"

# Commands run by another test or by .ci/run: command -> (file, text that must be in it). Tool
# commands among them are checked to parse as well.
SIGNALS = ("tests/test_signals.py", "def test_a_signal_stops_training_in_one_line_and_resume_gives_the_unstopped_run(")
ELSEWHERE = {
    "git clone <this repository> ba-net": (".ci/run", 'git clone -q "$src" "$work/ba-net"'),
    "cd ba-net": (".ci/run", 'cd "$work/ba-net"'),
    "make quick": (".ci/run", "make quick QUICK_ARGS="),
    "make test": (".ci/run", "\nmake test\n"),
    "make test VENV=.venv-oldest PADDLE=oldest": (".ci/run", "make test VENV=.venv-oldest PADDLE=oldest"),
    "timeout -s TERM 42 python tools/train.py -c experiments/quick.yaml -o seeds=[0] -o models=[alexnet] "
    "-o experiment=term": SIGNALS,
    "python tools/train.py -c experiments/quick.yaml -o seeds=[0] -o models=[alexnet] -o experiment=term --resume":
        SIGNALS,
    "python tools/train.py -c experiments/quick.yaml -o train.ema_decay=0.999 -o experiment=ema":
        ("tests/test_ema.py", "def test_the_average_is_evaluated_and_saved_beside_the_weights("),
    "python tools/train.py -c experiments/quick.yaml --resume": SIGNALS,  # needs a stopped run
    "python tools/train.py -c experiments/quick.yaml --force":
        ("tests/test_train.py", "def test_finished_run_is_skipped_and_force_reruns("),
    "python tools/compare.py -c experiments/quick.yaml":
        ("tests/test_cli.py", "def test_compare_takes_the_config_that_trained_the_experiment("),
    ".venv/bin/python - <<'EOF'":
        ("tests/test_paddlex.py", "def test_paddlex_runs_the_export_and_agrees_with_predict("),
    "python tools/train.py --list-models":
        ("tests/test_cli.py", "def test_list_models_prints_every_model_with_its_count("),
    "python tools/benchmark.py --quick": ("tests/test_accel.py", "def test_benchmark_quick_writes_every_row("),
    "python tools/benchmark.py --resnet":
        ("tests/test_accel.py", "def test_benchmark_resnet_suite_measures_each_model_and_bas_overhead("),
    "python tools/export.py output/quick/ba_alexnet/seed0 --onnx":
        ("tests/test_export.py", "def test_onnx_export_is_checked_with_onnx_runtime("),
    "python tools/compare.py output/resnet20_study --no-throughput --aa resnet20":
        ("tests/test_compare_evidence.py", "def test_aa_from_the_command_line("),
}
# Commands no test runs, and why.
NOT_RUN = {
    "python3 -m venv .venv": "creates the environment the GPU wheel goes into (make does the same for CPU)",
    ".venv/bin/pip install paddlepaddle-gpu": "the GPU wheel: needs CUDA and the registry",
    "pip install -e .": "an install from the registry (make installs the same package with its extras)",
    'pip install -e ".[peer]"': "installs PyTorch from the registry",
    "pip install paddle2onnx onnxruntime": "an install from the registry (both are in the test extra)",
    "python -m pytest -q tests/test_docs.py": "this very test (make test runs it)",
    '.venv/bin/pip install -e ".[deploy]"': "PaddleX from the registry (.ci/run installs it for tests/test_paddlex.py)",
    "cat > ba_net_pipeline.yaml <<'EOF'": "the pipeline file of PaddleX's command line below",
    '.venv/bin/python -c "import sys, ba_net; ba_net.register_paddlex(); from paddlex.paddlex_cli import main; '
    'sys.exit(main())" --pipeline ba_net_pipeline.yaml --input cat.png':
        "PaddleX's command line; tests/test_paddlex.py runs the same pipeline config from Python",
}
# tiny settings appended to every training that runs
TINY_TRAIN = ["-o", "train.epochs=1", "-o", "train.max_steps_per_epoch=2", "-o", "train.batch_size=8", "-o", "seeds=[0]",
              "-o", "data.num_workers=0", "-o", "data.eval_num_workers=0"]
TINY_VAL_SPLIT = 20  # in place of a config's data.val_split: two validation images per class


# ------------------------------------------------------------------------ the commands

def _without_comment(line: str) -> str:
    """The line up to an unquoted ``#`` that starts a word."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


def _command_lines(text: str):
    """(line number, command) of each command of the ``bash`` blocks: comments dropped, ``\\``
    continuations joined, ``&&`` chains split, spaces normalized; a here-document's lines belong
    to the command that opens it (shown as its first line)."""
    fence, pending, start, heredoc = None, "", 0, None
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if heredoc:
            heredoc = None if stripped == heredoc else heredoc
            continue
        if stripped.startswith("```"):
            fence = stripped[3:].strip() if fence is None else None
            continue
        if fence != "bash":
            continue
        opened = HEREDOC.search(_without_comment(stripped))
        heredoc = opened.group(1) if opened else None
        if not pending:
            start = no
        stripped = _without_comment(stripped).strip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole, pending = pending + stripped, ""
        for part in whole.split("&&"):
            if part.strip():
                yield start, " ".join(part.split())


def doc_commands() -> list:
    """[(doc:line, command as shown, its tokens)] over README.md and docs/**/*.md, in order."""
    found = []
    for doc in DOCS:
        for no, command in _command_lines(doc.read_text()):
            found.append((f"{doc.relative_to(REPO)}:{no}", command, shlex.split(command)))
    return found


COMMANDS = doc_commands()


def _tool_call(tokens):
    """('train', args) for ``python tools/train.py args`` (after ``timeout ...`` or Paddle's
    launcher: (tool, args, launcher flags)); None for anything else."""
    launch = []
    if tokens[:1] == ["timeout"]:
        tokens = tokens[next(i for i, t in enumerate(tokens) if t.endswith("python")):]
    if tokens[:1] == [".venv/bin/python"]:
        tokens = ["python"] + tokens[1:]
    if tokens[:3] == ["python", "-m", "paddle.distributed.launch"]:
        script = next(i for i, t in enumerate(tokens) if t.startswith("tools/"))
        launch, tokens = tokens[3:script], ["python"] + tokens[script:]
    python = tokens[:1] in (["python"], [".venv/bin/python"])  # the activated environment's, or named
    m = re.fullmatch(r"tools/(\w+)\.py", tokens[1]) if python and len(tokens) > 1 else None
    if m and m.group(1) in TOOLS:
        return m.group(1), tokens[2:], launch
    return None


def _snippet(tokens) -> bool:
    """``python -c "..."``: run as shown, in the folder the other commands run in, before them."""
    return tokens[:2] in (["python", "-c"], [".venv/bin/python", "-c"])


def test_every_doc_command_is_classified():
    assert len(COMMANDS) >= 30, [c for _, c, _ in COMMANDS]  # the extraction still finds the docs' commands
    unknown = [f"{where}: {command}" for where, command, tokens in COMMANDS
               if command not in ELSEWHERE and command not in NOT_RUN and _tool_call(tokens) is None
               and not _snippet(tokens) and tokens[0] not in ("make", "visualdl")
               and command != ". .venv/bin/activate"]
    assert not unknown, "doc commands no test runs or checks (run them here, or list them in ELSEWHERE / " \
                        "NOT_RUN):\n" + "\n".join(unknown)
    shown = {command for _, command, _ in COMMANDS}
    stale = sorted(set(ELSEWHERE) - shown) + sorted(set(NOT_RUN) - shown)
    assert not stale, f"listed here but no longer in the docs: {stale}"


@pytest.mark.parametrize("command", sorted(ELSEWHERE))
def test_commands_run_elsewhere_are_run_there(command):
    path, evidence = ELSEWHERE[command]
    assert evidence in (REPO / path).read_text(), f"{command!r}: {path} no longer has {evidence!r}"


# ------------------------------------------------------------------------ checking

def _load_tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_doc_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def exact_flags(flags: list):
    """Fail when a ``--flag`` in ``flags`` is not one of the parser's own options: argparse also
    takes an abbreviation (``--data`` for ``--data-file``), which a doc must not show."""
    parsers = []
    real = argparse.ArgumentParser.parse_known_args

    def spy(self, *args, **kwargs):
        parsers.append(self)
        return real(self, *args, **kwargs)

    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", spy):
        yield
    assert parsers, "no argument parser ran"
    known = parsers[-1]._option_string_actions
    loose = [f for f in flags if f.startswith("--") and f != "--" and f.split("=")[0] not in known]
    assert not loose, f"{loose}: not an option of {parsers[-1].prog} (an abbreviation or unknown)"


def parse_tool(name: str, args: list) -> argparse.Namespace:
    """The namespace ``tools/<name>.py`` parses from ``args`` (nothing runs); an argparse refusal
    fails with its message."""
    from ba_net import cli

    module, seen, err = _load_tool(name), {}, io.StringIO()

    def record(main, namespace, interrupted=""):
        seen["args"] = namespace
        return 0

    with exact_flags(args), mock.patch.object(cli, "run", record), contextlib.redirect_stderr(err):
        try:
            module.main(list(args))
        except SystemExit as exc:
            if exc.code != 0:
                pytest.fail(f"tools/{name}.py refuses {shlex.join(args)!r} (exit {exc.code}): "
                            f"{err.getvalue().strip()}")
    return seen.get("args")  # None after --version or --help: that was the whole command


def check_tool(name: str, args: list):
    """Parse ``args`` as the tool does and check what parsing leaves open: the config and its
    overrides, throughput settings, weights, model names. Returns (namespace, config or None).
    Relative paths are the repository's (call with the repository as working folder)."""
    from ba_net.config import load_config
    from ba_net.models import list_models
    from ba_net.report.throughput import ThroughputSettings

    ns = parse_tool(name, args)
    cfg = None
    if ns is None:
        return None, None
    if getattr(ns, "config", None):
        cfg = load_config(ns.config, tuple(ns.override))  # a bad key or value: ConfigError, the test fails
    if name == "compare":
        ThroughputSettings.parse(ns.throughput_settings)
    if name in ("export", "predict"):
        assert ns.weights in (None, "best", "final"), f"--weights {ns.weights}"
    if name == "benchmark":
        assert not set(ns.models or ()) - set(list_models()), f"unknown models in --models {ns.models}"
    return ns, cfg


def _check_launcher(flags: list):
    from paddle.distributed.launch.context import args_envs

    with exact_flags(flags), mock.patch.object(sys, "argv", ["launch", *flags, "tools/train.py"]):
        known, unknown = args_envs.parse_args()
    assert not unknown, f"paddle.distributed.launch does not know {unknown}"
    assert known.training_script == "tools/train.py"


def _check_visualdl(args: list):
    from visualdl.server import args as visualdl_args

    err = io.StringIO()
    with exact_flags(args), mock.patch.object(sys, "argv", ["visualdl", *args]), contextlib.redirect_stderr(err):
        try:
            parsed = visualdl_args.parse_args()
        except SystemExit as exc:
            pytest.fail(f"visualdl refuses {shlex.join(args)!r} (exit {exc.code}): {err.getvalue().strip()}")
    return parsed


def _check_make(tokens: list):
    """``make -n`` of the line; every tool command in the recipe it prints is checked."""
    proc = subprocess.run(["make", "-n", *tokens[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    tools = [shlex.split(line) for line in proc.stdout.splitlines() if " tools/" in line]
    if tokens[1] == "quick":
        assert [t[1] for t in tools] == ["tools/train.py", "tools/compare.py"], proc.stdout
    for line in tools:
        check_tool(re.fullmatch(r"tools/(\w+)\.py", line[1]).group(1), line[2:])
    return proc.stdout


@pytest.mark.parametrize("where,command", [(w, c) for w, c, t in COMMANDS
                                           if c not in NOT_RUN and (_tool_call(t) or t[0] in ("make", "visualdl"))])
def test_every_doc_command_parses(where, command, monkeypatch):
    """Flags, config keys and values of every tool command in the docs exist (cheap: nothing runs)."""
    monkeypatch.chdir(REPO)
    tokens = shlex.split(command)
    if tokens[0] == "make":
        _check_make(tokens)
    elif tokens[0] == "visualdl":
        _check_visualdl(tokens[1:])
    else:
        name, args, launch = _tool_call(tokens)
        if launch:
            _check_launcher(launch)
        check_tool(name, args)


# ------------------------------------------------------------------------ running

def _experiment_of(path: str):
    """'quick' for output/quick, output/quick/alexnet/seed0 and output/export/quick-alexnet-seed0-best."""
    parts = Path(path).parts
    if len(parts) >= 2 and parts[0] == "output":
        if parts[1] == "export" and len(parts) >= 3:
            return parts[2].split("-")[0]
        return parts[1]
    return None


def plan_runs():
    """(runs, checked, trained, orphans): the doc commands this test runs, as (where, command,
    tool, args); the tool commands only checked, as (where, command, why); {experiment: models}
    of the trainings that run; and the commands that read an experiment no doc command trains."""
    from ba_net.config import load_config

    runs, checked, trained, elsewhere = [], [], {}, set()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for where, command, tokens in COMMANDS:
            call = _tool_call(tokens)
            if call is None or command in NOT_RUN:
                continue
            name, args, launch = call
            ns = parse_tool(name, args)
            cfg = load_config(ns.config, tuple(ns.override)) if name == "train" and ns and ns.config else None
            why = None
            if command in ELSEWHERE:
                why = ELSEWHERE[command][0]
            elif launch:
                why = "several processes (paddle.distributed.launch)"
            elif name == "benchmark":
                why = "minutes of measurement (--quick and --resnet run in test_accel)"
            elif cfg and not cfg["data"]["data_file"]:
                why = FULL_DATA
            elif cfg and (cfg["device"] == "gpu" or cfg["train"]["amp"]):
                why = "GPU"
            if cfg and why:
                elsewhere.add(cfg["experiment"])
            if why and command not in ELSEWHERE:
                checked.append((where, command, why))
            elif ns is not None and not why:  # ns None: --version, which test_every_doc_command_parses ran
                if cfg:
                    trained.setdefault(cfg["experiment"], cfg["models"])
                runs.append((where, command, name, args))
    finally:
        os.chdir(cwd)
    # what the other commands read must be trained here; else trained by a checked command only
    kept, orphans = [], []
    for where, command, name, args in runs:
        paths = [a for a in args if a.startswith("output/")]
        ns = parse_tool(name, args)
        if name == "compare" and ns.config:
            paths = [f"output/{load_config(REPO / ns.config, tuple(ns.override))['experiment']}"]
        missing = [p for p in paths if _experiment_of(p) not in trained]
        if [p for p in missing if _experiment_of(p) not in elsewhere]:
            orphans.append(f"{where}: {command}: reads {missing[0]}, which no command of the docs trains")
        elif missing:
            checked.append((where, command, f"reads {missing[0]}, which only a checked command trains"))
        elif name == "compare" and ns.aa:
            checked.append((where, command, "--aa needs 4 finished seeds"))
        else:
            kept.append((where, command, name, args))
    return kept, checked, trained, orphans


def _models_used(trained: dict, runs: list) -> dict:
    """Per experiment: its first model, and every model a doc command reads (run folders,
    exports, --baseline), as far as the config trains it."""
    used = {exp: [models[0]] for exp, models in trained.items()}
    for _, _, name, args in runs:
        for i, arg in enumerate(args):
            exp = _experiment_of(arg)
            parts = Path(arg).parts
            model = None
            if exp and len(parts) >= 3 and parts[1] != "export":
                model = parts[2]
            elif exp and len(parts) >= 3:
                model = parts[2].split("-")[1]
            elif i and args[i - 1] == "--baseline":
                model = arg
                exp = next((e for e in trained if model in trained[e] and
                            any(_experiment_of(a) == e for a in args)), None)
            if exp in used and model in trained[exp] and model not in used[exp]:
                used[exp].append(model)
    return used


ORDER = {"train": 0, "compare": 1, "export": 2, "predict": 4}


def _tiny(name: str, args: list, used: dict, sample: Path) -> list:
    """The command's arguments with the repository's paths made absolute and tiny settings appended
    (``sample``: a smaller copy of the embedded sample for the configs that train on it)."""
    from ba_net.config import load_config

    args = [str(REPO / a) if a.split("/")[0] in ("experiments", "data", "tools") else a for a in args]
    if name == "train" and "-c" in args:
        ns = parse_tool("train", args)
        cfg = load_config(ns.config, tuple(ns.override))
        warmup = ["-o", "schedule.warmup_epochs=0"] if cfg["schedule"]["warmup_epochs"] >= 1 else []
        data = ["-o", f"data.data_file={sample}"] if cfg["data"].get("data_file") else []
        held = ["-o", f"data.val_split={TINY_VAL_SPLIT}"] if cfg["data"]["val_split"] else []
        return args + TINY_TRAIN + warmup + data + held + ["-o", f"models=[{','.join(used[cfg['experiment']])}]"]
    if name == "compare":
        return args + ["--no-throughput"]
    if name == "export":
        return args + ([] if "--verify" in args else ["--parity-images", "8", "--force"])
    if name == "predict":
        return args + ["--show", "0", "--force"] + (["--limit", "8"] if "--test-split" in args else [])
    return args


@pytest.fixture(scope="module")
def photos(module_tmp):
    """A working folder with photos/: three test images of the embedded sample as PNG files and a
    file that is not an image, and sample/: a smaller copy of the embedded sample (removed when the
    module is done: the runs take ~1 GB)."""
    import cv2

    from ba_net.data import read_cifar10

    root = module_tmp("docs")
    images, _ = read_cifar10(REPO / "data" / "cifar-10-sample.tar.gz", "test")
    (root / "photos").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "photos" / f"{i}.png"), np.ascontiguousarray(images[i][..., ::-1]))
    (root / "photos" / "notes.txt").write_text("not an image")
    (root / "sample").mkdir()  # the embedded sample's first 500 train / 32 test images (every class): short evaluations
    small_cifar10(REPO / "data" / "cifar-10-sample.tar.gz", root / "sample" / "cifar-10-python.tar.gz", n_train=500,
                  n_test=32)
    for name in ("data", "experiments", "tools"):  # relative paths of the commands, as in the repository
        (root / name).symlink_to(REPO / name)
    (root / ".venv").symlink_to(Path(sys.prefix))  # .venv/bin/python: the interpreter running the tests
    return root


@pytest.mark.slow
def test_doc_commands_run_with_tiny_settings(photos, monkeypatch, capsys):
    """Every runnable doc command, in a folder of its own: training first, then compare, export,
    --verify, predict; each must exit 0."""
    runs, checked, trained, orphans = plan_runs()
    assert not orphans, "\n".join(orphans)
    used = _models_used(trained, runs)
    monkeypatch.chdir(photos)
    order = sorted(runs, key=lambda r: (ORDER[r[2]] + ("--verify" in r[3]), COMMANDS.index(
        next(c for c in COMMANDS if c[0] == r[0] and c[1] == r[1]))))
    failed, times, done = [], [], set()
    env = dict(os.environ, PATH=f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    for where, command, tokens in COMMANDS:  # python -c snippets first (they make files, e.g. an image)
        if _snippet(tokens) and command not in ELSEWHERE and command not in NOT_RUN:
            proc = subprocess.run(["bash", "-c", command], cwd=photos, env=env, capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode:
                failed.append(f"{where}: {command}\n    exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    for where, command, name, args in order:
        if (name, tuple(args)) in done:  # shown on several pages, or as .venv/bin/python: once is enough
            continue
        done.add((name, tuple(args)))
        argv = _tiny(name, args, used, photos / "sample" / "cifar-10-python.tar.gz")
        start = time.perf_counter()
        code = tool_main(name, argv)
        times.append((time.perf_counter() - start, command))
        out = capsys.readouterr()
        if code != 0:
            failed.append(f"{where}: {command}\n    ran: {name} {shlex.join(argv)}\n    exit {code}: "
                          f"{(out.err.strip().splitlines() or [''])[-1]}")
    assert not failed, "doc commands that failed:\n" + "\n".join(failed)
    ran = {r[1] for r in runs}
    for where, command, tokens in COMMANDS:
        if tokens[0] == "visualdl":  # its log folder holds the runs' VisualDL logs
            logdir = _check_visualdl(tokens[1:])["logdir"][0]
            assert list((photos / logdir).rglob("vdl/*")), f"{where}: {command}: no VisualDL log under {logdir}"
    with capsys.disabled():
        print(f"\n{len(ran)} doc commands ran, {len(checked)} checked only:")
        for where, command, why in checked:
            print(f"  {where}: {command}  -- {why}")
        for seconds, command in times:
            print(f"  {seconds:5.1f} s  {command}")


def test_activating_the_environment_gives_ba_net():
    activate = REPO / ".venv" / "bin" / "activate"
    if not activate.is_file():
        pytest.skip("no .venv here (make creates it)")
    proc = subprocess.run(["bash", "-c", ". .venv/bin/activate && python -c 'import sys, ba_net; print(sys.prefix)'"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(REPO / ".venv")
