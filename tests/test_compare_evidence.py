"""tools/compare.py's evidence: power columns and sentences in the tables, the A/A control from the
command line, the reproducibility report, per-class accuracy (numbers, CSV, figure, notes)."""
import csv
import json
import math

import numpy as np
import pytest
import yaml

import test_compare as TC
from ba_net.report import per_class as PC
from ba_net.report import plots
from ba_net.report import tables
from ba_net.report import compare as R
from ba_net.data import CIFAR10_CLASSES as CLASSES
from ba_net.runs.results import collect_runs
from helpers import forked_tool
from test_stats_power import is_smallest_n, one_sample_power


def test_power_columns_and_sentences_in_the_tables(tmp_path):
    ns = {0: 0.715, 1: 0.735, 2: 0.70, 3: 0.732}  # +0.30 pp, not significant
    root = TC.experiment(tmp_path, {"alexnet": TC.BASE, "ba_alexnet": TC.BA, "alexnet_se": ns})
    summary = R.summarize(collect_runs(root), "alexnet")
    ba, se = TC.row(summary, "ba_alexnet"), TC.row(summary, "alexnet_se")
    d = np.array([ns[s] - TC.BASE[s] for s in sorted(ns)])
    sd = d.std(ddof=1)
    assert one_sample_power(se["mde"] / sd, 4) == pytest.approx(0.8, abs=1e-6)  # independent integral
    assert is_smallest_n(d.mean() / sd, se["seeds_needed"])
    assert ba["p_value"] < 0.05 and "distinguishable from seed noise with 4 seeds" in ba["conclusion"]
    assert TC.row(summary, "alexnet")["conclusion"] is None and TC.row(summary, "alexnet")["mde"] is None
    md = tables.markdown(summary)
    assert "| min. detectable Δ (pp) | seeds to detect Δ |" in md
    assert f"| {100 * se['mde']:.2f} | {se['seeds_needed']} |" in md
    conclusions = md.split("## Conclusions")[1].split("##")[0]
    assert f"- {ba['conclusion']}\n" in conclusions and f"- {se['conclusion']}\n" in conclusions
    assert "noncentral t" in md and "power 0.8" in md
    rows = list(csv.DictReader(tables._csv(summary).splitlines()))
    assert float(rows[1]["mde"]) == pytest.approx(se["mde"], rel=1e-12) and rows[1]["conclusion"] == se["conclusion"]


def test_aa_from_the_command_line(tmp_path):
    rng = np.random.default_rng(0)  # (a fixed draw: another may give p < 0.05, as A/A does at the test's size, ~4 % at 3 + 3)
    same = {s: float(v) for s, v in enumerate(0.70 + 0.01 * rng.standard_normal(6))}  # one distribution
    root = TC.experiment(tmp_path, {"alexnet": same, "ba_alexnet": {s: v + 0.02 for s, v in same.items()}})
    r = forked_tool(["tools/compare.py", str(root), "--no-throughput", "--aa", "alexnet"], timeout=300)
    assert r.returncode == 0, r.stderr
    aa = json.loads((root / "comparison.json").read_text())["aa"]
    assert aa["name"] == "A/A alexnet seeds 0, 1, 2 vs seeds 3, 4, 5" and aa["test"]["method"] == "welch"
    assert aa["test"]["p_value"] > 0.05 and aa["test"]["ci95"][0] < 0 < aa["test"]["ci95"][1]
    assert aa["sentence"] in r.stdout and "not distinguishable from seed noise with 3 seeds each" in aa["sentence"]
    md = (root / "comparison.md").read_text()
    assert "A/A control" in md and "With 3 + 3 seeds, Welch's test calls pure noise 'distinguishable' 3.5 % " in md
    assert "ba_alexnet vs alexnet: +2.00 pp" in r.stdout  # the model's sentence too
    few = TC.experiment(tmp_path, {"alexnet": {0: 0.7, 1: 0.71, 2: 0.72}}, name="few")
    for args, msg in ((["--aa", "alexnet"], "--aa alexnet needs at least 4 finished seeds to split into two "
                                            "halves; alexnet has 3"),
                      (["--aa", "vgg"], "--aa vgg: no runs of vgg here; pass one of alexnet")):
        r = forked_tool(["tools/compare.py", str(few), "--no-throughput"] + args, timeout=300)
        errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(errors) == 1 and msg in errors[0], r.stderr


