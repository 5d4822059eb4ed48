"""ResNets and BA-ResNets (ba_net.models.resnet): published parameter counts, counts by hand,
what Bridge Attention receives, an independent NumPy forward, FLOPs, training on the sample."""
import functools

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from ba_net import build_model, count_macs, count_params, list_models
from ba_net.data import read_cifar10
from ba_net.models.cifar_resnet import CifarResNet
from ba_net.models.resnet import BasicBlock, Bottleneck, ResNet, conv1x1, stage_reduction

# Trainable parameters measured from the official BA-Net code and torchvision (1,000 classes),
# and for He et al.'s CIFAR form with projection shortcuts (10 classes; BA r = 16, hidden >= 1).
PUBLISHED = {
    "resnet18": (1000, 11_689_512),
    "ba_resnet18": (1000, 11_820_552),
    "resnet50": (1000, 25_557_032),
    "ba_resnet50": (1000, 28_706_376),
    "resnet34": (1000, 21_797_672),  # torchvision
    "resnet101": (1000, 44_549_160),  # torchvision
    "resnet20": (10, 272_474),
    "ba_resnet20": (10, 275_582),
    "resnet56": (10, 855_770),
    "ba_resnet56": (10, 865_094),
}


@functools.lru_cache(maxsize=None)
def _model(name, num_classes):
    """Models built once per test session (the ImageNet ones take a second each); tests that
    change weights build their own."""
    return build_model(name, num_classes=num_classes)


def _trainable(layer):
    return count_params(layer)["trainable"]


# --- counts by hand --------------------------------------------------------------------------

