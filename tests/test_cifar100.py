"""CIFAR-100 (``data.dataset: cifar100``) on a small synthetic tarball in the real format
(cifar-100-python/train, /test, /meta; fine labels; 100 classes): reading, the lookup order, the
md5-checked download from a local HTTP server on 127.0.0.1, a tiny ResNet-20 training run whose
model has 100 outputs and whose history and compare name the CIFAR-100 classes, and the config
refusing an unknown data set. Nothing here touches the network beyond 127.0.0.1 or the real
Paddle cache."""
import csv
import hashlib
import http.server
import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import paddle
import pytest

from ba_net import data as D
from ba_net.data import sources
from ba_net.train import engine
from ba_net.runs import folder as runs
from ba_net.config import load_config
from ba_net.errors import ConfigError, DataError
from helpers import read_history, tiny_config, tool_main, write_cifar100_tarball

NAME = "cifar-100-python.tar.gz"
# names in the style of the real fine_label_names (apple, aquarium_fish, ...), all distinct
NAMES = [f"fine_{i:02d}_{w}" for i, w in enumerate(["apple", "aquarium_fish", "baby", "bear"] * 25)]


def _split(rng, n):
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 100


@pytest.fixture(scope="module")
def synthetic(module_tmp):
    """(path, train, test): 200 training images (2 per class) and 100 test images (1 per class)."""
    rng = np.random.default_rng(0)
    train, test = _split(rng, 200), _split(rng, 100)
    path = write_cifar100_tarball(module_tmp("c100") / NAME, train, test, NAMES)
    return path, train, test


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No BA_NET_CIFAR100, Paddle's cache redirected to an empty folder; returns CIFAR-100's cache path."""
    monkeypatch.delenv("BA_NET_CIFAR100", raising=False)
    cache = tmp_path / "home" / ".cache" / "paddle" / "dataset" / "cifar" / "cifar-10-python.tar.gz"
    monkeypatch.setattr(sources, "paddle_cache_path", lambda: cache)
    return cache.with_name(NAME)


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text.strip() == text, repr(text)
    return text


# ------------------------------------------------------------------------------- reading

def test_reads_fine_labels_and_names_from_meta(synthetic):
    path, train, test = synthetic
    ds = D.dataset("cifar100")
    assert ds.num_classes == 100 and ds.tarball == NAME and ds.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert ds.url == "https://dataset.bj.bcebos.com/cifar/cifar-100-python.tar.gz"
    for split, (images, labels) in (("train", train), ("test", test)):
        got_images, got_labels = D.read_split(ds, path, split)
        assert got_images.shape == (len(images), 32, 32, 3) and got_images.dtype == np.uint8
        assert np.array_equal(got_images, images)  # [N, 3072] channel-planar -> HWC, as CIFAR-10
        assert got_labels.dtype == np.int64 and np.array_equal(got_labels, labels)  # fine, not coarse
    assert D.read_class_names(ds, path) == tuple(NAMES)
    assert D.read_class_names(D.dataset("cifar10")) == D.CIFAR10_CLASSES  # CIFAR-10's are fixed


def test_missing_meta_or_cifar10_file_is_one_line(synthetic, tmp_path, cifar_subset):
    _, train, test = synthetic
    no_meta = write_cifar100_tarball(tmp_path / NAME, train, test, meta=False)
    with pytest.raises(DataError) as exc:
        D.read_class_names(D.dataset("cifar100"), no_meta)
    assert "lacks the CIFAR-100 members meta" in _one_line(exc)
    with pytest.raises(DataError) as exc:  # the CIFAR-10 tarball given for CIFAR-100
        D.read_split(D.dataset("cifar100"), cifar_subset, "train")
    assert "lacks the CIFAR-100 members train" in _one_line(exc) and NAME in str(exc.value)


# ------------------------------------------------------------------------------- lookup order

def test_lookup_order_data_file_then_env_then_cache(synthetic, tmp_path, no_local_data, monkeypatch):
    path, _, _ = synthetic
    ds = D.dataset("cifar100")
    other = tmp_path / "other.tar.gz"
    other.write_bytes(path.read_bytes())
    monkeypatch.setenv("BA_NET_CIFAR10", "/nonexistent-cifar10.tar.gz")  # CIFAR-10's variable: not looked at
    no_local_data.parent.mkdir(parents=True)
    no_local_data.write_bytes(path.read_bytes())
    assert D.locate(ds, download=False) == no_local_data  # Paddle's cache, beside CIFAR-10's
    monkeypatch.setenv("BA_NET_CIFAR100", str(other))
    assert D.locate(ds, download=False) == other  # the variable before the cache
    assert D.locate(ds, str(path), download=False) == path  # data.data_file before both
    monkeypatch.setenv("BA_NET_CIFAR100", str(tmp_path / "missing.tar.gz"))
    with pytest.raises(DataError) as exc:
        D.locate(ds)
    assert _one_line(exc).startswith("BA_NET_CIFAR100 points to")


def test_nothing_local_and_no_download_names_every_fix(no_local_data):
    with pytest.raises(DataError) as exc:
        D.locate(D.dataset("cifar100"), download=False)
    text = _one_line(exc)
    for fix in ("CIFAR-100 not found", "-o data.data_file=PATH", "export BA_NET_CIFAR100=PATH",
                f"place {NAME} at {no_local_data}", "cifar-100-python.tar.gz)"):
        assert fix in text, (fix, text)


# ------------------------------------------------------------------------------- download

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(synthetic):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads, srv.body, srv.requests = True, synthetic[0].read_bytes(), []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/cifar/{NAME}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _mirror(monkeypatch, url, md5):
    """CIFAR-100's description pointing at ``url`` with ``md5`` (what load_splits looks up)."""
    monkeypatch.setitem(D.DATASETS, "cifar100", replace(D.DATASETS["cifar100"], url=url, md5=md5))