def _edit(folder, config=None, history=None):
    if config:
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **config}))
    if history:
        path = folder / "history.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **history}))


def test_reproducibility_report_and_one_warning_per_model(tmp_path):
    root = TC.experiment(tmp_path, {"alexnet": TC.BASE, "ba_alexnet": TC.BA, "alexnet_se": TC.BASE})
    for seed in TC.BASE:
        _edit(root / "alexnet" / f"seed{seed}", {"optimizer": {"lr": 5e-4}, "data": {"num_workers": seed,
              "data_file": f"/d{seed}"}, "device": "auto"}, {"paddle_version": "3.3.1", "device": "cpu"})
        _edit(root / "ba_alexnet" / f"seed{seed}", {"optimizer": {"lr": 1e-3 if seed == 2 else 5e-4}},
              {"paddle_version": "3.0.0" if seed == 3 else "3.3.1", "device": "gpu:0" if seed == 3 else "cpu"})
    r = forked_tool(["tools/compare.py", str(root), "--no-throughput"], timeout=300)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "differ" in line]
    assert len(warnings) == 1 and " warning: ba_alexnet:" in warnings[0], r.stderr  # alexnet's workers and data differ: ignored
    assert ("ba_alexnet: its seeds' runs differ: config optimizer.lr: 0.0005 (seeds 0, 1, 3), 0.001 (seed 2) | "
            "Paddle 3.3.1 (seeds 0, 1, 2), 3.0.0 (seed 3) | device cpu (seeds 0, 1, 2), gpu:0 (seed 3)") in warnings[0]
    md = (root / "comparison.md").read_text()
    assert "| alexnet | 0, 1, 2, 3 | identical | 3.3.1 | cpu |" in md
    assert "| alexnet_se | 0, 1, 2, 3 | identical | not recorded | cpu |" in md  # the history's device, no version
    assert "| ba_alexnet | 0, 1, 2, 3 | differ: optimizer.lr: 0.0005 (seeds 0, 1, 3), 0.001 (seed 2) |" in md
    reps = {x["model"]: x for x in json.loads((root / "comparison.json").read_text())["reproducibility"]}
    assert reps["alexnet"]["warning"] is None and reps["ba_alexnet"]["configs_identical"] is False
    (root / "alexnet_se" / "seed1" / "config.yaml").unlink()
    _edit(root / "alexnet_se" / "seed0", {"device": "auto"}, {"device": None})  # 'auto' says nothing
    _edit(root / "alexnet_se" / "seed2", {"paddle_version": "3.2.2"})  # read from the config without the history's
    rep = R.summarize(collect_runs(root), "alexnet")["reproducibility"]
    se = next(x for x in rep if x["model"] == "alexnet_se")
    assert se["config_differences"] == ["config.yaml missing for seed 1"]  # paddle_version is no config difference
    assert se["device"] == "not recorded (seed 0), cpu (seeds 1, 2, 3)"
    assert se["paddle_version"] == "not recorded (seeds 0, 1, 3), 3.2.2 (seed 2)"