def _ba_by_hand(bridges, c, r=16):
    """BA's trainable parameters: one bias-free linear squeeze per feature (bridges + current)
    to h = max(1, c // r), one BN1d (weight, bias) per squeeze, a bias-free excitation h -> c."""
    h = max(1, c // r)
    return sum(cin * h for cin in bridges) + c * h + 2 * h * (len(bridges) + 1) + h * c


def _basic_by_hand(cin, p, projection, ba=False, r=16):
    n = 9 * cin * p + 9 * p * p + 2 * p + 2 * p  # conv1, conv2, bn1, bn2 (weight + bias)
    if projection:
        n += cin * p + 2 * p
    if ba:
        n += _ba_by_hand([p], p, r)
    return n


def _bottleneck_by_hand(cin, p, projection, ba=False, r=16):
    w = 4 * p
    n = cin * p + 9 * p * p + p * w + 2 * p + 2 * p + 2 * w
    if projection:
        n += cin * w + 2 * w
    if ba:
        n += _ba_by_hand([p, p], w, r)
    return n


def _cifar_by_hand(depth, classes=10, block_extra=lambda c: 0, projection=True):
    n = (depth - 2) // 6
    total = 9 * 3 * 16 + 2 * 16 + 64 * classes + classes  # stem conv + BN, fc
    cin = 16
    for c in (16, 32, 64):
        for i in range(n):
            total += _basic_by_hand(cin, c, projection and cin != c) + block_extra(c)
            cin = c
    return total


def _imagenet_by_hand(bottleneck, layers, classes=1000, ba=False):
    total = 7 * 7 * 3 * 64 + 2 * 64
    cin = 64
    for planes, n in zip((64, 128, 256, 512), layers):
        for i in range(n):
            if bottleneck:
                total += _bottleneck_by_hand(cin, planes, i == 0, ba)
                cin = 4 * planes
            else:
                total += _basic_by_hand(cin, planes, cin != planes, ba)
                cin = planes
    return total + cin * classes + classes


def test_hand_formulas_give_the_published_counts():
    assert _imagenet_by_hand(False, [2, 2, 2, 2]) == 11_689_512
    assert _imagenet_by_hand(False, [2, 2, 2, 2], ba=True) == 11_820_552
    assert _imagenet_by_hand(True, [3, 4, 6, 3]) == 25_557_032
    assert _imagenet_by_hand(True, [3, 4, 6, 3], ba=True) == 28_706_376
    assert _cifar_by_hand(20) == 272_474
    assert _cifar_by_hand(56) == 855_770
    assert _cifar_by_hand(20, block_extra=lambda c: _ba_by_hand([c], c)) == 275_582
    assert _cifar_by_hand(56, block_extra=lambda c: _ba_by_hand([c], c)) == 865_094
    # the paper's option A shortcuts (no projection parameters), quoted in the module docstring
    assert _cifar_by_hand(20, projection=False) == 269_722
    assert _cifar_by_hand(56, projection=False) == 853_018


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_trainable_parameters_equal_published_figures(name):
    classes, expected = PUBLISHED[name]
    counts = count_params(_model(name, classes))
    assert counts["trainable"] == expected


def test_deeper_ba_models_equal_hand_counts():
    assert _trainable(_model("ba_resnet34", 1000)) == _imagenet_by_hand(False, [3, 4, 6, 3], ba=True)
    assert _trainable(_model("ba_resnet101", 1000)) == _imagenet_by_hand(True, [3, 4, 23, 3], ba=True)


@pytest.mark.parametrize("cin,planes,stride", [(16, 16, 1), (16, 32, 2), (64, 64, 1), (32, 128, 2)])
@pytest.mark.parametrize("attention", [None, "ba"])
def test_basic_block_count_by_hand(cin, planes, stride, attention):
    projection = stride != 1 or cin != planes
    down = paddle.nn.Sequential(conv1x1(cin, planes, stride), paddle.nn.BatchNorm2D(planes)) if projection else None
    block = BasicBlock(cin, planes, stride, down, attention=attention)
    assert _trainable(block) == _basic_by_hand(cin, planes, projection, ba=attention == "ba")


@pytest.mark.parametrize("cin,planes,stride", [(64, 64, 1), (256, 64, 1), (256, 128, 2)])
@pytest.mark.parametrize("attention", [None, "ba"])
def test_bottleneck_count_by_hand(cin, planes, stride, attention):
    projection = stride != 1 or cin != 4 * planes
    down = (paddle.nn.Sequential(conv1x1(cin, 4 * planes, stride), paddle.nn.BatchNorm2D(4 * planes))
            if projection else None)
    block = Bottleneck(cin, planes, stride, down, attention=attention)
    assert _trainable(block) == _bottleneck_by_hand(cin, planes, projection, ba=attention == "ba")


def _se_by_hand(c, r=16):  # two linear layers with biases
    h = max(1, c // r)
    return c * h + h + h * c + c


def _eca_by_hand(c):  # one bias-free conv1d of k = odd(|(log2 C + 1) / 2|)
    t = int(abs((np.log2(c) + 1) / 2))
    return t if t % 2 else t + 1


def _cbam_by_hand(c, r=16):  # the SE-like shared MLP, a bias-free 7x7 conv 2 -> 1 and its BN
    return _se_by_hand(c, r) + 2 * 49 + 2


@pytest.mark.parametrize("name,extra", [
    ("resnet20_se", _se_by_hand), ("resnet20_eca", _eca_by_hand), ("resnet20_cbam", _cbam_by_hand),
    ("resnet56_se", _se_by_hand), ("resnet56_eca", _eca_by_hand), ("resnet56_cbam", _cbam_by_hand),
])
def test_cifar_attention_variants_count_by_hand(name, extra):
    depth = int(name[6:8])
    assert _trainable(_model(name, 10)) == _cifar_by_hand(depth, block_extra=extra)


def test_min_hidden_widens_narrow_stages_only():
    # official: hidden widths 1 / 2 / 4 in the 16 / 32 / 64-channel stages
    widths = {blk.attention.hidden for blk in _model("ba_resnet20", 10).sublayers() if isinstance(blk, BasicBlock)}
    assert widths == {1, 2, 4}
    model = build_model("ba_resnet20", num_classes=10, min_hidden=4)
    blocks = [blk for blk in model.sublayers() if isinstance(blk, BasicBlock)]
    assert {blk.attention.hidden for blk in blocks} == {4}
    assert _trainable(model) == 272_474 + 3 * (3 * 16 * 4 + 16) + 3 * (3 * 32 * 4 + 16) + 3 * (3 * 64 * 4 + 16)
    assert stage_reduction(16, 16, 4) == 4 and stage_reduction(32, 16, 4) == 8 and stage_reduction(64, 16, 4) == 16
    assert stage_reduction(16, 16, 1) == 16 and stage_reduction(512, 16, 4) == 16
    # the ImageNet form's widths (64 channels and more) are untouched by min_hidden up to 4
    assert _trainable(build_model("ba_resnet18", num_classes=1000, min_hidden=4)) == 11_820_552
    # a user-chosen reduction is respected and floored the same way
    se = build_model("resnet20_se", num_classes=10, reduction=4, min_hidden=8)
    assert {b.attention.hidden for b in se.sublayers() if isinstance(b, BasicBlock)} == {8, 16}


# --- API -------------------------------------------------------------------------------------

def test_registry_names_input_size_and_parameter_names():
    names = {"resnet20", "resnet56", "ba_resnet20", "ba_resnet56", "resnet20_se", "resnet20_eca", "resnet20_cbam",
             "resnet56_se", "resnet56_eca", "resnet56_cbam", "resnet18", "resnet50", "ba_resnet18", "ba_resnet50",
             "resnet34", "resnet101", "ba_resnet34", "ba_resnet101"}
    assert names <= set(list_models(images_only=True))
    cifar, imagenet = _model("ba_resnet20", 10), _model("ba_resnet50", 1000)
    assert isinstance(cifar, CifarResNet) and cifar.input_size == 32
    assert isinstance(imagenet, ResNet) and imagenet.input_size == 224
    assert _model("resnet18", 1000).input_size == 224 and _model("resnet56", 10).input_size == 32
    keys = set(imagenet.state_dict())
    for key in ("conv1.weight", "bn1.weight", "bn1._mean", "layer1.0.conv1.weight", "layer1.0.bn3._variance",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight", "layer4.2.conv3.weight",
                "layer2.0.attention.squeeze.0.weight", "layer2.0.attention.squeeze.2.weight",
                "layer2.0.attention.norms.1.weight", "layer2.0.attention.excite.weight", "fc.weight", "fc.bias"):
        assert key in keys, key
    assert "layer2.0.downsample.0.weight" in cifar.state_dict() and "layer1.0.downsample.0.weight" not in cifar.state_dict()


def test_unknown_or_misplaced_arguments_raise():
    with pytest.raises(TypeError):
        build_model("ba_resnet20", num_classes=10, nonsense=1)  # the attention module refuses it
    with pytest.raises(TypeError, match="without attention"):
        build_model("resnet20", num_classes=10, reduction=8)
    with pytest.raises(TypeError, match="without attention"):
        build_model("resnet18", num_classes=10, min_hidden=4)
    with pytest.raises(TypeError):
        build_model("resnet50", num_classes=10, nonsense=1)
    with pytest.raises(TypeError, match="bridge_channels"):
        build_model("ba_resnet20", num_classes=10, bridge_channels=(16,))
    with pytest.raises(TypeError):
        BasicBlock(16, 16, nonsense=1)
    with pytest.raises(TypeError, match="without attention"):
        Bottleneck(64, 16, attn_kwargs={"reduction": 4})
    with pytest.raises(ValueError, match="unknown attention"):
        BasicBlock(16, 16, attention="bogus")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=21, num_classes=10)
    with pytest.raises(ValueError, match="min_hidden"):
        build_model("ba_resnet20", num_classes=10, min_hidden=0)


@pytest.mark.parametrize("name", ["resnet20", "ba_resnet20", "resnet20_se", "resnet20_eca", "resnet20_cbam"])
def test_cifar_models_forward(name):
    model = _model(name, 10)
    model.eval()
    assert model(paddle.randn([2, 3, 32, 32])).shape == [2, 10]


@pytest.mark.parametrize("name", ["resnet18", "ba_resnet18", "resnet50", "ba_resnet50"])
def test_imagenet_models_forward_on_a_small_image(name):
    model = _model(name, 1000)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, 64, 64]))
    assert out.shape == [1, 1000] and np.isfinite(out.numpy()).all()


