"""The fast paths give what plain dygraph gives: training losses and state, exported logits;
and tools/benchmark.py runs end to end (smoke settings; its past targets are in docs/PERFORMANCE.md).

Tolerances: oneDNN sums the convolutions in another order than Paddle's im2col + GEMM, so the
values differ by float32 rounding (~1e-6 relative). A ReLU input within that rounding of zero
can land on the other side, which sends that element's whole gradient elsewhere, and Adam's
first steps move every weight by about +-lr whatever the gradient's size; so a few weights may
differ by up to 2 x lr per step while the losses still agree to ~1e-6 on real images.

The CIFAR ResNets train with the recipe's SGD (momentum 0.9, weight decay 5e-4, plain cross
entropy) on the cifar preset's 32 px images. Their backward runs through 19 BatchNorms, whose
gradient subtracts two batch means from the incoming one; these cancellations amplify the float32
rounding of oneDNN's convolutions (without oneDNN the static program gives dygraph's numbers
bit for bit): after one step the gradients of ResNet-20's first stage differ by up to ~1 %
(the last stage's by ~0.01 %), and the next steps see slightly different weights. Measured
(Paddle 3.3.1, batch 8, lr 0.01, 3 steps): losses within 1e-4 relative, the first one exactly;
the weight updates within 8 % and the velocities within 15 % (relative L2 over all tensors) for
ResNet-20, within 0.05 % and 0.1 % for BA-ResNet-20 (its sigmoid gates halve each residual
branch, and with it the amplification)."""
import json
import logging

import numpy as np
import paddle
import pytest

from ba_net import accel, build_model, count_macs
from ba_net.config import load_config
from ba_net.inference import InferenceRunner, export_for_inference
from ba_net.loss import LabelSmoothingCrossEntropy
from ba_net.optim import build_optimizer
from ba_net.static_train import StaticTrainer
from helpers import run_tool

BATCH = 8
STEPS = 3


def _batches(data_file, preset="notebook"):
    """STEPS batches of real CIFAR-10 training images under the preset's eval transform."""
    from ba_net import data as D

    transform = D.preset(preset).eval
    images, labels = D.read_cifar10(data_file, "train")
    return [(np.stack([transform(im) for im in images[i * BATCH:(i + 1) * BATCH]]).astype("float32"),
             labels[i * BATCH:(i + 1) * BATCH].astype("int64")) for i in range(STEPS)]


def _assert_mostly_equal(got, want, lr, what):
    """Equal to rounding except a few elements, which differ by at most Adam's 2 x lr per step."""
    diff = np.abs(got - want)
    assert diff.max() <= 2.2 * lr * STEPS + 1e-6, (what, float(diff.max()))
    assert np.mean(diff > 1e-5 * (1 + np.abs(want))) < 0.01, (what, float(np.mean(diff > 1e-5)))


def _train(model_name, path, batches, overrides=()):
    """Losses of STEPS steps on ``path``, then the model's and the optimizer's state."""
    cfg = load_config(None, (f"train.path={path}", f"train.batch_size={BATCH}", *overrides))
    with paddle.utils.unique_name.guard():
        paddle.seed(3)
        model = build_model(model_name)
        scheduler = paddle.optimizer.lr.CosineAnnealingDecay(cfg["optimizer"]["lr"], 10)
        optimizer = build_optimizer(cfg, model.parameters(), scheduler)
        loss_fn = LabelSmoothingCrossEntropy(cfg["loss"]["label_smoothing"] if overrides else 0.1)
        fast = accel.prepare_training(cfg, model_name, model, optimizer,
                                      lambda p: build_optimizer(cfg, p, scheduler), loss_fn, device="cpu")
        assert (fast is not None) == (path == "fast")
        paddle.seed(11)  # the dropout masks: both paths draw them from this generator
        model.train()
        losses = []
        for x, y in batches:
            x, y = paddle.to_tensor(x), paddle.to_tensor(y)
            if fast is not None:
                _, loss = fast(x, y)
            else:
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
            scheduler.step()
            losses.append(float(loss))
        if fast is not None:
            fast.sync()
        weights = {k: v.numpy() for k, v in model.state_dict().items()}
        opt = {k: v.numpy() for k, v in optimizer.state_dict().items() if k != "LR_Scheduler"}
    return np.array(losses), weights, opt


