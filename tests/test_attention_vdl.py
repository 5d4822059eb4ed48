"""Attention you can see: the per-epoch attention histograms and prediction grid reach the run's
VisualDL log (read back with VisualDL's own LogReader), match an independent computation, leave
training unchanged; tools/compare.py's attention_ba_vs_se.png."""
import io
import logging
from pathlib import Path

import numpy as np
import paddle
import pytest
from PIL import Image

from ba_net.attention.probe import probe
from ba_net.report import attention_figure
from ba_net.train import dashboard
from ba_net.train import engine
from ba_net.report import compare as report
from ba_net.runs import folder as runs
from ba_net import data as D
from ba_net.config import load_config
from ba_net.models import build_model
from helpers import read_history, strip_times, tiny_config

MODELS = ["ba_resnet20", "resnet20_se"]
BA_TAGS = {f"attention/layer{s}.{b}.attention" for s in (1, 2, 3) for b in (0, 1, 2)}
CHANNELS = {1: 16, 2: 32, 3: 64}  # ResNet-20's stages


def _config(tmp, data_file, models, out):
    return load_config(None, base=tiny_config(tmp, data_file, models=models, output_dir=str(out),
                                              data={"transforms": "cifar"},
                                              train={"epochs": 2, "max_steps_per_epoch": 2}))


@pytest.fixture(scope="module")
def trained(module_tmp, small_cifar):
    """ba_resnet20 and resnet20_se on the 200 / 64 image copy of the sample (the probe's fixed batch
    is the first 32 test images)."""
    tmp = module_tmp("attn")
    cfg = _config(tmp, small_cifar, MODELS, tmp / "out")
    engine.run_experiment(cfg)
    return cfg


def _reader(cfg, model):
    from visualdl import LogReader

    return LogReader(file_path=str(runs.run_folder(cfg, model, 0).vdl / "vdlrecords.run.log"))


def test_histograms_per_epoch_per_module(trained):
    reader = _reader(trained, "ba_resnet20")
    assert set(reader.get_tags()["histogram"]) == BA_TAGS
    for tag in BA_TAGS:
        records = reader.get_data("histogram", tag)
        assert [r.id for r in records] == [1, 2]  # one per epoch, step = epoch
        channels = CHANNELS[int(tag.split("layer")[1][0])]
        for r in records:
            hist, edges = list(r.histogram.hist), list(r.histogram.bin_edges)
            assert len(hist) == dashboard.HIST_BUCKETS and sum(hist) == dashboard.FIXED_IMAGES * channels
            assert 0.0 <= edges[0] <= edges[-1] <= 1.0  # sigmoid gates