# --- what the attention module receives --------------------------------------------------------

def _randomise(layer, seed=0):
    """Random weights and BN running statistics, so an eval-mode forward tests every term."""
    rng = np.random.default_rng(seed)
    for name, t in layer.state_dict().items():
        shape = list(t.shape)
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("_mean"):
            value = rng.normal(0, 0.3, shape)
        elif len(shape) == 1:  # BN weights / biases
            value = rng.normal(1.0 if name.endswith("weight") else 0.0, 0.3, shape)
        else:
            value = rng.normal(0, 0.3, shape)
        t.set_value(value.astype("float32"))


def _capture_inputs(module):
    seen = {}

    def hook(layer, inputs):
        seen["inputs"] = inputs

    return seen, module.register_forward_pre_hook(hook)


def _make_block(kind, attention, attn_kwargs=None):
    if kind == "basic":
        down = paddle.nn.Sequential(conv1x1(8, 16, 2), paddle.nn.BatchNorm2D(16))
        return BasicBlock(8, 16, 2, down, attention=attention, attn_kwargs=attn_kwargs)
    down = paddle.nn.Sequential(conv1x1(8, 16, 2), paddle.nn.BatchNorm2D(16))
    return Bottleneck(8, 4, 2, down, attention=attention, attn_kwargs=attn_kwargs)


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
@pytest.mark.parametrize("attention", ["ba", "se", "eca", "cbam"])
def test_attention_receives_the_official_features(kind, attention):
    block = _make_block(kind, attention, {"reduction": 4})
    _randomise(block)
    block.eval()
    x = paddle.randn([3, 8, 6, 6])
    seen, handle = _capture_inputs(block.attention)
    with paddle.no_grad():
        out = block(x)
        f1 = F.relu(block.bn1(block.conv1(x)))
        if kind == "basic":
            bridges, last = [f1], block.bn2(block.conv2(f1))
        else:
            f2 = F.relu(block.bn2(block.conv2(f1)))
            bridges, last = [f1, f2], block.bn3(block.conv3(f2))
        shortcut = block.downsample(x)
    handle.remove()
    inputs = seen["inputs"]
    np.testing.assert_allclose(inputs[0].numpy(), last.numpy(), rtol=1e-5, atol=1e-6)
    if attention == "ba":
        assert len(inputs) == 2 and len(inputs[1]) == len(bridges)
        for got, want in zip(inputs[1], bridges):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
        weights = block.attention.weights(last, bridges)
    else:
        assert len(inputs) == 1
        weights = block.attention.weights(last) if attention != "cbam" else None
    if weights is not None:  # out = relu(last * w + shortcut)
        np.testing.assert_allclose(out.numpy(), F.relu(last * weights + shortcut).numpy(), rtol=1e-5, atol=1e-5)
    # the weights really re-weight this tensor: the result differs from the block without them
    without = F.relu(last + shortcut).numpy()
    assert np.abs(out.numpy() - without).max() > 1e-3