@pytest.mark.parametrize("model_name", ["alexnet", "ba_alexnet"])
def test_fast_training_matches_dygraph(model_name, cifar_subset):
    batches = _batches(cifar_subset)
    ref_losses, ref_w, ref_opt = _train(model_name, "dygraph", batches)
    losses, w, opt = _train(model_name, "fast", batches)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)  # dropout on: the masks are the same too
    lr = load_config(None)["optimizer"]["lr"]
    assert list(w) == list(ref_w)
    for k in ref_w:
        _assert_mostly_equal(w[k], ref_w[k], lr, k)
    # the optimizer state lands under the names dygraph gives it, so checkpoints and resume match
    assert sorted(opt) == sorted(ref_opt)
    for k in ref_opt:
        if k.endswith(("beta1_pow_acc_0", "beta2_pow_acc_0")):
            np.testing.assert_allclose(opt[k], ref_opt[k], rtol=1e-6, err_msg=k)
        else:
            # relative to each element, with a floor at the tensor's scale: an element a thousand
            # times smaller than its neighbours (a gradient sum that nearly cancels) keeps only
            # the absolute rounding of its computation
            slack = 1e-3 * np.abs(ref_opt[k]) + 1e-5 * np.abs(ref_opt[k]).max()
            assert np.mean(np.abs(opt[k] - ref_opt[k]) > slack) < 0.01, k


CIFAR_SGD = ("data.transforms=cifar", "optimizer.name=momentum", "optimizer.lr=0.01", "optimizer.momentum=0.9",
             "optimizer.weight_decay=5e-4", "loss.label_smoothing=0")


@pytest.mark.parametrize("model_name", ["resnet20", "ba_resnet20"])
def test_fast_training_of_cifar_resnets_matches_dygraph(model_name, cifar_subset):
    """The fast path traces the CIFAR ResNets (32 px, from the cifar preset) and trains them as
    dygraph does with SGD + momentum: same losses, weights, and velocities under the names the
    dygraph optimizer gives them."""
    batches = _batches(cifar_subset, "cifar")
    assert batches[0][0].shape == (BATCH, 3, 32, 32)
    ref_losses, ref_w, ref_opt = _train(model_name, "dygraph", batches, CIFAR_SGD)
    losses, w, opt = _train(model_name, "fast", batches, CIFAR_SGD)  # asserts the fast path was taken
    np.testing.assert_allclose(losses[0], ref_losses[0], rtol=1e-6)  # the same weights on the same batch
    np.testing.assert_allclose(losses, ref_losses, rtol=5e-4)
    assert list(w) == list(ref_w)
    with paddle.utils.unique_name.guard():
        paddle.seed(3)
        start = {k: v.numpy() for k, v in build_model(model_name).state_dict().items()}

    def flat(state, minus=None):
        return np.concatenate([(state[k] - (minus[k] if minus else 0)).ravel() for k in sorted(state)])

    update, ref_update = flat(w, start), flat(ref_w, start)
    assert np.linalg.norm(update - ref_update) <= 0.2 * np.linalg.norm(ref_update)
    assert sorted(opt) == sorted(ref_opt) and all(k.endswith("_velocity_0") for k in opt)
    assert np.linalg.norm(flat(opt) - flat(ref_opt)) <= 0.4 * np.linalg.norm(flat(ref_opt))


def test_fast_path_falls_back_to_dygraph(caplog, monkeypatch):
    cfg = load_config(None, ("train.path=fast",))
    assert accel.resolve_path("fast", "cpu", 1)[0] == "static_onednn"
    assert accel.resolve_path("dygraph", "cpu", 1)[0] == "dygraph"
    assert accel.resolve_path("fast", "gpu:0", 1)[0] == "dygraph"
    assert accel.resolve_path("fast", "cpu", 2)[0] == "dygraph"
    # a model whose program cannot be traced trains in dygraph. alexnet_multihead's matmul is
    # rejected by Paddle 3.3's legacy programs but traced (and checked) in 3.0, so the rejection
    # is simulated: the fall-back is tested on every Paddle
    def reject(self, *args, **kwargs):
        raise ValueError("(InvalidArgument) the legacy program rejects this op (simulated)")

    monkeypatch.setattr(StaticTrainer, "_trace", reject)
    with paddle.utils.unique_name.guard():
        model = build_model("alexnet_multihead")
        scheduler = paddle.optimizer.lr.LambdaDecay(1e-4, lambda _: 1.0)
        optimizer = build_optimizer(cfg, model.parameters(), scheduler)
        with caplog.at_level(logging.WARNING, logger="ba_net.accel"):
            fast = accel.prepare_training(cfg, "alexnet_multihead", model, optimizer,
                                          lambda p: build_optimizer(cfg, p, scheduler),
                                          LabelSmoothingCrossEntropy(0.1), device="cpu",
                                          image_shape=(2, 3, 128, 128))
    assert fast is None
    assert "training path: dygraph" in caplog.text