def test_download_into_the_cache_md5_checked(synthetic, server, no_local_data, monkeypatch):
    path, _, test = synthetic
    _mirror(monkeypatch, server.url, hashlib.md5(path.read_bytes()).hexdigest())
    splits = D.load_splits({"dataset": "cifar100", "data_file": None, "download_url": None, "val_split": 100})
    assert server.requests == [f"/cifar/{NAME}"] and no_local_data.read_bytes() == path.read_bytes()
    assert splits["classes"] == tuple(NAMES)
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [100, 100, 100]
    assert sorted(splits["val"][1].tolist()) == list(range(100))  # stratified over the 100 fine classes
    assert np.array_equal(splits["test"][1], test[1])
    assert D.locate(D.dataset("cifar100")) == no_local_data and len(server.requests) == 1  # cached now


def test_download_with_a_wrong_md5_fails_in_one_line_and_keeps_nothing(server, no_local_data, monkeypatch):
    _mirror(monkeypatch, server.url, "0" * 32)
    with pytest.raises(DataError) as exc:
        D.locate(D.dataset("cifar100"))
    text = _one_line(exc)
    assert "not the expected 00000000000000000000000000000000" in text and "BA_NET_CIFAR100" in text
    assert not no_local_data.parent.exists() or not any(no_local_data.parent.iterdir())


def test_official_md5_is_the_one_checked(server, no_local_data, monkeypatch):
    """Without the monkeypatched md5 the synthetic file is refused: the official one is checked."""
    monkeypatch.setitem(D.DATASETS, "cifar100", replace(D.DATASETS["cifar100"], url=server.url))
    with pytest.raises(DataError, match="not the expected eb9058c3a382ffc7106e4002c42a8d85"):
        D.locate(D.dataset("cifar100"))


# ------------------------------------------------------------------------------- config

def test_config_refuses_an_unknown_dataset_in_one_line():
    assert load_config(None)["data"]["dataset"] == "cifar10"
    assert load_config(None, ("data.dataset=cifar100",))["data"]["dataset"] == "cifar100"
    with pytest.raises(ConfigError) as exc:
        load_config(None, ("data.dataset=imagenet",))
    text = _one_line(exc)
    assert "data.dataset" in text and "imagenet" in text and "cifar10, cifar100" in text
    with pytest.raises(ConfigError) as exc:
        D.dataset("svhn")
    assert "choose from cifar10, cifar100" in _one_line(exc)


def test_the_ablation_config_is_the_cifar10_one_on_cifar100():
    repo = Path(__file__).resolve().parents[1] / "experiments"
    c100 = load_config(repo / "cifar100_resnet_ablation.yaml")
    c10 = load_config(repo / "cifar10_resnet_ablation.yaml")
    assert c100["data"]["dataset"] == "cifar100" and c100["data"]["val_split"] == 5000
    for key in ("models", "seeds", "model_kwargs", "train", "optimizer", "schedule", "loss"):
        assert c100[key] == c10[key], key
    assert {**c100["data"], "dataset": "cifar10"} == c10["data"]
    D.check_models_fit(c100)