def test_prediction_grid_in_every_log(trained):
    for model in MODELS:
        records = _reader(trained, model).get_data("image", dashboard.PREDICTION_TAG)
        assert [r.id for r in records] == [1, 2]
        image = np.asarray(Image.open(io.BytesIO(records[-1].image.encoded_image_string)))
        rows = -(-dashboard.GRID_IMAGES // dashboard.GRID_COLUMNS)
        assert image.shape == (rows * (dashboard.TILE + dashboard.CAPTION + 4),
                               dashboard.GRID_COLUMNS * dashboard.CELL_WIDTH, 3)
        assert image.std() > 10  # images drawn, not a blank canvas


def _gates_by_hand(cfg, model_name, weights):
    """The gates of every BridgeAttention of ``model_name`` with ``weights`` on the first 32 test
    images (the run validates on the test split), through post-hooks written here."""
    images, _ = D.read_cifar10(cfg["data"]["data_file"], "test")
    batch = np.stack([D.preset("cifar").eval(images[i]) for i in range(32)]).astype(np.float32)
    model = build_model(model_name, num_classes=10)
    model.set_state_dict(paddle.load(str(weights)))
    model.eval()
    out = {}
    for name, layer in model.named_sublayers():
        if type(layer).__name__ == "BridgeAttention":
            layer.register_forward_post_hook(
                lambda lyr, inputs, output, name=name: out.__setitem__(name, lyr.weights(*inputs).numpy()))
    with paddle.no_grad():
        model(paddle.to_tensor(batch))
    return out


def test_histogram_matches_an_independent_computation(trained):
    """The last epoch's histograms are those of final.pdparams on the first 32 test images."""
    folder = runs.run_folder(trained, "ba_resnet20", 0).root
    by_hand = _gates_by_hand(trained, "ba_resnet20", folder / "final.pdparams")
    assert {f"attention/{k}" for k in by_hand} == BA_TAGS
    reader = _reader(trained, "ba_resnet20")
    for name, gates in by_hand.items():
        logged = reader.get_data("histogram", f"attention/{name}")[-1].histogram
        hist, edges = np.histogram(gates.reshape(-1), bins=dashboard.HIST_BUCKETS)
        np.testing.assert_allclose(list(logged.bin_edges), edges, rtol=1e-5, atol=1e-6, err_msg=name)
        assert list(logged.hist) == hist.tolist(), name


def test_training_is_unchanged_by_the_logging(trained, tmp_path, small_cifar, monkeypatch):
    monkeypatch.setattr(dashboard, "log_probe", lambda *a, **k: None)
    cfg = _config(tmp_path, small_cifar, ["ba_resnet20"], tmp_path / "without")
    engine.run_experiment(cfg)
    without = runs.run_folder(cfg, "ba_resnet20", 0).root
    assert "histogram" not in _reader(cfg, "ba_resnet20").get_tags()  # the probe really was off
    with_probe = runs.run_folder(trained, "ba_resnet20", 0).root
    assert strip_times(read_history(with_probe)) == strip_times(read_history(without))
    ref = paddle.load(str(with_probe / "final.pdparams"))
    for k, v in paddle.load(str(without / "final.pdparams")).items():
        np.testing.assert_array_equal(v.numpy(), ref[k].numpy(), err_msg=k)


def test_compare_writes_the_ba_vs_se_figure(trained, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ba_net")
    experiment = Path(trained["output_dir"]) / trained["experiment"]
    report.compare_experiment(experiment, tmp_path, baseline="resnet20_se", throughput=None, complexity=False)
    figure = tmp_path / attention_figure.FIGURE_NAME
    assert figure.is_file() and Image.open(figure).size[0] > 600
    assert any("wrote attention_ba_vs_se.png (ba_resnet20 vs resnet20_se)" in r.getMessage() for r in caplog.records)


def test_compare_skips_the_figure_without_se(trained, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ba_net")
    groups = {m: rs for m, rs in report.by_model(report.collect_runs(Path(trained["output_dir"]) / "tiny"),
                                                   "ba_resnet20").items() if m != "resnet20_se"}
    test_split = D.read_cifar10(trained["data"]["data_file"], "test")
    written = attention_figure.write_ba_vs_se(groups, test_split, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("ba_net")]
    assert not written and not (tmp_path / attention_figure.FIGURE_NAME).exists()
    assert len(lines) == 1 and "not written" in lines[0] and "has ba_resnet20" in lines[0]


def test_per_module_gates_of_cbam_and_models_without_attention(tmp_path):
    """Every attention module is found (CBAM's two gates), the probe leaves train mode as it was;
    a model without attention logs the prediction grid and no histogram."""
    model = build_model("resnet20_cbam", num_classes=10)
    model.train()
    x = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    predicted, gates = probe(model, x)
    assert model.training and all(layer.training for layer in model.sublayers())
    assert predicted.shape == (4,)
    assert {k.rsplit(".", 1)[1] for k in gates} == {"channel_gate", "spatial_gate"} and len(gates) == 18
    assert probe(build_model("resnet20", num_classes=10), x)[1] == {}
    from visualdl import LogReader, LogWriter

    batch = dashboard.FixedBatch(np.zeros((4, 32, 32, 3), np.uint8), x, np.arange(4), tuple(D.CIFAR10_CLASSES))
    with LogWriter(logdir=str(tmp_path), file_name="vdlrecords.run.log") as writer:
        dashboard.log_probe(writer, build_model("resnet20", num_classes=10), batch, 1)
    tags = LogReader(file_path=str(tmp_path / "vdlrecords.run.log")).get_tags()
    assert "histogram" not in tags and tags["image"] == [dashboard.PREDICTION_TAG]
