"""Shared helpers for the tests: tiny configs and run-folder readers."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path, data_file, **sections):
    """A config dict for a run of a few iterations on the CIFAR-10 subset."""
    cfg = {
        "experiment": "tiny",
        "models": ["alexnet"],
        "seeds": [0],
        "output_dir": str(tmp_path / "out"),
        "data": {"data_file": str(data_file), "num_workers": 0, "transforms": "notebook"},
        "train": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 3, "log_every": 2},
        "optimizer": {"lr": 2e-4},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def read_history(folder):
    return json.loads((Path(folder) / "history.json").read_text())


def strip_times(history):
    h = json.loads(json.dumps(history))
    for e in h["epochs"]:
        e.pop("time_s")
    return h


def run_tool(args, env_extra=None, timeout=600, cwd=REPO):
    """Run a tools/ script in a fresh interpreter; returns CompletedProcess (text)."""
    env = {k: v for k, v in os.environ.items() if k != "BA_NET_CIFAR10"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