# ------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def trained(module_tmp, synthetic):
    """A finished ResNet-20 run on the synthetic CIFAR-100 (cifar preset, the fast path)."""
    tmp = module_tmp("train100")
    cfg = load_config(None, base=tiny_config(
        tmp, synthetic[0], models=["resnet20"], data={"dataset": "cifar100", "transforms": "cifar"},
        train={"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2}, optimizer={"lr": 0.05}))
    summaries = engine.run_experiment(cfg)
    return cfg, summaries, runs.run_folder(cfg, "resnet20", 0).root


def test_training_builds_100_outputs_and_records_the_names(trained):
    cfg, summaries, folder = trained
    assert summaries[0]["status"] == "finished"
    weights = paddle.load(str(folder / "final.pdparams"))
    matrices = [v.shape for v in weights.values() if len(v.shape) == 2]
    assert matrices == [[64, 100]], matrices  # the classifier: 64 features -> 100 fine classes
    h = read_history(folder)
    assert h["classes"] == NAMES
    assert load_config(folder / "config.yaml")["data"]["dataset"] == "cifar100"
    assert "training path: fast" in (folder / "train.log").read_text()  # the static program has 100 outputs too


def test_mixup_targets_have_100_classes(tmp_path, synthetic):
    cfg = load_config(None, base=tiny_config(
        tmp_path, synthetic[0], models=["resnet20"], train={"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2,
                                                            "path": "dygraph"},
        data={"dataset": "cifar100", "transforms": "cifar", "mixup_alpha": 0.2}))
    assert engine.run_experiment(cfg)[0]["status"] == "finished"
    assert np.isfinite(read_history(runs.run_folder(cfg, "resnet20", 0).root)["epochs"][0]["train_loss"])


def test_compare_shows_the_cifar100_names(trained, tmp_path):
    from ba_net.report.compare import compare_experiment

    cfg, _, _ = trained
    summary = compare_experiment(Path(cfg["output_dir"]) / cfg["experiment"], tmp_path, throughput=None,
                                 complexity=False, device="cpu")
    assert summary["per_class"]["classes"] == NAMES
    assert len(summary["predictions"]["resnet20"]["confusion"]) == 100
    with open(tmp_path / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == NAMES
    assert (tmp_path / "confusion.png").is_file() and (tmp_path / "predictions.png").is_file()
    assert json.loads((tmp_path / "comparison.json").read_text())["per_class"]["classes"] == NAMES


def test_export_spec_lists_the_cifar100_names(trained):
    from ba_net.deploy.export import build_run_model, run_spec
    from ba_net.runs.results import open_run

    _, _, folder = trained
    run = open_run(folder)
    model, weights = build_run_model(run, "final")
    spec = run_spec(run, "final", model, weights)
    assert spec["num_classes"] == 100 and spec["classes"] == NAMES


def test_export_checks_parity_on_the_runs_cifar100_test_split(trained, synthetic, tmp_path):
    """The parity batch comes from the run's own CIFAR-100 tarball (its test member is ``test``,
    not CIFAR-10's ``test_batch``); a --data-file that is not a file is one line, nothing written."""
    from ba_net.errors import DataError
    from ba_net.deploy.export import export_run

    _, _, folder = trained
    spec = export_run(folder, "final", tmp_path / "export", parity_images=16)
    assert spec["parity"]["passed"] and spec["parity"]["data_file"] == str(synthetic[0])
    assert spec["parity"]["images"] == 16 and spec["dataset"] == "cifar100"
    with pytest.raises(DataError, match="--data-file .* is not a file"):
        export_run(folder, "final", tmp_path / "export2", data_file=str(tmp_path / "missing.tar.gz"))
    assert not (tmp_path / "export2").exists()


def test_predict_names_the_cifar100_classes(trained, synthetic, tmp_path):
    _, _, folder = trained
    out = tmp_path / "predictions.csv"
    argv = ["-m", str(folder), "--test-split", "--limit", "7", "--out", str(tmp_path), "--show", "0"]
    assert tool_main("predict", argv) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["true_class"] for r in rows] == NAMES[:7]  # the run's own tarball, its fine labels and names
    assert all(r["top1_class"] == NAMES[int(r["top1_index"])] for r in rows)
