"""tools/compare.py, ba_net.report.compare and ba_net.report.stats: statistics against textbook values and hand-worked
examples, tables, plots, run states, CLI."""
import csv
import json
import math
import re
import time
import warnings

import cv2
import matplotlib.image as mpimg
import numpy as np
import paddle
import pytest
import yaml
from matplotlib.collections import PolyCollection

from ba_net.report import plots
from ba_net.report import predictions as predict
from ba_net.report import tables
from ba_net.report import compare as R
from ba_net.report import stats as S
from ba_net.errors import ConfigError, RunStateError
from ba_net.runs.results import collect_runs
from ba_net.report.throughput import ThroughputSettings, forward_rate
from helpers import forked_tool, read_history, small_cifar10, tiny_config

# --------------------------------------------------------------------------- synthetic runs


def write_run(root, model, seed, val, train=None, status="finished", reason=None, planned=None):
    """A run folder with a history whose per-epoch val accuracies are ``val``."""
    folder = root / model / f"seed{seed}"
    folder.mkdir(parents=True)
    train = train or [v - 0.05 for v in val]
    epochs = [{"epoch": i + 1, "train_loss": 2.0 - 0.1 * i - v, "train_acc": t, "val_loss": 2.1 - 0.1 * i - v,
               "val_acc": v, "lr": 1e-4, "time_s": 1.5} for i, (v, t) in enumerate(zip(val, train))]
    best = max(val) if val else None
    history = {"experiment": root.name, "model": model, "seed": seed, "status": status, "reason": reason,
               "best_val_acc": best, "best_epoch": val.index(best) + 1 if val else None,
               "epochs_planned": planned or len(val), "world_size": 1, "device": "cpu", "epochs": epochs, "iters": []}
    (folder / "history.json").write_text(json.dumps(history))
    (folder / "config.yaml").write_text(yaml.safe_dump({"experiment": root.name, "models": [model], "seeds": [seed],
                                                        "model_kwargs": {}, "data": {"num_workers": 0}}))
    return folder


def experiment(tmp_path, best, name="exp"):
    """{model: {seed: best val acc}} -> an experiment folder (3 epochs, the best in the middle)."""
    root = tmp_path / name
    for model, seeds in best.items():
        for seed, b in seeds.items():
            write_run(root, model, seed, [b - 0.1, b, b - 0.02], train=[0.3, 0.4, 0.5 + b / 10])
    return root


def row(summary, model):
    return next(r for r in summary["rows"] if r["model"] == model)


BASE = {0: 0.71, 1: 0.74, 2: 0.69, 3: 0.73}
BA = {0: 0.72, 1: 0.752, 2: 0.70, 3: 0.741}  # tracks the baseline seed by seed: pairing matters


# ------------------------------------------------------------------------ the t distribution
# Reference values are independent of the code under test: textbook t quantiles, Student's
# closed-form two-sided tails for 1, 2 and 3 degrees of freedom, and examples computed by hand.

def _p_closed_form(t, df):
    """Two-sided p of Student's t in closed form (df 1: Cauchy; 2; 3)."""
    t = abs(t)
    if df == 1:
        return 1 - 2 / math.pi * math.atan(t)
    if df == 2:
        return 1 - t / math.sqrt(2 + t * t)
    theta = math.atan(t / math.sqrt(3))
    assert df == 3
    return 1 - 2 / math.pi * (theta + math.sin(theta) * math.cos(theta))


T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 10: 2.228139, 30: 2.042272}  # textbook tables


def test_t_quantiles_and_p_values_are_the_textbook_ones():
    for df, t in T975.items():
        assert S.t_quantile(0.975, df) == pytest.approx(t, abs=1e-6), df
        assert S.t_quantile(0.025, df) == pytest.approx(-t, abs=1e-6), df
        assert S.t_two_sided_p(t, df) == pytest.approx(0.05, abs=1e-7), df
    assert S.t_quantile(0.995, 4) == pytest.approx(4.604095, abs=1e-6) and S.t_quantile(0.5, 7) == 0.0
    for df in (1, 2, 3):
        for t in (0.0, 0.05, 0.7, 1.96, -2.5, 8.0, 60.0):
            assert S.t_two_sided_p(t, df) == pytest.approx(_p_closed_form(t, df), rel=1e-10, abs=1e-300), (t, df)
    with pytest.raises(ValueError):
        S.t_quantile(1.0, 3)