# --- an independent NumPy forward ----------------------------------------------------------------

def _np_conv(x, w, stride, pad):
    """Plain convolution: x [B, C, H, W], w [O, C, k, k], zero padding, no bias."""
    b, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((b, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]  # [B, C, k, k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def _np_bn(x, p, prefix, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = p[prefix + "._mean"].reshape(shape), p[prefix + "._variance"].reshape(shape)
    return (x - mean) / np.sqrt(var + eps) * p[prefix + ".weight"].reshape(shape) + p[prefix + ".bias"].reshape(shape)


def _np_relu(x):
    return np.maximum(x, 0)


def _np_ba(current, bridges, p):
    """BA: S_i = BN_i(GAP(F_i) W_i) for every bridge and the current feature, summed;
    w = sigmoid(relu(sum) W_e); result current * w. (Paddle's Linear weight is [in, out].)"""
    fused = 0
    for i, f in enumerate(bridges + [current]):
        fused = fused + _np_bn(f.mean(axis=(2, 3)) @ p[f"attention.squeeze.{i}.weight"], p, f"attention.norms.{i}")
    assert (fused > 0).any(), "the hidden ReLU is off everywhere: the excitation would go untested"
    w = 1 / (1 + np.exp(-(_np_relu(fused) @ p["attention.excite.weight"])))
    return current * w[:, :, None, None]


def _np_block(kind, p, x):
    shortcut = _np_bn(_np_conv(x, p["downsample.0.weight"], 2, 0), p, "downsample.1")
    if kind == "basic":
        f1 = _np_relu(_np_bn(_np_conv(x, p["conv1.weight"], 2, 1), p, "bn1"))
        out = _np_bn(_np_conv(f1, p["conv2.weight"], 1, 1), p, "bn2")
        out = _np_ba(out, [f1], p)
    else:
        f1 = _np_relu(_np_bn(_np_conv(x, p["conv1.weight"], 1, 0), p, "bn1"))
        f2 = _np_relu(_np_bn(_np_conv(f1, p["conv2.weight"], 2, 1), p, "bn2"))
        out = _np_bn(_np_conv(f2, p["conv3.weight"], 1, 0), p, "bn3")
        out = _np_ba(out, [f1, f2], p)
    return _np_relu(out + shortcut)


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_ba_block_equals_numpy_reimplementation(kind):
    block = _make_block(kind, "ba", {"reduction": 4})  # hidden width 4
    _randomise(block, seed=3)
    block.eval()
    p = {k: v.numpy().astype(np.float64) for k, v in block.state_dict().items()}
    x = np.random.default_rng(7).normal(size=(2, 8, 7, 7))
    got = block(paddle.to_tensor(x.astype("float32"))).numpy()
    want = _np_block(kind, p, x)
    assert got.shape == want.shape == (2, 16, 4, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# --- the attention matters and learns --------------------------------------------------------------

def test_output_depends_on_ba_weights_and_gradients_reach_every_parameter():
    model = build_model("ba_resnet20", num_classes=10)
    # train mode: BA's BN1d normalises over the batch, so its ReLU is on for some samples (in
    # eval mode at init a width-1 unit may be off for a whole small batch: weights all 0.5)
    model.train()
    x = paddle.randn([4, 3, 32, 32])
    for block in (model.layer1[0], model.layer3[2]):  # hidden widths 1 and 4
        with paddle.no_grad():
            before = model(x).numpy()
            excite = block.attention.excite.weight
            excite.set_value(paddle.randn(excite.shape) * 3)
            assert np.abs(model(x).numpy() - before).max() > 1e-4

    loss = F.cross_entropy(model(x), paddle.to_tensor([0, 1, 2, 3]))
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    assert len(trainable) > 0
    missing = [n for n, p in trainable if p.grad is None or float(paddle.abs(p.grad).sum()) == 0.0]
    assert missing == []
    assert any(".attention." in n for n, _ in trainable)


# --- FLOPs ---------------------------------------------------------------------------------------

def _ba_flops_by_hand(c, hw, h, bridges=1):
    pools = (bridges + 1) * c * (hw + 1)  # adaptive-pool convention: adds + one divide per channel
    squeezes = (bridges + 1) * c * h  # bridges have c channels in the basic block
    norms = (bridges + 1) * 2 * h
    return pools + squeezes + norms + bridges * h + h * c + c * hw  # branch sums, excite, product


def test_flops_follow_paddle_plus_residual_adds_and_ba_work(capsys):
    plain = _model("resnet20", 10)
    # the residual adds: 3 blocks per stage at 16x32x32, 32x16x16, 64x8x8
    adds = 3 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)
    assert count_macs(plain, (1, 3, 32, 32)) == paddle.flops(plain, [1, 3, 32, 32]) + adds
    ba = _model("ba_resnet20", 10)
    by_hand = 3 * (_ba_flops_by_hand(16, 1024, 1) + _ba_flops_by_hand(32, 256, 2) + _ba_flops_by_hand(64, 64, 4))
    assert count_macs(ba, (1, 3, 32, 32)) - count_macs(plain, (1, 3, 32, 32)) == by_hand
    assert count_macs(ba, (2, 3, 32, 32)) == 2 * count_macs(ba, (1, 3, 32, 32))
    r50 = _model("resnet50", 1000)
    adds50 = sum(n * 4 * p * s * s for n, p, s in ((3, 64, 56), (4, 128, 28), (6, 256, 14), (3, 512, 7)))
    assert count_macs(r50, (1, 3, 224, 224)) == paddle.flops(r50, [1, 3, 224, 224]) + adds50


# --- a short training on the embedded sample --------------------------------------------------------

def test_short_training_lowers_the_loss(cifar_subset):
    n = 32
    images, labels = read_cifar10(cifar_subset, "train")
    x = images[:n].astype("float32") / 255.0
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    x = paddle.to_tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    y = paddle.to_tensor(labels[:n].astype("int64"))
    model = build_model("ba_resnet20", num_classes=10)
    opt = paddle.optimizer.Momentum(learning_rate=0.05, momentum=0.9, use_nesterov=True,
                                    parameters=model.parameters())

    def loss_on_all():  # batch statistics, as in training; no parameter update
        model.train()
        with paddle.no_grad():
            return float(F.cross_entropy(model(x), y))

    before = loss_on_all()
    rng = np.random.default_rng(0)
    for _ in range(4):  # 8 steps of 16 images
        order = rng.permutation(n)
        for i in range(0, n, 16):
            idx = paddle.to_tensor(order[i:i + 16])
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.clear_grad()
    after = loss_on_all()
    print(f"ba_resnet20 on {n} sample images, 8 SGD steps: loss {before:.3f} -> {after:.3f}")
    assert np.isfinite(after)
    # measured 2.31 -> 1.64 (Paddle 3.3 and 3.0, CPU, ~2.5 s of CPU; 0.57-0.93 from 7 other random
    # initialisations); half that drop is required. Training only the head (features detached) drops
    # it by 0.27 and fails.
    assert after < before - 0.33, (before, after)


def test_initialisation_follows_the_reference():
    fresh = build_model("ba_resnet20", num_classes=10)
    for name, p in fresh.named_parameters():
        if len(p.shape) == 4 and int(np.prod(p.shape)) >= 4096:  # Kaiming normal, fan_out, ReLU gain
            fan_out = p.shape[0] * p.shape[2] * p.shape[3]
            assert abs(float(p.numpy().std()) / np.sqrt(2.0 / fan_out) - 1) < 0.1, name
    for name, layer in fresh.named_sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            assert (layer.weight.numpy() == 1).all() and (layer.bias.numpy() == 0).all(), name
    bound = 1 / np.sqrt(64)  # PyTorch's default Linear init for the 64 -> 10 head
    w = fresh.fc.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