def test_seeds_trained_under_different_global_batches_are_not_pooled(tmp_path):
    """Seed 0 on 2 processes of 64 from before the global batch (128 in all), seed 1 on one process
    of 128: one recipe, pooled, shown as 128 on 2 and 1 processes. Seed 2 with a global batch of
    256: refused with one line naming the batches, by summarize and by tools/compare.py."""
    root = TC.experiment(tmp_path, {"alexnet": {0: 0.7, 1: 0.71, 2: 0.72}, "ba_alexnet": {0: 0.7, 1: 0.72, 2: 0.71}})
    for model in ("alexnet", "ba_alexnet"):
        _edit(root / model / "seed0", {"train": {"batch_size": 64}}, {"world_size": 2})
        for seed in (1, 2):
            _edit(root / model / f"seed{seed}", {"train": {"batch_size": 128}}, {"global_batch": 128})
    rep = {x["model"]: x for x in R.summarize(collect_runs(root), "alexnet")["reproducibility"]}
    assert rep["ba_alexnet"]["global_batch"] == "128"
    assert rep["ba_alexnet"]["processes"] == "2 (seed 0), 1 (seeds 1, 2)"
    _edit(root / "ba_alexnet" / "seed2", {"train": {"batch_size": 256}}, {"global_batch": 256})
    with pytest.raises(R.RunStateError, match=r"^ba_alexnet: its seeds ran with different global batches "
                                              r"\(128 \(seeds 0, 1\), 256 \(seed 2\)\)"):
        R.summarize(collect_runs(root), "alexnet")
    r = forked_tool(["tools/compare.py", str(root), "--no-throughput"], timeout=300)
    assert r.returncode != 0 and "different global batches" in r.stderr.strip().splitlines()[-1]
    assert not (root / "comparison.md").exists()


# ------------------------------------------------------------------------------ per class

def _confusion(correct, total=10):
    """A 10-class confusion matrix with ``correct[c]`` of ``total`` images of class c right (the
    wrong ones predicted as the next class)."""
    m = np.zeros((10, 10), dtype=np.int64)
    for c, k in enumerate(correct):
        m[c, c], m[c, (c + 1) % 10] = k, total - k
    return m


def test_per_class_numbers_csv_figure_and_notes(tmp_path):
    base = {0: _confusion([5] * 10), 1: _confusion([7] * 10)}  # 50 %, 70 %: mean 60 %, std 14.14 pp
    ba = {0: _confusion([9, 6, 6, 6, 6, 6, 6, 6, 6, 2]), 1: _confusion([9, 6, 6, 6, 6, 6, 6, 6, 7, 2])}
    pc = PC.summarize_per_class({"alexnet": base, "ba_alexnet": ba}, "alexnet", CLASSES)
    a, b = pc["models"]["alexnet"], pc["models"]["ba_alexnet"]
    assert a["mean"] == pytest.approx([0.6] * 10) and a["std"] == pytest.approx([math.sqrt(0.02)] * 10)
    assert b["mean"][0] == pytest.approx(0.9) and b["mean"][8] == pytest.approx(0.65) and b["std"][0] == 0
    assert b["largest_differences"][:2] == [["truck", pytest.approx(-0.4)], ["airplane", pytest.approx(0.3)]]
    assert b["largest_differences"][2] == ["ship", pytest.approx(0.05)] and pc["images_per_class"] == [10] * 10
    rows = list(csv.DictReader(PC.per_class_csv(pc).splitlines()))
    assert len(rows) == 20 and rows[10]["model"] == "ba_alexnet" and rows[10]["class"] == "airplane"
    assert float(rows[10]["acc_mean"]) == pytest.approx(0.9) and float(rows[10]["delta_vs_baseline"]) == pytest.approx(0.3)
    assert rows[0]["delta_vs_baseline"] == "" and rows[0]["seeds"] == "0;1" and rows[0]["n_seeds"] == "2"
    notes = " ".join(PC.per_class_notes(pc))
    assert "ba_alexnet vs alexnet, classes with the largest per-class differences: truck -40.00 pp, " \
           "airplane +30.00 pp, ship +5.00 pp." in notes and "10 images per class" in notes
    fig = plots.plot_per_class(pc)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx(a["mean"] + b["mean"])  # bars: alexnet's ten, then ba_alexnet's
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    plots.save_figure(fig, tmp_path / "pc.png")
    assert TC._pixels(tmp_path / "pc.png")[..., :3].var() > 1e-3
    assert np.isnan(PC.per_class_accuracy(np.zeros((2, 2))))[0]