def test_paired_and_welch_by_hand_and_edge_cases():
    a, b = [0.72, 0.76, 0.695, 0.745], [0.71, 0.74, 0.69, 0.73]
    # by hand: differences 0.01, 0.02, 0.005, 0.015; mean 0.0125; squared deviations sum to 1.25e-4,
    # so s^2 = 1.25e-4 / 3, se = sqrt(s^2 / 4) and t = 0.0125 / se = sqrt(15); df 3
    se = math.sqrt(1.25e-4 / 3 / 4)
    p = S.paired_t(a, b)
    assert (p.method, p.df) == ("paired", 3)
    assert p.delta == pytest.approx(0.0125, rel=1e-12) and p.t == pytest.approx(math.sqrt(15), rel=1e-9)
    assert p.p_value == pytest.approx(_p_closed_form(math.sqrt(15), 3), rel=1e-9)
    assert p.ci95 == pytest.approx((0.0125 - T975[3] * se, 0.0125 + T975[3] * se), rel=1e-6)
    # Welch with equal n and variances: df = 2 (n - 1) = 2; delta 0.04, se^2 = 2 * 0.0008 / 2, t = sqrt(2)
    w = S.welch_t([0.70, 0.74], [0.66, 0.70])
    assert w.method == "welch" and w.df == pytest.approx(2.0, rel=1e-12) and w.t == pytest.approx(math.sqrt(2))
    assert w.p_value == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-9)
    assert w.ci95 == pytest.approx((0.04 - T975[2] * math.sqrt(0.0008), 0.04 + T975[2] * math.sqrt(0.0008)), rel=1e-6)
    # unequal sizes: the Welch-Satterthwaite df worked out in exact fractions is 89401 / 18755
    w = S.welch_t(a, b[:3])
    assert w.delta == pytest.approx(0.05 / 3, rel=1e-12) and w.df == pytest.approx(89401 / 18755, rel=1e-12)
    assert w.p_value == pytest.approx(0.452363, rel=1e-5)  # reference value at that df
    # degenerate cases: no interval, said why
    one = S.paired_t([0.8], [0.7])
    assert one.delta == pytest.approx(0.1) and one.ci95 is None and one.p_value is None and "one seed" in one.note
    flat = S.paired_t([0.8, 0.9], [0.7, 0.8])
    assert flat.ci95 is None and flat.p_value is None and "zero variance" in flat.note
    assert S.mean_std([0.5]) == (0.5, None) and S.mean_std([]) == (None, None)


# ---------------------------------------------------------------------------- the summary

