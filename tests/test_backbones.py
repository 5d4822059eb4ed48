"""The paper's other backbones (ba_net.models.resnext, .mobilenetv3, .efficientnet), plain and
with Bridge Attention: built by name, trainable parameters equal to the official code's (an
independent reference), a forward on a small image, the input side, and where BA sits."""
import functools

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ba_net import build_model, count_params
from ba_net.attention import BridgeAttention, SqueezeExcitation
from ba_net.models.efficientnet import BLOCKS, VARIANTS, PointwiseGate, round_filters, round_repeats

# Trainable parameters at 1,000 classes, measured from the official BA-Net code
# (github.com/zhaoy376/Bridge-Attention) and, for the baselines, torchvision / timm /
# EfficientNet-PyTorch; (count, input side).
OFFICIAL = {
    "resnet152": (60_192_808, 224),
    "ba_resnet152": (68_433_480, 224),
    "resnext50_32x4d": (25_028_904, 224),
    "ba_resnext50_32x4d": (28_806_984, 224),
    "resnext101_32x4d": (44_177_704, 224),
    "ba_resnext101_32x4d": (51_304_648, 224),
    "se_resnet50": (28_071_976, 224),
    "mobilenetv3_large": (5_483_032, 224),
    "ba_mobilenetv3_large": (5_478_832, 224),
    "mobilenetv3_small": (2_542_856, 224),
    "ba_mobilenetv3_small": (2_536_040, 224),
    "efficientnet_b0": (5_288_548, 224),
    "ba_efficientnet_b0": (8_418_640, 224),
    "ba_efficientnet_b1": (13_328_308, 240),
    "ba_efficientnet_b2": (15_669_908, 260),
    "ba_efficientnet_b3": (21_518_832, 300),
}
# Not given by the brief: EfficientNet-PyTorch's B1..B3 baselines, checked against a count by hand
# from the block table (which reproduces every official EfficientNet figure above).
BY_HAND = {"efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300}
SMALL = 64  # every one of these nets runs on 64 px (a 2 x 2 map before the pool)


@functools.lru_cache(maxsize=None)
def _model(name):
    model = build_model(name, num_classes=1000)
    model.eval()
    return model


def _trainable(model):
    return count_params(model)["trainable"]


def _efficientnet_by_hand(variant, ba, classes=1000):
    """EfficientNet's trainable parameters from its block table: bias-free convs, BN (weight,
    bias), SE (hidden int(inp / 4), biases) or BA (hidden C // 6: two bias-free squeezes, two
    BN1d, a bias-free excitation) in the expanded blocks, the fc."""
    width, depth, _, _ = VARIANTS[variant]
    stem, head = round_filters(32, width), round_filters(1280, width)
    total = 27 * stem + 2 * stem + head * classes + classes
    cin = stem
    for repeats, k, _, expand, _, oup in BLOCKS:
        oup = round_filters(oup, width)
        for _ in range(round_repeats(repeats, depth)):
            c = cin * expand
            total += (cin * c + 2 * c if expand != 1 else 0) + k * k * c + 2 * c + c * oup + 2 * oup
            if ba and expand != 1:
                h = c // 6
                total += 2 * c * h + 4 * h + h * c
            else:
                s = max(1, int(cin * 0.25))
                total += c * s + s + s * c + c
            cin = oup
    return total + cin * head + 2 * head


def test_hand_count_gives_every_official_efficientnet_figure():
    assert _efficientnet_by_hand("b0", ba=False) == OFFICIAL["efficientnet_b0"][0]
    for v in ("b0", "b1", "b2", "b3"):
        assert _efficientnet_by_hand(v, ba=True) == OFFICIAL[f"ba_efficientnet_{v}"][0]


@pytest.mark.parametrize("name", sorted(OFFICIAL) + sorted(BY_HAND))
def test_builds_by_name_counts_input_side_and_forward(name):
    model = _model(name)
    if name in OFFICIAL:
        count, size = OFFICIAL[name]
    else:
        count, size = _efficientnet_by_hand(name[-2:], ba=False), BY_HAND[name]
    assert _trainable(model) == count
    assert model.input_size == size
    with paddle.no_grad():
        out = model(paddle.randn([2, 3, SMALL, SMALL]))
    assert out.shape == [2, 1000]
    assert np.isfinite(out.numpy()).all()


def _trace(block, names, attention):
    """Run ``block``'s model, record the outputs of its sublayers ``names``, the inputs of the
    attention module and of ``attention`` itself: {name: numpy}, (x, bridges)."""
    seen, att_in = {}, {}
    handles = [getattr(block, n).register_forward_post_hook(
        lambda layer, inputs, output, n=n: seen.__setitem__(n, output.numpy())) for n in names]
    handles.append(attention.register_forward_pre_hook(lambda layer, inputs: att_in.update(inputs=inputs)))
    handles.append(attention.register_forward_post_hook(
        lambda layer, inputs, output: seen.__setitem__("attention", output.numpy())))
    return seen, att_in, handles


def _run(name, handles):
    try:
        with paddle.no_grad():
            _model(name)(paddle.randn([2, 3, SMALL, SMALL]))
    finally:
        for h in handles:
            h.remove()


def _ba_count(c, h):
    """Trainable parameters of BA on c channels with one c-channel bridge and hidden width h."""
    return 2 * c * h + 2 * 2 * h + h * c


def _se_count(c, h, bias=True):
    return 2 * c * h + (h + c if bias else 0)


def _has(layer, kind):
    return any(isinstance(m, kind) for m in layer.sublayers(include_self=True))


def test_resnext_ba_weights_bn3_from_both_relu_bridges_and_se_resnet_is_bias_free():
    model = _model("ba_resnext50_32x4d")
    block = model.layer2[1]
    assert block.conv2._groups == 32 and block.conv2.weight.shape == [256, 8, 3, 3]  # 32 x 8 = 2 x 128
    assert isinstance(block.attention, BridgeAttention)
    seen, att, handles = _trace(block, ["bn1", "bn2", "bn3"], block.attention)
    _run("ba_resnext50_32x4d", handles)
    x, bridges = att["inputs"]
    np.testing.assert_array_equal(x.numpy(), seen["bn3"])
    np.testing.assert_array_equal(bridges[0].numpy(), np.maximum(seen["bn1"], 0))
    np.testing.assert_array_equal(bridges[1].numpy(), np.maximum(seen["bn2"], 0))
    se = _model("se_resnet50").layer1[0].attention
    assert isinstance(se, SqueezeExcitation) and _trainable(se) == _se_count(256, 16, bias=False)


def test_mobilenetv3_ba_gates_the_depthwise_bn_before_its_activation():
    model = _model("ba_mobilenetv3_large")
    block = model.features[5]  # (5, 3, 40, SE, ReLU, 1): 40 -> 120, with SE in the baseline
    attention = block.attention
    assert isinstance(attention, BridgeAttention)
    assert _has(attention, nn.Hardsigmoid) and _has(attention, nn.ReLU)
    seen, att, handles = _trace(block, ["conv0", "conv1"], attention)
    handles.append(block.conv2.register_forward_pre_hook(lambda layer, inputs: seen.update(conv2_in=inputs[0].numpy())))
    _run("ba_mobilenetv3_large", handles)
    x, bridges = att["inputs"]
    np.testing.assert_array_equal(x.numpy(), seen["conv1"])  # BN(dw), not activated (has negatives)
    assert (seen["conv1"] < 0).any()
    np.testing.assert_array_equal(bridges[0].numpy(), seen["conv0"])  # the expansion, after its ReLU
    np.testing.assert_allclose(seen["conv2_in"], np.maximum(seen["attention"], 0), rtol=1e-6)
    # BA hidden C // 6 (120 -> 20, no make_divisible); no SE row, no attention; unexpanded SE kept
    assert _trainable(attention) == _ba_count(120, 120 // 6)
    assert model.features[7].attention is None
    first = _model("ba_mobilenetv3_small").features[1]
    assert not first.expand and isinstance(first.attention, SqueezeExcitation)
    assert _trainable(first.attention) == _se_count(16, 8)  # make_divisible(16 // 4, 8)
    assert _trainable(_model("mobilenetv3_large").features[5].attention) == _se_count(120, 32)  # make_divisible(30, 8)


def test_efficientnet_ba_weights_the_activated_depthwise_from_the_activated_expansion():
    model = _model("ba_efficientnet_b0")
    block = model.blocks[1]
    attention = block.attention
    assert isinstance(attention, BridgeAttention)
    assert _has(attention, nn.Swish) and _has(attention, nn.Sigmoid)
    seen, att, handles = _trace(block, ["bn0", "bn1"], attention)
    handles.append(block.project_conv.register_forward_pre_hook(lambda layer, inputs: seen.update(proj_in=inputs[0].numpy())))
    _run("ba_efficientnet_b0", handles)
    x, bridges = att["inputs"]
    swish = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(x.numpy(), swish(seen["bn1"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bridges[0].numpy(), swish(seen["bn0"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(seen["proj_in"], seen["attention"])
    assert _trainable(attention) == _ba_count(96, 96 // 6)
    # the expand-ratio-1 block: the official per-position gate (hidden 32 / 4) by default, a pooled SE on request,
    # with the same parameters; the baseline's first block pools
    gate = model.blocks[0].attention
    assert isinstance(gate, PointwiseGate)
    assert gate.weights(paddle.randn([2, 32, 5, 5])).shape == [2, 32, 5, 5]
    assert _trainable(gate) == _se_count(32, 8)
    pooled = build_model("ba_efficientnet_b0", num_classes=10, unpooled_first_gate=False).blocks[0].attention
    assert isinstance(pooled, SqueezeExcitation) and _trainable(pooled) == _se_count(32, 8)
    assert isinstance(_model("efficientnet_b0").blocks[0].attention, SqueezeExcitation)
    with pytest.raises(ValueError, match="baseline pools"):
        build_model("efficientnet_b0", num_classes=10, unpooled_first_gate=True)


def _perturbed(key, value, rng):
    """The initial weights scaled by 1 +- 10 %, biases and BatchNorm statistics moved off their
    initial 0 / 1 (as training moves them): the activations keep their scale, the logits vary."""
    if key.endswith("_variance"):
        return (1.0 + 0.5 * np.abs(rng.standard_normal(value.shape))).astype("float32")
    shift = 0.1 * rng.standard_normal(value.shape) if value.ndim == 1 else 0.0
    return (value * (1.0 + 0.1 * rng.standard_normal(value.shape)) + shift).astype("float32")


@pytest.mark.parametrize("name", ["ba_mobilenetv3_small", "ba_efficientnet_b0", "ba_resnext50_32x4d"])
def test_new_backbones_take_the_fast_path_and_export_with_parity(name, tmp_path):
    """Each family traces into the fast path's training program (no fallback to dygraph), and its
    Paddle Inference export gives dygraph's logits (at 64 px; weights drawn wide enough that the
    logits are not just the head's bias, as they nearly are at initialisation)."""
    from ba_net.accel import paths as accel
    from ba_net.accel.inference import InferenceRunner, export_for_inference
    from ba_net.config import load_config
    from ba_net.train.loss import LabelSmoothingCrossEntropy
    from ba_net.train.optim import build_optimizer

    cfg = load_config(None, ("train.batch_size=2", "optimizer.name=momentum", "optimizer.lr=0.01"))
    rng = np.random.default_rng(0)
    with paddle.utils.unique_name.guard():
        model = build_model(name, num_classes=10)
        model.set_state_dict({k: paddle.to_tensor(_perturbed(k, v.numpy(), rng)) for k, v in model.state_dict().items()})
        scheduler = paddle.optimizer.lr.LambdaDecay(0.01, lambda _: 1.0)
        optimizer = build_optimizer(cfg, model.parameters(), scheduler)
        fast = accel.prepare_training(cfg, name, model, optimizer, lambda p: build_optimizer(cfg, p, scheduler),
                                      LabelSmoothingCrossEntropy(0.1), device="cpu", image_shape=(2, 3, 64, 64))
        assert fast is not None, f"{name} fell back to dygraph"
    model.eval()
    x = rng.standard_normal((2, 3, 64, 64)).astype("float32")
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x)).numpy()
    assert np.abs(ref - ref.mean(axis=1, keepdims=True)).max() > 1e-3  # logits that say something
    got = InferenceRunner(export_for_inference(model, tmp_path / "export", (3, 64, 64))).run_numpy(x)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