@pytest.mark.parametrize("model_name", ["ba_alexnet", "ba_resnet20", "resnet20_cbam"])
def test_exported_inference_model_gives_dygraph_logits(tmp_path, model_name):
    """5 images at the model's input size (128 px AlexNet, 32 px CIFAR ResNets)."""
    paddle.seed(5)
    model = build_model(model_name)
    model.eval()
    size = model.input_size
    x = np.random.default_rng(1).standard_normal((5, 3, size, size)).astype("float32")
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x)).numpy()
    prefix = export_for_inference(model, tmp_path / "export")
    runner = InferenceRunner(prefix)
    got = runner(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(runner.run_numpy(x[:2]), ref[:2], rtol=1e-4, atol=1e-4)  # another batch size
    assert not model.training
    from ba_net.attention import bridge, helpers

    assert bridge.global_avg_pool is helpers.global_avg_pool  # the export-time swap is undone


def test_benchmark_quick_writes_every_row(tmp_path, cifar_subset):
    out = tmp_path / "bench.json"
    proc = run_tool(["tools/benchmark.py", "--quick", "--data", str(cifar_subset), "--out", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["gemm"]["paddle"] > 0 and result["gemm"]["numpy"] > 0
    got = {(r["section"], r["model"], r["path"]) for r in result["rows"]}
    for model in ("alexnet", "ba_alexnet"):
        for path in ("notebook", "dygraph", "to_static", "fast"):
            assert ("train step", model, path) in got
        assert ("train e2e", model, "notebook") in got and ("train e2e", model, "fast") in got
        for section in ("eval fwd", "eval pass"):
            for path in ("notebook", "dygraph", "inference"):
                assert (section, model, path) in got
    for r in result["rows"]:
        assert r["img_s"] > 0 and r["vs_notebook"] > 0, r
        assert 0 < r["pct_best"] <= 100.0 + 1e-9, r  # the yardstick is the best rate of the run
    from ba_net.torch_peer import torch_importable

    peer = {(s, p) for s, m, p in got if p.startswith("pytorch")}
    if torch_importable():  # the PyTorch peer in the same run, and our AlexNet rows against it
        assert peer == {(s, f"pytorch {lay}") for s in ("train step", "eval fwd") for lay in ("eager", "channels_last")}
        assert result["gemm"]["pytorch"] > 0 and "| x PyTorch |" in proc.stdout
        turns = result["peer_interleaved"]  # the two taking turns under the same load
        assert all(turns[t]["ours_img_s"] > 0 and turns[t]["pytorch_img_s"] > 0 for t in ("train", "eval"))
        assert "taking turns with it" in proc.stdout
        assert all(r["vs_pytorch"] > 0 for r in result["rows"]
                   if r["model"] == "alexnet" and r["section"] in ("train step", "eval fwd"))
    else:
        assert not peer and proc.stderr.count("PyTorch peer: skipped") == 1
    assert result["ba_overhead_pct"]["ba_alexnet"] and result["ba_overhead_interleaved"]["ba_alexnet"]["train"]["pairs"] >= 1
    assert result["macs_per_image"] == {"alexnet": 97_012_352, "ba_alexnet": 97_049_408}  # 128 px, as the README
    assert "targets" not in result and "Targets" not in proc.stdout  # past targets: docs/PERFORMANCE.md
    assert "| train step | alexnet | fast |" in proc.stdout and "Method:" in proc.stdout


def test_benchmark_resnet_suite_measures_each_model_at_its_input_size(tmp_path):
    """--resnet: the fast train step and the Paddle Inference forward of ResNet-20 / BA-ResNet-20
    (32 px) and ResNet-50 / BA-ResNet-50 (224 px, the small batch), MACs at each model's size,
    parameters, and BA's overhead over each plain model (interleaved and from the rows)."""
    from ba_net.benchmark_rows import RESNET_MODELS

    out = tmp_path / "bench.json"
    proc = run_tool(["tools/benchmark.py", "--quick", "--resnet", "--out", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["settings"]["models"] == list(RESNET_MODELS) == ["resnet20", "ba_resnet20", "resnet50", "ba_resnet50"]
    got = {(r["section"], r["model"], r["path"]) for r in result["rows"]}
    assert got == {(s, m, p) for m in RESNET_MODELS for s, p in (("train step", "fast"), ("eval fwd", "inference"))}
    assert all(r["img_s"] > 0 for r in result["rows"])
    sizes = {"resnet20": 32, "ba_resnet20": 32, "resnet50": 224, "ba_resnet50": 224}
    assert {m: i["image_size"] for m, i in result["input"].items()} == sizes
    small, large = result["settings"]["batch_size"], result["settings"]["large_batch_size"]
    assert {m: i["batch_size"] for m, i in result["input"].items()} == {
        m: large if s == 224 else small for m, s in sizes.items()}
    for m, s in sizes.items():
        assert result["macs_per_image"][m] == count_macs(build_model(m), (1, 3, s, s)), m
    assert 4.0e9 < result["macs_per_image"]["resnet50"] < 4.2e9  # ResNet-50's 4.1 GMACs at 224 px
    assert result["params"]["resnet20"]["trainable"] == 272_474  # tests/test_resnet.py's hand count
    assert set(result["ba_overhead_interleaved"]) == set(result["ba_overhead_pct"]) == {"ba_resnet20", "ba_resnet50"}
    for o in result["ba_overhead_interleaved"].values():
        assert o["train"]["pairs"] >= 1 and o["eval"]["pairs"] >= 1
    assert "| ba_resnet50 | 224 px | 2 | 4,132,505,600 | " in proc.stdout
    assert "ba_resnet20's overhead over resnet20" in proc.stdout