def test_paired_summary_gives_exact_means_std_ci_and_p(tmp_path):
    root = experiment(tmp_path, {"alexnet": BASE, "ba_alexnet": BA})
    summary = R.summarize(collect_runs(root), "alexnet")
    assert [r["model"] for r in summary["rows"]] == ["alexnet", "ba_alexnet"]
    seeds = sorted(BASE)
    for model, best in (("alexnet", BASE), ("ba_alexnet", BA)):
        r = row(summary, model)
        values = np.array([best[s] for s in seeds])
        assert r["n_seeds"] == 4 and r["seeds"] == seeds and r["n_excluded"] == 0
        assert r["val_acc_best_mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert r["val_acc_best_std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert r["val_acc_final_mean"] == pytest.approx((values - 0.02).mean(), rel=1e-12)
        assert r["val_acc_final_std"] == pytest.approx((values - 0.02).std(ddof=1), rel=1e-9)
        assert r["train_acc_final_mean"] == pytest.approx((0.5 + values / 10).mean(), rel=1e-12)
        assert r["wall_time_s_mean"] == pytest.approx(4.5)
    ba = row(summary, "ba_alexnet")
    # by hand: differences 0.010, 0.012, 0.010, 0.011; mean 0.01075; squared deviations sum to
    # 2.75e-6, so se = sqrt(2.75e-6 / 3 / 4); df 3
    se = math.sqrt(2.75e-6 / 3 / 4)
    low, high = 0.01075 - T975[3] * se, 0.01075 + T975[3] * se
    assert ba["test"] == "paired" and ba["test_df"] == 3
    assert ba["delta_vs_baseline"] == pytest.approx(0.01075, rel=1e-12)
    assert ba["p_value"] == pytest.approx(_p_closed_form(0.01075 / se, 3), rel=1e-9)
    assert ba["delta_ci95"] == pytest.approx([low, high], rel=1e-6)
    # pairing matters here: Welch on the same numbers calls the difference noise (p 0.53)
    assert ba["p_value"] < 0.01 < 0.5 < S.welch_t(list(BA.values()), list(BASE.values())).p_value
    base = row(summary, "alexnet")
    assert base["delta_vs_baseline"] is None and base["delta_ci95"] is None and base["p_value"] is None
    md = tables.markdown(summary)
    assert f"+{100 * ba['delta_vs_baseline']:.2f} [+{100 * low:.2f}, +{100 * high:.2f}]" in md
    assert "ddof = 1" in md and "paired t-test" in md and "Welch" in md
    assert f"{100 * np.mean(list(BA.values())):.2f} ± {100 * np.std(list(BA.values()), ddof=1):.2f}" in md


def test_welch_when_seeds_differ_and_baseline_choice(tmp_path):
    other = {5: 0.70, 6: 0.78, 7: 0.74}
    root = experiment(tmp_path, {"alexnet": BASE, "ba_alexnet": other, "alexnet_se": BASE})
    summary = R.summarize(collect_runs(root), "alexnet")
    ba = row(summary, "ba_alexnet")
    # delta 0.74 - 0.7175; the Welch-Satterthwaite df in exact fractions is 59535 / 20357;
    # p and interval: reference values at that df
    assert ba["test"] == "welch" and ba["test_df"] == pytest.approx(59535 / 20357, rel=1e-12)
    assert ba["delta_vs_baseline"] == pytest.approx(0.0225, rel=1e-12)
    assert ba["p_value"] == pytest.approx(0.445951, rel=1e-5)
    assert ba["delta_ci95"] == pytest.approx([-0.0602289, 0.1052289], rel=1e-5)
    assert row(summary, "alexnet_se")["delta_vs_baseline"] == 0.0  # same numbers as the baseline
    flipped = R.summarize(collect_runs(root), "ba_alexnet")
    assert flipped["rows"][0]["model"] == "ba_alexnet"
    assert row(flipped, "alexnet")["delta_vs_baseline"] == pytest.approx(-ba["delta_vs_baseline"], rel=1e-12)
    with pytest.raises(RunStateError, match="baseline 'vgg' has no runs here; pass --baseline with one of alexnet"):
        R.summarize(collect_runs(root), "vgg")


def test_one_seed_gives_no_interval(tmp_path):
    root = experiment(tmp_path, {"alexnet": {0: 0.7}, "ba_alexnet": {0: 0.75}})
    summary = R.summarize(collect_runs(root), "alexnet")
    ba = row(summary, "ba_alexnet")
    assert ba["delta_vs_baseline"] == pytest.approx(0.05) and ba["val_acc_best_std"] is None
    assert ba["delta_ci95"] is None and ba["p_value"] is None
    md = tables.markdown(summary)
    assert "+5.00 (no CI: one seed: no interval possible)" in md
    assert "single finished seed" in md


def test_running_and_failed_runs_are_listed_not_averaged(tmp_path):
    root = experiment(tmp_path, {"alexnet": {0: 0.70, 1: 0.72}, "ba_alexnet": {0: 0.71, 1: 0.75}})
    write_run(root, "alexnet", 2, [0.95, 0.99], status="failed", reason="non-finite loss 'nan' at epoch 3", planned=5)
    write_run(root, "ba_alexnet", 2, [0.97], status="running", planned=5)
    write_run(root, "alexnet_se", 0, [0.9], status="failed", reason="non-finite loss at epoch 2", planned=5)
    out = tmp_path / "report"
    r = forked_tool(["tools/compare.py", str(root), "--out", str(out), "--no-throughput"], timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "comparison.json").read_text())
    a, ba, se = row(summary, "alexnet"), row(summary, "ba_alexnet"), row(summary, "alexnet_se")
    assert a["val_acc_best_mean"] == pytest.approx(0.71) and a["n_seeds"] == 2 and a["n_excluded"] == 1
    assert ba["val_acc_best_mean"] == pytest.approx(0.73) and ba["seeds"] == [0, 1]
    assert ba["test"] == "paired" and ba["delta_vs_baseline"] == pytest.approx(0.02)
    assert se["n_seeds"] == 0 and se["val_acc_best_mean"] is None and se["delta_vs_baseline"] is None
    assert {s["seed"]: s["status"] for s in a["runs"]} == {0: "finished", 1: "finished", 2: "failed"}
    listed = {(x["model"], x["seed"]): (x["status"], x["included"]) for x in summary["runs"]}
    assert listed[("ba_alexnet", 2)] == ("running", False) and listed[("alexnet", 0)] == ("finished", True)
    assert summary["throughput"] is None and a["throughput_img_s"] is None
    md = (out / "comparison.md").read_text()
    assert "3 of 7 runs excluded" in md and "alexnet seed 2: failed (non-finite loss 'nan' at epoch 3; 2 of 5" in md
    assert "ba_alexnet seed 2: running or stopped (1 of 5 epochs done)" in md
    assert "| ba_alexnet | 2 | running | 1/5 |" in md and "Throughput: skipped" in md and "| skipped |" in md
    assert "predictions.png, confusion.png, per_class.png and per_class.csv not written" in md
    assert not (out / "predictions.png").exists() and (out / "curves_acc.png").is_file()
    assert not (root / "comparison.json").exists()  # --out respected
    with open(out / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [x["model"] for x in rows] == ["alexnet", "alexnet_se", "ba_alexnet"]
    assert float(rows[2]["val_acc_best_mean"]) == pytest.approx(0.73) and rows[2]["seeds"] == "0;1"
    assert rows[0]["params_total"] == "7524042" and rows[0]["throughput_img_s"] == ""


# --------------------------------------------------------------------------------- plots

def _pixels(path):
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[0] > 100
    return img


def test_curves_have_one_line_per_model_and_a_band(tmp_path):
    root = experiment(tmp_path, {"alexnet": {0: 0.70, 1: 0.72}, "ba_alexnet": {0: 0.71}})
    write_run(root, "alexnet_se", 0, [0.9], status="failed", reason="x")  # no finished run: no line
    runs = collect_runs(root)
    for kind in ("loss", "acc"):
        fig = plots.plot_curves(runs, kind)
        path = tmp_path / f"{kind}.png"
        plots.save_figure(fig, path)
        assert _pixels(path)[..., :3].var() > 1e-3
        assert len(fig.axes) >= 2
        for ax, split in zip(fig.axes[:2], ("train", "val")):
            lines = ax.get_lines()
            assert [ln.get_label() for ln in lines] == ["alexnet (n=2)", "ba_alexnet (n=1)"]
            assert ax.get_xlabel() == "epoch" and ax.get_ylabel() and split in ax.get_title()
            assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # band only with 2 seeds
            hist = [read_history(root / "alexnet" / f"seed{s}")["epochs"] for s in (0, 1)]
            expected = np.mean([[e[f"{split}_{kind}"] for e in h] for h in hist], axis=0)
            np.testing.assert_allclose(lines[0].get_ydata(), expected, rtol=1e-12)
            np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])


