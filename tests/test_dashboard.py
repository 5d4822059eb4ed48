"""VisualDL dashboards: a real server over the logs of a tiny ablation, queried over HTTP."""
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ba_net.train import engine
from ba_net.config import load_config
from helpers import tiny_config

EPOCH_TAGS = {"loss/train", "loss/val", "acc/train", "acc/val"}
ITER_TAGS = {"loss/train_iter", "lr"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port, path, **params):
    url = f"http://127.0.0.1:{port}/app/api/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read().decode())
    assert body["status"] == 0, body
    return body["data"]


@pytest.fixture(scope="module")
def dashboard(module_tmp, small_cifar):
    tmp = module_tmp("vdl")
    cfg = load_config(None, base=tiny_config(tmp, small_cifar, models=["resnet20", "ba_resnet20"],
                                             train={"epochs": 2, "max_steps_per_epoch": 2, "log_every": 1}))
    engine.run_experiment(cfg)
    port = _free_port()
    visualdl = Path(sys.executable).with_name("visualdl")
    server = subprocess.Popen([str(visualdl), "--logdir", cfg["output_dir"], "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                _get(port, "runs")
                break
            except (OSError, ValueError):
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError("visualdl did not start: " + (server.stdout.read() if server.poll() is not None else "timeout"))
                time.sleep(0.5)
        yield port, cfg
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_every_run_appears_with_its_scalar_tags(dashboard):
    port, cfg = dashboard
    runs = set(_get(port, "runs"))
    assert runs == {"tiny/resnet20/seed0", "tiny/ba_resnet20/seed0"}
    tags = _get(port, "tags")
    for run in runs:
        history = json.loads((Path(cfg["output_dir"]) / run / "history.json").read_text())
        val_acc = _get(port, "scalar/list", run=run, tag="acc/val")
        assert [step for _, step, _ in val_acc] == [1, 2]
        assert [v for _, _, v in val_acc] == pytest.approx([e["val_acc"] for e in history["epochs"]], rel=1e-6)
        lr = _get(port, "scalar/list", run=run, tag="lr")
        assert [step for _, step, _ in lr] == [1, 2, 3, 4]
        assert [v for _, _, v in lr] == pytest.approx([i["lr"] for i in history["iters"]], rel=1e-6)
        # tag keys are '<log folder>/<tag with / as %>'
        run_tags = {k.rsplit("/vdl/", 1)[1].replace("%", "/") for k, kind in tags.items()
                    if kind == "scalar" and f"/{run.split('/')[1]}/seed0/vdl/" in k}
        assert EPOCH_TAGS | ITER_TAGS <= run_tags, run_tags


def test_hparams_record_names_model_seed_and_final_metrics(dashboard):
    port, cfg = dashboard
    records = _get(port, "hparams/list")
    assert len(records) == 2
    by_model = {r["hparams"]["model"]: r for r in records}
    assert set(by_model) == {"resnet20", "ba_resnet20"}
    for model, record in by_model.items():
        history = json.loads((Path(cfg["output_dir"]) / "tiny" / model / "seed0" / "history.json").read_text())
        assert record["hparams"]["seed"] == 0 and record["hparams"]["lr"] == pytest.approx(2e-4)
        assert record["metrics"]["hparam/best_val_acc"] == pytest.approx(history["best_val_acc"], rel=1e-6)
        assert record["metrics"]["hparam/final_val_acc"] == pytest.approx(history["epochs"][-1]["val_acc"], rel=1e-6)
