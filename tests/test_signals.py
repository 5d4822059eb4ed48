"""Ctrl-C and SIGTERM (docker stop, Slurm preemption, `timeout`) stop tools/train.py alike: one
line, exit 130 / 143, the run recorded as interrupted with its lock released, and --resume gives
exactly the run that was never stopped. Real processes, real signals; the runs that are not
signalled (the reference, the refused rerun, the resumed run) are about the tool's answer and run
in a child of the tool server (helpers.forked_tool)."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from helpers import REPO, forked_tool, strip_times, tool_env

RUN = ("quick", "resnet20", "seed0")


def _args(data, out):
    """tools/train.py's argv: 3 epochs of 8 steps. The signal is sent once epoch 1's checkpoint
    exists, so epochs 2 and 3 (16 steps and two evaluations, seconds on loaded cores) are the
    margin in which it must land mid-run."""
    return ["tools/train.py", "-c", "experiments/quick.yaml", "-o", f"data.data_file={data}",
            "-o", f"output_dir={out}", "-o", "models=[resnet20]", "-o", "seeds=[0]", "-o", "data.transforms=cifar",
            "-o", "train.epochs=3", "-o", "train.max_steps_per_epoch=8", "-o", "train.batch_size=8",
            "-o", "data.num_workers=0", "-o", "optimizer.name=momentum", "-o", "optimizer.lr=0.01"]


def _stopped_run(data, out, signum):
    """tools/train.py sent ``signum`` once the first epoch's checkpoint is saved. The child starts
    with SIGINT at its default whatever this process has: started with SIGINT ignored (pytest run
    with a trailing `&` from a non-interactive shell, as CI scripts may do), it would inherit
    SIG_IGN, Python would install no KeyboardInterrupt handler, and Ctrl-C would not stop it."""
    proc = subprocess.Popen([sys.executable] + _args(data, out), cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = out.joinpath(*RUN, "state.json")
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped: " + proc.stderr.read()[-2000:]
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.fixture(scope="module")
def straight(module_tmp, small_cifar):
    """The run never stopped, trained once for both signals."""
    out = module_tmp("straight")
    proc = forked_tool(_args(small_cifar, out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("signum,code,line", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                              (signal.SIGINT, 130, "interrupted")])
@pytest.mark.slow
def test_a_signal_stops_training_in_one_line_and_resume_gives_the_unstopped_run(tmp_path, small_cifar, straight,
                                                                                 signum, code, line):
    stopped = tmp_path / "stopped"
    returncode, stderr = _stopped_run(small_cifar, stopped, signum)
    assert returncode == code, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert line in last and "--resume" in last, last
    assert "Traceback" not in stderr and "Termination signal" not in stderr and "C++" not in stderr, stderr[-3000:]
    folder = stopped.joinpath(*RUN)
    history = json.loads((folder / "history.json").read_text())
    assert history["status"] == "interrupted" and history["reason"] == ("SIGTERM" if code == 143 else "Ctrl-C")
    assert not list(folder.parent.glob(".seed0.lock")), "the run lock was not released"
    assert len(history["epochs"]) >= 1 and (folder / "state.json").is_file()

    again = forked_tool(_args(small_cifar, stopped), timeout=600)
    assert again.returncode == 2 and "rerun with --resume" in again.stderr  # not silently restarted

    resumed = forked_tool(_args(small_cifar, stopped) + ["--resume"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    want = json.loads(straight.joinpath(*RUN, "history.json").read_text())
    got = json.loads(folder.joinpath("history.json").read_text())
    for h in (want, got):
        h.pop("device", None)
    assert strip_times(got) == strip_times(want)
    final = {k: paddle.load(str(p.joinpath(*RUN, "final.pdparams"))) for k, p in (("a", straight), ("b", stopped))}
    for name in final["a"]:
        np.testing.assert_array_equal(final["b"][name].numpy(), final["a"][name].numpy(), err_msg=name)