def test_prediction_grid_shows_true_colours_without_warnings(tmp_path, cifar_subset):
    from ba_net import data as D

    images, labels = D.read_cifar10(cifar_subset, "test")
    images, labels = images[:6], labels[:6]
    results = {"alexnet": {"seed": 0, "weights": "best.pdparams", "predicted": labels.copy(), "accuracy": 1.0,
                           "confusion": predict.confusion_matrix(labels, labels, 10)},
               "ba_alexnet": {"seed": 1, "weights": "final.pdparams", "predicted": (labels + 1) % 10, "accuracy": 0.0,
                              "confusion": predict.confusion_matrix(labels, (labels + 1) % 10, 10)}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clipping warning (or any other) fails the test
        fig = plots.plot_predictions(results, images, labels, D.CIFAR10_CLASSES, n_images=4)
        plots.save_figure(fig, tmp_path / "p.png")
        conf = plots.plot_confusion(results, D.CIFAR10_CLASSES)
        plots.save_figure(conf, tmp_path / "c.png")
    assert len(fig.axes) == 8
    for i, ax in enumerate(fig.axes[:4]):
        shown = np.asarray(ax.get_images()[0].get_array())
        np.testing.assert_allclose(shown, cv2.resize(images[i], (128, 128)) / 255.0, atol=1e-5)  # RGB, unnormalized
        assert ax.title.get_color() == "green" and D.CIFAR10_CLASSES[labels[i]] in ax.get_title()
    assert all(ax.title.get_color() == "red" for ax in fig.axes[4:])
    assert _pixels(tmp_path / "p.png").var() > 1e-3 and _pixels(tmp_path / "c.png").var() > 1e-3
    m = predict.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 2], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


