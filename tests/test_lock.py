"""One writer per run folder: two real tools/train.py processes on one experiment never train the
same run at once; a lock left by a dead process is taken over, one held on another host is not."""
import json
import os
import socket
import subprocess
import sys
import time

import yaml

from ba_net.runs.lock import RunLock, holder, lock_path
from helpers import REPO, read_history, small_cifar10, tool_env


def _config(tmp_path, data, seeds, epochs=3):
    cfg = {"experiment": "locks", "models": ["alexnet"], "seeds": seeds, "output_dir": str(tmp_path / "out"),
           "device": "cpu", "data": {"data_file": str(data), "num_workers": 0},
           "train": {"epochs": epochs, "batch_size": 8, "max_steps_per_epoch": 2, "log_every": 1}}
    path = tmp_path / "locks.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(config, log):
    env = tool_env()
    return subprocess.Popen([sys.executable, "tools/train.py", "-c", str(config)], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_lock_is_exclusive_and_released(tmp_path):
    root = tmp_path / "exp" / "m" / "seed0"
    with RunLock(root) as first:
        assert first.acquired and lock_path(root).is_file()
        owner = json.loads(lock_path(root).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert holder(root) == owner
        with RunLock(root) as second:  # this very process holds it: alive, so not taken
            assert not second.acquired and second.owner == owner
    assert not lock_path(root).exists() and holder(root) is None


def test_dead_owner_is_taken_over_and_another_host_is_respected(tmp_path, caplog):
    root = tmp_path / "seed0"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(root).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start_ticks": 1}))
    assert holder(root) is None
    with RunLock(root) as lock:
        assert lock.acquired and json.loads(lock_path(root).read_text())["pid"] == os.getpid()
    assert f"took over the lock of pid {dead.pid}" in caplog.text
    # a live pid whose start time differs is a reused pid: its lock is stale too
    lock_path(root).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": -5}))
    assert holder(root) is None
    other = {"host": socket.gethostname() + "-elsewhere", "pid": 1, "start_ticks": None}
    lock_path(root).write_text(json.dumps(other))
    with RunLock(root) as lock:
        assert not lock.acquired and lock.owner == other and lock_path(root).exists()


def test_two_processes_never_train_the_same_run(tmp_path, cifar_subset):
    data = small_cifar10(cifar_subset, tmp_path / "cifar.tar.gz", n_train=200, n_test=64)
    config = _config(tmp_path, data, seeds=[0, 1])
    run0 = tmp_path / "out" / "locks" / "alexnet" / "seed0"
    with open(tmp_path / "a.log", "w") as log_a, open(tmp_path / "b.log", "w") as log_b:
        a = _start(config, log_a)
        deadline = time.time() + 300
        while not lock_path(run0).exists():  # A holds seed 0
            assert a.poll() is None and time.time() < deadline, (tmp_path / "a.log").read_text()
            time.sleep(0.05)
        b = _start(config, log_b)
        assert b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()
        assert a.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()
    out_a, out_b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    skipped = [line for line in out_b.splitlines() if "is being trained by another process" in line]
    assert len(skipped) == 1 and "seed 0" in skipped[0] and f"pid {a.pid} on {socket.gethostname()}" in skipped[0]
    # B trained seed 1 unless A got there first; either way each run was trained by one process only
    trained_by = {seed: [name for name, out in (("a", out_a), ("b", out_b))
                         if f"alexnet seed {seed}] epoch 1/3 " in out] for seed in (0, 1)}
    assert trained_by[0] == ["a"] and len(trained_by[1]) == 1, trained_by
    for seed in (0, 1):
        run = tmp_path / "out" / "locks" / "alexnet" / f"seed{seed}"
        h = read_history(run)
        assert h["status"] == "finished" and [e["epoch"] for e in h["epochs"]] == [1, 2, 3]
        assert (run / "train.log").read_text().count("epoch 1/3  train loss") == 1  # one writer, no interleaving
        assert not lock_path(run).exists()
