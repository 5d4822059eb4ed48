"""Crash safety: a real training SIGKILLed at random moments loses nothing, and a non-finite loss
fails the run but keeps the last good checkpoint.

The crash test kills tools/train.py at seeded random moments (5 kills; 20 with BA_NET_SOAK=1;
BA_NET_CRASH_SEED picks other moments), checks after every kill that each file left in the run
folder loads, continues the way the engine asks (--resume when a state was saved, a plain rerun
otherwise), and requires the history and weights of an uninterrupted run, bit for bit.
The killed attempts are fresh interpreters (tools/train.py as a user starts it); the one plain
rerun that must be refused and the last, uninterrupted attempt are about the tool's answer and run
forked from tests/tool_server.py (helpers.forked_tool).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml

from ba_net.train import engine
from ba_net.files import is_temp_file
from ba_net.config import load_config
from helpers import REPO, forked_tool, read_history, small_cifar10, strip_times, tool_env, tool_main, tree_snapshot

SOAK = os.environ.get("BA_NET_SOAK") == "1"
KILLS = 20 if SOAK else 5
SEED = int(os.environ.get("BA_NET_CRASH_SEED", "20260607"))
EPOCHS = 3
REAL_FILES = {"config.yaml", "history.json", "train.log", "vdl/vdlrecords.run.log", "best.pdparams", "best.pdopt",
              "final.pdparams", "final.pdopt"}


@pytest.fixture(scope="module")
def small_data(module_tmp, cifar_subset):
    """80 train / 16 test images of the subset (2 steps of 8 per epoch): training and evaluation
    stay short, so kills land often in the writes of checkpoints, state and history."""
    return small_cifar10(cifar_subset, module_tmp("data") / "cifar-10-python.tar.gz", n_train=80, n_test=16)


def _write_config(file, data, out, model="alexnet", **train):
    """AlexNet for the kills (its ~90 MB checkpoints widen the writes kills land in); ResNet-20 at
    32 px (1 MB checkpoints) for the poisoned losses, which are not about the size of the writes."""
    data_cfg = {"data_file": str(data), "num_workers": 0, **({"transforms": "cifar"} if model == "resnet20" else {})}
    cfg = {"experiment": "crash", "models": [model], "seeds": [0], "output_dir": str(out), "device": "cpu",
           "data": data_cfg,
           "train": {"epochs": EPOCHS, "batch_size": 8, "max_steps_per_epoch": 2, "log_every": 1, **train}}
    file.write_text(yaml.safe_dump(cfg))
    return file


class _Trainer:
    """tools/train.py in a session of its own; each attempt's output goes to its own log file."""

    def __init__(self, config: Path, logs: Path):
        self.config, self.logs, self.attempts = config, logs, 0
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, flags):
        self.attempts += 1
        self.log = self.logs / f"attempt{self.attempts:02d}.log"
        env = tool_env()
        with open(self.log, "wb") as out:
            return subprocess.Popen([sys.executable, "tools/train.py", "-c", str(self.config), *flags], cwd=REPO,
                                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def run(self, flags, watch: Path, timeout=600):
        """Run to the end; returns its seconds, and those until ``watch`` appeared."""
        t0 = time.monotonic()
        proc, started = self.start(flags), None
        while proc.poll() is None:
            if started is None and watch.exists():
                started = time.monotonic() - t0
            assert time.monotonic() - t0 < timeout, f"tools/train.py {' '.join(flags)} timed out"
            time.sleep(0.005)
        assert proc.returncode == 0, f"tools/train.py {' '.join(flags)} exited {proc.returncode}:\n{self.output()}"
        assert started is not None, f"{watch} never appeared"
        return time.monotonic() - t0, started

    def output(self):
        return self.log.read_text(errors="replace")[-3000:]


def _plain(obj):
    """A paddle.load result with tensors as numpy arrays, for exact comparison."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, paddle.Tensor):
        return obj.numpy()
    return obj


def _assert_same(a, b, where):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _check_files(run: Path, model_keys: set) -> list:
    """Every file in the run folder loads; anything unknown fails. Returns the temporary files
    found (hidden '.<name>.*.tmp' files of atomic writes cut short: never read, only removed)."""
    temps = []
    for path in sorted(run.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(run).as_posix()
        if is_temp_file(path):
            temps.append(rel)
            continue
        if rel in ("train.log", "vdl/vdlrecords.run.log"):  # append-only logs (VisualDL's rebuilt on resume)
            path.read_bytes()
        elif rel == "config.yaml":
            load_config(path)
        elif path.suffix == ".json":
            assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict), rel
        elif path.suffix in (".pdparams", ".pdopt"):
            state = paddle.load(str(path))
            assert isinstance(state, dict) and state, rel
            if path.suffix == ".pdparams":
                assert set(state) == model_keys, rel
        else:
            pytest.fail(f"unexpected file {rel} in the run folder")
        assert rel in REAL_FILES or rel in ("state.json",) or rel.startswith("checkpoint/epoch"), rel
    if (run / "state.json").exists():
        state = json.loads((run / "state.json").read_text())
        assert (run / state["params"]).is_file() and (run / state["opt"]).is_file(), state
        assert len(state["history"]["epochs"]) == state["epoch"]
    if (run / "history.json").exists():
        history = read_history(run)
        assert history["status"] in ("running", "finished"), history["status"]
        if history["status"] == "finished":
            assert (run / "final.pdparams").is_file() and (run / "final.pdopt").is_file()
    return temps


def _listing(run: Path) -> set:
    """(path, size, mtime) of the run's files other than the logs, taken while the run writes."""
    out = set()
    try:
        for p in run.rglob("*"):
            if p.name not in ("train.log", "vdlrecords.run.log"):
                st = p.stat()
                out.add((p.as_posix(), st.st_size, st.st_mtime_ns))
    except FileNotFoundError:  # renamed or removed meanwhile: a change all the same
        out.add(("(moving)", 0, time.monotonic_ns()))
    return out


def _next_flags(run: Path) -> list:
    """What the engine asks for: a run with a saved state continues with --resume, anything else
    (nothing written yet, stopped in its first epoch, finished) is run again as it is."""
    if not (run / "history.json").exists() or not (run / "state.json").exists():
        return []
    return [] if read_history(run)["status"] == "finished" else ["--resume"]


def _epochs_done(run: Path) -> int:
    if (run / "history.json").exists() and read_history(run)["status"] == "finished":
        return EPOCHS
    if (run / "state.json").exists():
        return json.loads((run / "state.json").read_text())["epoch"]
    return 0


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path, small_data):
    ref = _Trainer(_write_config(tmp_path / "ref.yaml", small_data, tmp_path / "ref"), tmp_path / "logs_ref")
    ref_run = tmp_path / "ref" / "crash" / "alexnet" / "seed0"
    # start-up: until the run's history.json is written (imports, planning, clean-up of the run
    # folder, the model and its resume state, the fast path's trace, config.yaml, history.json)
    total, startup = ref.run([], watch=ref_run / "history.json")
    model_keys = set(paddle.load(str(ref_run / "final.pdparams")))

    config = _write_config(tmp_path / "crash.yaml", small_data, tmp_path / "crash")
    trainer = _Trainer(config, tmp_path / "logs")
    run = tmp_path / "crash" / "crash" / "alexnet" / "seed0"
    rng = random.Random(SEED)
    kills, temps_seen, journal, asked_to_resume = 0, 0, [], False
    while True:
        flags = _next_flags(run) if not journal or journal[-1][1] != "finished early" else ["--force"]
        if kills >= KILLS:
            proc = forked_tool(["tools/train.py", "-c", str(config), *flags])
            assert proc.returncode == 0, f"the last attempt {flags} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
            journal.append((flags, "completed"))
            break
        # The moment: within what this attempt needs (start-up plus its share of the remaining
        # epochs, one more for reading data and building the model); one kill in five during the start-up (planning, clean-up, history rewritten),
        # two in five right as the n-th change to the run's files is seen (a file appears or
        # grows: writes take a few hundredths of a second, random moments alone rarely hit them).
        remaining = max(EPOCHS - _epochs_done(run), 0.5)
        end = min(total, startup + (total - startup) * (remaining + 1) / EPOCHS)
        kind = rng.choice(["start-up", "write", "write", "moment", "moment"])
        moment = {"start-up": rng.uniform(0.05, startup), "write": end}.get(kind, rng.uniform(startup, end))
        nth_write = rng.randint(1, 4 * int(remaining + 1))
        proc = trainer.start(flags)
        t0, writes, listing = time.monotonic(), 0, _listing(run)
        while proc.poll() is None and time.monotonic() - t0 < moment:
            if kind == "write":
                now = _listing(run)
                writes, listing = writes + (now != listing), now
                if writes >= nth_write:
                    break
            time.sleep(0.001 if kind == "write" else 0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            when = f"{time.monotonic() - t0:.2f}s" + (f" (change {writes})" if kind == "write" else "")
            context = f"kill {kills} at {when} of attempt {trainer.attempts} {flags} (BA_NET_CRASH_SEED={SEED})"
            try:
                temps = _check_files(run, model_keys)
            except Exception as exc:  # name the kill that broke it
                raise AssertionError(f"after {context}: {exc}\n{trainer.output()}") from exc
            temps_seen += len(temps)
            journal.append((flags, f"{kind} kill at {when}, epochs done {_epochs_done(run)}, temp files {temps}"))
            if _next_flags(run) == ["--resume"] and not asked_to_resume:
                # once: a plain rerun is refused with the advice the test then follows, nothing changed
                before = tree_snapshot(run)
                proc = forked_tool(["tools/train.py", "-c", str(config)])
                assert proc.returncode == 2, proc.stdout + proc.stderr
                assert "rerun with --resume to continue it" in proc.stderr, proc.stderr
                assert tree_snapshot(run) == before
                asked_to_resume = True
                journal.append(([], "refused: rerun with --resume"))
            continue
        assert proc.returncode == 0, f"attempt {trainer.attempts} {flags} exited {proc.returncode}:\n{trainer.output()}"
        journal.append((flags, "finished early"))  # the kill came too late: rerun with --force, kill again
    summary = "\n".join(f"  attempt {i}: {' '.join(f) or '(plain)'}: {what}" for i, (f, what) in enumerate(journal, 1))
    print(f"\ncrash test (seed {SEED}): {kills} kills survived / {kills} tried, {temps_seen} temp files seen; "
          f"uninterrupted run {total:.1f}s, start-up {startup:.1f}s\n{summary}")

    assert _check_files(run, model_keys) == []  # temp files left by kills are gone
    files = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert files == REAL_FILES
    assert strip_times(read_history(run)) == strip_times(read_history(ref_run))
    for name in ("final.pdparams", "final.pdopt", "best.pdparams", "best.pdopt"):
        _assert_same(_plain(paddle.load(str(ref_run / name))), _plain(paddle.load(str(run / name))), name)


# ------------------------------------------------------------------------------ non-finite loss

def _poison_epoch_2(monkeypatch, where):
    """From epoch 2 on, a NaN train loss (where='train': the loss the training step computes,
    on the dygraph and on the fast path), or a NaN validation loss ('val')."""
    if where == "train":
        train_epoch = engine.train_epoch
        nan = float("nan")

        def poisoned(model, loader, loss_fn, *args, epoch, step_fn=None, **kw):
            if epoch >= 2 and step_fn is not None:
                fast_step = step_fn

                def step_fn(images, target):
                    logits, loss = fast_step(images, target)
                    return logits, loss * nan
            elif epoch >= 2:
                real_loss = loss_fn

                def loss_fn(logits, target):
                    return real_loss(logits, target) * nan
            return train_epoch(model, loader, loss_fn, *args, epoch=epoch, step_fn=step_fn, **kw)

        monkeypatch.setattr(engine, "train_epoch", poisoned)
    else:
        evaluate, calls = engine.evaluate, []

        def poisoned(*args, **kw):
            calls.append(1)
            loss, acc = evaluate(*args, **kw)
            return (float("nan") if len(calls) >= 2 else loss), acc

        monkeypatch.setattr(engine, "evaluate", poisoned)


@pytest.mark.parametrize("where, train_path", [("train", "fast"), ("train", "dygraph"), ("val", "fast")])
def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path, small_data, monkeypatch,
                                                                          capsys, where, train_path):
    config = _write_config(tmp_path / "nan.yaml", small_data, tmp_path / "out", "resnet20", epochs=3, path=train_path)
    run = tmp_path / "out" / "crash" / "resnet20" / "seed0"
    _poison_epoch_2(monkeypatch, where)
    assert tool_main("train", ["-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "run resnet20 seed 0 failed" in err and "Traceback" not in err
    assert "rerun with --force and a lower optimizer.lr (e.g. -o optimizer.lr=1e-05)" in err

    h = read_history(run)
    expected = "non-finite loss nan at epoch 2" if where == "train" else "non-finite validation loss nan at epoch 2"
    assert h["status"] == "failed" and expected in h["reason"], h["reason"]
    assert [e["epoch"] for e in h["epochs"]] == [1]
    assert expected in (run / "train.log").read_text()
    # the last good checkpoint: epoch 1's state and best weights, finite and loadable
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1 and state["history"]["status"] == "running"
    weights = paddle.load(str(run / state["params"]))
    paddle.load(str(run / state["opt"]))
    best = paddle.load(str(run / "best.pdparams"))
    for k, v in weights.items():
        assert np.isfinite(v.numpy()).all(), k
        np.testing.assert_array_equal(v.numpy(), best[k].numpy())  # epoch 1 was the best so far
    assert not (run / "final.pdparams").exists()

    # running it again, with or without --resume: told that resuming repeats the failure and what
    # helps instead (never --resume), one line, nothing touched
    monkeypatch.undo()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for extra in ([], ["--resume"]):
        assert tool_main("train", ["-c", str(config)] + extra) == 2
        err = capsys.readouterr().err
        assert f"failed ({expected}" in err and "resuming would repeat it" in err, err
        assert "rerun with --force and a lower learning rate (e.g. -o optimizer.lr=1e-05)" in err
        assert "--resume" not in err and len(err.strip().splitlines()) <= 2, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_huge_learning_rate_fails_with_a_non_zero_exit(tmp_path, small_data):
    # AlexNet: ResNet-20's BatchNorm keeps its loss finite (~60) at any learning rate
    config = _write_config(tmp_path / "lr.yaml", small_data, tmp_path / "out", epochs=2)
    proc = forked_tool(["tools/train.py", "-c", str(config), "-o", "optimizer.lr=1e30"], timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "run alexnet seed 0 failed" in out
    run = tmp_path / "out" / "crash" / "alexnet" / "seed0"
    h = read_history(run)
    assert h["status"] == "failed" and h["reason"].startswith("non-finite loss")
    assert h["reason"] in (run / "train.log").read_text()
    assert not (run / "state.json").exists()  # it failed in its first epoch: no checkpoint to keep