# ------------------------------------------------------------------------- errors, throughput

def test_bad_folders_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = forked_tool(["tools/compare.py", str(empty), "--no-throughput"], timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"no runs in {empty}" in errors[0]
    with pytest.raises(RunStateError, match="does not exist"):
        collect_runs(tmp_path / "nowhere")
    nested = experiment(tmp_path / "output", {"alexnet": {0: 0.7}}, name="quick")
    with pytest.raises(RunStateError, match="holds the experiments quick"):
        collect_runs(nested.parent)
    bad = experiment(tmp_path, {"alexnet": {0: 0.7, 1: 0.7}}, name="bad")
    (bad / "alexnet" / "seed1" / "history.json").write_text('{"status": "fini')
    with pytest.raises(RunStateError, match="seed1/history.json is unreadable or not JSON"):
        collect_runs(bad)
    (bad / "alexnet" / "seed1" / "history.json").write_text('{"status": "done", "epochs": []}')
    with pytest.raises(RunStateError, match="corrupt: status 'done'"):
        collect_runs(bad)
    (bad / "alexnet" / "seed1" / "history.json").write_text('{"status": "finished", "epochs": [{"epoch": 1}]}')
    with pytest.raises(RunStateError, match="lacks a finite train_loss"):
        collect_runs(bad)


def _set_run(folder, config=None, **history):
    """Overwrite parts of a synthetic run's config.yaml (None: remove it) and history.json."""
    if config is None:
        (folder / "config.yaml").unlink()
    else:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    h = read_history(folder)
    h.update(history)
    (folder / "history.json").write_text(json.dumps(h))


def test_one_run_reader_answers_compare_export_and_predict(tmp_path):
    """runs.results.Run: what compare, export and predict rebuild of a run (classes, preset,
    model_kwargs, input size, weights, the model with them) comes from its own config and history;
    representative() picks the run that speaks for a group; open_run refuses what read_run lists."""
    from ba_net import data as D
    from ba_net.errors import DataError
    from ba_net.models import build_model
    from ba_net.runs.results import open_run, read_run, representative

    folder = write_run(tmp_path / "exp", "ba_resnet20", 0, [0.5, 0.6])
    _set_run(folder, {"experiment": "exp", "model_kwargs": {"min_hidden": 4},
                      "data": {"dataset": "cifar10", "transforms": "cifar", "data_file": "c.tar.gz"}})
    run = read_run(folder, "ba_resnet20", 0)
    assert (run.model, run.seed, run.status, run.experiment, run.dataset, run.data_file) == \
        ("ba_resnet20", 0, "finished", "exp", "cifar10", "c.tar.gz")
    assert run.classes == tuple(D.CIFAR10_CLASSES) and run.num_classes == 10  # no record: CIFAR-10's
    assert run.preset is D.preset("cifar") and run.model_kwargs == {"min_hidden": 4} and run.input_size() == 32
    fresh = run.untrained_model()
    expected = build_model("ba_resnet20", num_classes=10, min_hidden=4)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in expected.state_dict().items()}
    assert not run.has_weights
    for tag, msg in ((None, "has no best.pdparams or final.pdparams"), ("last", "unknown weights 'last'"),
                     ("best", "has no best.pdparams; export the other weights (--weights final)")):
        with pytest.raises(RunStateError, match=re.escape(msg)):
            run.weights(tag)
    paddle.save(expected.state_dict(), str(folder / "final.pdparams"))
    assert run.has_weights and run.weights() == run.weights("final") == folder / "final.pdparams"
    model = run.build_model()
    assert not model.training
    for k, v in expected.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v.numpy(), err_msg=k)
    paddle.save(build_model("resnet20", num_classes=10).state_dict(), str(folder / "final.pdparams"))
    with pytest.raises(RunStateError, match="ba_resnet20 seed 0 final weights .* does not fit"):
        run.build_model("final")

    # recorded classes win; the model gets as many outputs; a data set without fixed names needs the record
    _set_run(folder, {"model_kwargs": {}, "data": {"dataset": "cifar100"}}, classes=["a", "b", "c"])
    run = read_run(folder, "ba_resnet20", 0)
    assert run.classes == ("a", "b", "c") and run.untrained_model().fc.weight.shape[-1] == 3
    assert run.preset is D.preset("notebook") and run.input_size() == 32  # the model's side over its preset's
    _set_run(folder, {"data": {"dataset": "cifar100"}}, classes=None)
    with pytest.raises(DataError, match="records no class names"):
        read_run(folder, "ba_resnet20", 0).classes

    # the group's spokesman: a run with config.yaml and class names, else with config.yaml, else the first
    bare = write_run(tmp_path / "exp", "ba_resnet20", 1, [0.5])
    _set_run(bare, None)
    named = write_run(tmp_path / "exp", "ba_resnet20", 2, [0.5])
    _set_run(named, {"data": {"transforms": "cifar"}}, classes=list("abcd"))
    runs = [read_run(f, "ba_resnet20", s) for s, f in ((1, bare), (0, folder), (2, named))]
    assert representative(runs).seed == 2 and representative(runs[:2]).seed == 0
    assert representative(runs[:1]).seed == 1 and representative(runs[:1]).preset is D.preset("notebook")

    # strict for export and predict: a run that did not finish is refused in one line
    _set_run(named, {"data": {"transforms": "cifar"}}, status="running")
    assert read_run(named, "ba_resnet20", 2).status == "running"
    with pytest.raises(RunStateError, match=r"is running \(1 of 1 epochs\), not finished"):
        open_run(named)
    with pytest.raises(RunStateError, match="is not a run folder: no history.json"):
        open_run(named.parent)


class _Sleepy(paddle.nn.Layer):
    """A 'model' whose first pass takes 0.3 s and every later one 0.02 s."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(0.3 if self.calls == 1 else 0.02)
        return x.mean(axis=[2, 3])


def test_throughput_excludes_warmup_and_takes_the_median():
    model = _Sleepy()
    res = forward_rate(model, 4, 8, warmup=1, repeats=3)
    assert model.calls == 4 and len(res["seconds"]) == 3 and not model.training
    assert 4 / 0.3 * 3 < res["img_s"] <= 4 / 0.02  # the slow first pass is not counted
    assert res["img_s"] == pytest.approx(4 / float(np.median(res["seconds"])))
    s = ThroughputSettings.parse("warmup=0, repeats=2,max_batches=1")
    assert (s.warmup, s.repeats, s.max_batches, s.batch_size) == (0, 2, 1, 128)
    assert ThroughputSettings.parse(None) == ThroughputSettings()
    for text, msg in (("repeat=2", "unknown"), ("repeats=x", "integer"), ("repeats=0", ">= 1")):
        with pytest.raises(ConfigError, match=msg):
            ThroughputSettings.parse(text)


# --------------------------------------------------------------------- on a real tiny training

N_TEST = 200

@pytest.fixture(scope="module")
def trained(module_tmp, cifar_subset):
    from ba_net.config import load_config
    from ba_net.train.engine import run_experiment

    tmp = module_tmp("trained")
    data = small_cifar10(cifar_subset, tmp / "cifar.tar.gz", n_train=200, n_test=N_TEST)  # real images, fewer
    cfg = load_config(None, base=tiny_config(tmp, data, models=["alexnet", "ba_alexnet"], seeds=[0, 1],
                                             data={"transforms": "notebook"},
                                             train={"epochs": 1, "max_steps_per_epoch": 2}))
    run_experiment(cfg)
    return tmp / "out" / "tiny"


def test_compare_end_to_end_on_a_real_training(trained, tmp_path):
    out = tmp_path / "cmp"
    r = forked_tool(["tools/compare.py", str(trained), "--out", str(out),
                     "--throughput-settings", "batch_size=8,warmup=1,repeats=2,max_batches=3"], timeout=600)
    assert r.returncode == 0, r.stderr
    for name in ("comparison.json", "comparison.md", "comparison.csv", "curves_loss.png", "curves_acc.png",
                 "predictions.png", "confusion.png", "per_class.png", "per_class.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("curves_loss.png", "curves_acc.png", "predictions.png", "confusion.png", "per_class.png"):
        assert _pixels(out / name)[..., :3].var() > 1e-3, name
    summary = json.loads((out / "comparison.json").read_text())
    # hand counts (REFERENCE.md / README), not the package's own numbers
    expected = {"alexnet": (7_524_042, 7_524_042, 97_012_352), "ba_alexnet": (7_529_258, 7_529_210, 97_049_408)}
    for model, (total, trainable, macs) in expected.items():
        r_ = row(summary, model)
        assert (r_["params_total"], r_["params_trainable"], r_["macs"]) == (total, trainable, macs)
        assert r_["throughput_img_s"] > 0 and r_["throughput_notebook_img_s"] > 0
        hist = [read_history(trained / model / f"seed{s}") for s in (0, 1)]
        best = [h["best_val_acc"] for h in hist]
        assert r_["n_seeds"] == 2 and r_["val_acc_best_mean"] == pytest.approx(np.mean(best), rel=1e-12)
        assert r_["val_acc_best_std"] == pytest.approx(np.std(best, ddof=1), rel=1e-9)
        # the predictions come from best.pdparams of each seed: they reproduce its logged val accuracy
        pred = summary["predictions"][model]
        assert (pred["seed"], pred["weights"]) == (0, "best.pdparams")
        assert pred["accuracy"] == pytest.approx(hist[0]["best_val_acc"], abs=1e-9)
        assert pred["seed_accuracy"] == pytest.approx({str(s): h["best_val_acc"] for s, h in enumerate(hist)}, abs=1e-9)
        pc = summary["per_class"]  # per-class accuracies weighted by class size give each seed's accuracy back
        n_c = np.array(pc["images_per_class"])
        for s, h in enumerate(hist):
            assert np.dot(pc["models"][model]["per_seed"][str(s)], n_c) / N_TEST == pytest.approx(h["best_val_acc"])
        assert np.sum(pred["confusion"]) == N_TEST and np.trace(pred["confusion"]) == round(N_TEST * pred["accuracy"])
    ba = row(summary, "ba_alexnet")
    # the paired test by hand on the histories: 2 seeds, df 1, where t is Cauchy-distributed
    best = {m: [read_history(trained / m / f"seed{s}")["best_val_acc"] for s in (0, 1)]
            for m in ("ba_alexnet", "alexnet")}
    d = [x - y for x, y in zip(best["ba_alexnet"], best["alexnet"])]
    assert d[0] != d[1], f"seeded training gave both seeds the same difference {d}: no p-value to check"
    mean, se = (d[0] + d[1]) / 2, abs(d[0] - d[1]) / 2
    assert ba["test"] == "paired" and ba["test_df"] == 1
    assert ba["delta_vs_baseline"] == pytest.approx(mean, abs=1e-12)
    assert ba["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(abs(mean) / se), rel=1e-9)
    assert ba["delta_ci95"] == pytest.approx([mean - T975[1] * se, mean + T975[1] * se], rel=1e-5)
    tp = summary["throughput"]
    # four distinct values: none is passed on as another
    assert (tp["batch_size"], tp["warmup"], tp["repeats"], tp["max_batches"]) == (8, 1, 2, 3)
    assert tp["device"].startswith("cpu")
    md = (out / "comparison.md").read_text()
    assert "| MACs / image |" in md and "| alexnet | 2 of 2 |" in md and "7,529,258 (7,529,210)" in md
    assert "2612" in md and "V100" in md
    assert "All 4 runs finished" in md and "System load when the measurement started" in md
