"""The attention modules of the notes against independent NumPy implementations using each
module's own weights, their parameter and FLOP counts against hand formulas, and the AlexNet
variants that carry them."""
import numpy as np
import paddle
import pytest

from ba_net import build_model, count_macs, count_params, create_attention, list_attention
from ba_net.attention import (
    CBAM, AttentionWeightedAverage, ChannelGate, EfficientChannelAttention, GlobalWeightedAvgPool,
    SpatialAttention, SpatialGate, SqueezeExcitation, eca_kernel_size,
)

# ---------------------------------------------------------------- NumPy references


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


_ACT = {"relu": lambda v: np.maximum(v, 0), "swish": lambda v: v * _sigmoid(v)}
_GATE = {"sigmoid": _sigmoid, "hard_sigmoid": lambda v: np.clip(v / 6 + 0.5, 0, 1)}


def _np(t):
    return t.numpy().astype("float64")


def _linear(v, layer):  # Paddle stores Linear weights as [in, out]
    out = v @ _np(layer.weight)
    return out + _np(layer.bias) if layer.bias is not None else out


def _same_conv(x, weight, bias=None):
    """Cross-correlation with zero 'same' padding, one output channel: x [B, Cin, *sp]."""
    k = weight.shape[2:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [((n - 1) // 2, (n - 1) // 2) for n in k])
    out = np.zeros((x.shape[0],) + x.shape[2:])
    for offset in np.ndindex(*k):
        window = xp[(slice(None), slice(None)) + tuple(slice(o, o + n) for o, n in zip(offset, x.shape[2:]))]
        out += np.tensordot(window, weight[(0, slice(None)) + offset], axes=([1], [0]))
    if bias is not None:
        out += bias[0]
    return out[:, None]


def _bn(z, bn, training):
    axes = (0,) + tuple(range(2, z.ndim))
    shape = (1, -1) + (1,) * (z.ndim - 2)
    if training:
        mean, var = z.mean(axes).reshape(shape), z.var(axes).reshape(shape)
    else:
        mean, var = _np(bn._mean).reshape(shape), _np(bn._variance).reshape(shape)
    return (z - mean) / np.sqrt(var + bn._epsilon) * _np(bn.weight).reshape(shape) + _np(bn.bias).reshape(shape)


def _pool_positions(x):
    return x.reshape(x.shape[0], x.shape[1], -1)


def _bcast(w, x):
    return w.reshape(w.shape + (1,) * (x.ndim - 2))


def _np_se(m, x, act, gate):
    s = _GATE[gate](_linear(_ACT[act](_linear(_pool_positions(x).mean(-1), m.squeeze)), m.excite))
    return x * _bcast(s, x)


def _np_eca(m, x):
    pooled = _pool_positions(x).mean(-1)[:, None, :]  # channels as the length of a 1-channel signal
    w = _sigmoid(_same_conv(pooled, _np(m.conv.weight))[:, 0])
    return x * _bcast(w, x)


def _np_channel_gate(m, x):
    mlp = lambda v: _linear(np.maximum(_linear(v, m.mlp[0]), 0), m.mlp[2])  # noqa: E731
    flat = _pool_positions(x)
    return _sigmoid(mlp(flat.mean(-1)) + mlp(flat.max(-1)))


def _np_spatial_gate(m, x, training):
    desc = np.concatenate([x.mean(1, keepdims=True), x.max(1, keepdims=True)], axis=1)
    return _sigmoid(_bn(_same_conv(desc, _np(m.conv.weight)), m.norm, training))


def _np_cbam(m, x, training):
    f1 = x * _bcast(_np_channel_gate(m.channel_gate, x), x)
    return f1 * _np_spatial_gate(m.spatial_gate, f1, training)


def _np_sam(m, x):
    return x * _sigmoid(_same_conv(x.mean(1, keepdims=True), _np(m.conv.weight), _np(m.conv.bias)))


def _np_softmax_last(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_awa(m, x):
    flat = _pool_positions(x)
    a = _np_softmax_last(np.einsum("bcn,c->bn", flat, _np(m.weight)))
    return np.einsum("bcn,bn->bc", flat, a)


def _np_gwap(m, x):
    return _pool_positions(x) @ _np_softmax_last(_np(m.logits).ravel())


# ---------------------------------------------------------------- helpers


def _randomize(module, rng):
    """Non-trivial values for every parameter and BN statistic (the pools start at zero)."""
    for layer in module.sublayers(include_self=True):
        if isinstance(layer, (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D)):
            layer._mean.set_value(rng.normal(0, 0.3, layer._mean.shape).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 2.0, layer._variance.shape).astype("float32"))
    for p in module.parameters():
        if not p.stop_gradient:
            p.set_value(rng.normal(0, 0.5, p.shape).astype("float32"))


def _check(module, x, expected, training=False):
    module.train() if training else module.eval()
    got = module(paddle.to_tensor(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


SHAPES = [(6, 32, 5, 7), (6, 32, 11)]  # an image-like and a signal-like input


# ---------------------------------------------------------------- ECA kernel size


@pytest.mark.parametrize("channels,k", [
    # t = int(|(log2 C + 1) / 2|), odd t kept, even t + 1 (worked by hand)
    (1, 1), (4, 1), (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7),
])
def test_eca_kernel_size(channels, k):
    assert eca_kernel_size(channels) == k
    eca = EfficientChannelAttention(channels)
    assert eca.kernel_size == k and list(eca.conv.weight.shape) == [1, 1, k]
    assert count_params(eca)["total"] == k  # no bias


def test_eca_kernel_size_constants_and_override():
    assert eca_kernel_size(128, gamma=1, b=0) == 7  # t = 7, odd
    assert eca_kernel_size(256, gamma=1, b=0) == 9  # t = 8, even -> 9
    assert EfficientChannelAttention(128, kernel_size=9).kernel_size == 9
    with pytest.raises(ValueError, match="odd"):
        EfficientChannelAttention(128, kernel_size=4)


# ---------------------------------------------------------------- numerics


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction,act,gate", [(16, "relu", "sigmoid"), (4, "swish", "hard_sigmoid")])
def test_se_matches_numpy(shape, reduction, act, gate):
    rng = np.random.default_rng(0)
    se = create_attention("se", shape[1], reduction=reduction, act=act, gate=gate)
    assert isinstance(se, SqueezeExcitation)
    _randomize(se, rng)
    x = rng.normal(size=shape).astype("float32")
    _check(se, x, _np_se(se, x.astype("float64"), act, gate))


@pytest.mark.parametrize("shape", SHAPES)
def test_eca_matches_numpy(shape):
    rng = np.random.default_rng(1)
    eca = create_attention("eca", shape[1])
    _randomize(eca, rng)
    x = rng.normal(size=shape).astype("float32")
    _check(eca, x, _np_eca(eca, x.astype("float64")))


@pytest.mark.parametrize("shape,dims", [(SHAPES[0], 2), (SHAPES[1], 1)])
@pytest.mark.parametrize("training", [True, False])
def test_cbam_matches_numpy(shape, dims, training):
    rng = np.random.default_rng(2)
    cbam = create_attention("cbam", shape[1], reduction=8, kernel_size=3 if dims == 2 else 5, dims=dims)
    assert isinstance(cbam, CBAM)
    _randomize(cbam, rng)
    x = rng.normal(size=shape).astype("float32")
    _check(cbam, x, _np_cbam(cbam, x.astype("float64"), training), training)


@pytest.mark.parametrize("shape", [(3, 16, 5, 7), (3, 16, 11)])
def test_cbam_maxima_are_pooling_ops_with_argmax_gradients(shape):
    """CBAM's two maxima (over the positions, over the channels) are pooling ops: a training
    program of the module has no reduce-max, whose CPU gradient in Paddle 3.3 is ~1000x slower
    (a CBAM-ResNet-20 step took 13x ResNet-20's). Values and gradients are the maxima's: the
    gradient of the sum of a max reaches exactly the arg-max elements."""
    from ba_net.attention.helpers import channel_max, global_max_pool
    from ba_net.accel.tracing import legacy_program_mode

    x = np.random.default_rng(6).normal(size=shape).astype("float32")
    for fn, axes in ((global_max_pool, tuple(range(2, len(shape)))), (channel_max, (1,))):
        t = paddle.to_tensor(x, stop_gradient=False)
        out = fn(t)
        np.testing.assert_array_equal(out.numpy().reshape(-1), x.max(axis=axes).reshape(-1))
        out.sum().backward()
        np.testing.assert_array_equal(t.grad.numpy(), (x == x.max(axis=axes, keepdims=True)).astype("float32"))
    with legacy_program_mode(), paddle.utils.unique_name.guard():
        main, startup = paddle.static.Program(), paddle.static.Program()
        with paddle.static.program_guard(main, startup):
            v = paddle.static.data("x", list(shape), "float32")
            v.stop_gradient = False
            cbam = CBAM(shape[1], 8, dims=len(shape) - 2)
            paddle.static.append_backward(cbam(v).mean())
    ops = {op.type for op in main.global_block().ops}
    assert {"pool2d", "pool2d_grad"} <= ops or {"pool3d", "pool3d_grad"} <= ops, sorted(ops)
    assert not {t for t in ops if "max" in t and "pool" not in t}, sorted(ops)  # reduce_max(_grad), max, ...


def test_cbam_gates_are_sigmoid_not_softmax():
    """A softmax gate would sum to 1 over channels / positions; a sigmoid gate does not."""
    rng = np.random.default_rng(3)
    cbam = CBAM(32, 8)
    _randomize(cbam, rng)
    cbam.eval()
    x = paddle.to_tensor(rng.normal(size=(2, 32, 6, 6)).astype("float32"))
    mc = cbam.channel_gate.weights(x).numpy()
    ms = cbam.spatial_gate.weights(x).numpy()
    assert np.abs(mc.sum(1) - 1).min() > 0.1 and np.abs(ms.sum((2, 3)) - 1).min() > 0.1


@pytest.mark.parametrize("dims", [2, 1])
def test_cbam_spatial_batchnorm_keeps_99_percent_as_the_official_code(dims):
    """The official CBAM's BatchNorm2d(momentum=0.01) moves the running mean 1 % of the way to the
    batch mean per training step (Paddle momentum 0.99, not its default 0.9)."""
    rng = np.random.default_rng(4)
    shape = (4, 16, 6, 6) if dims == 2 else (4, 16, 11)
    gate = create_attention("cbam", 16, kernel_size=7 if dims == 2 else 5, dims=dims).spatial_gate
    x = paddle.to_tensor(rng.normal(2.0, 1.0, size=shape).astype("float32"))
    desc = paddle.concat([x.mean(axis=1, keepdim=True), x.max(axis=1, keepdim=True)], axis=1)
    batch_mean = float(gate.conv(desc).numpy().mean())
    gate.train()
    for step in range(1, 3):  # from 0: 0.01 m after one step, (1 - 0.99^2) m after two
        gate(x)
        assert float(gate.norm._mean.numpy()[0]) == pytest.approx((1 - 0.99 ** step) * batch_mean, rel=1e-4)
    assert gate.norm._epsilon == pytest.approx(1e-5)


@pytest.mark.parametrize("shape,kernel", [(SHAPES[0], 7), ((4, 16, 12, 3), (3, 1)), (SHAPES[1], (5,))])
def test_spatial_attention_matches_numpy(shape, kernel):
    rng = np.random.default_rng(4)
    sam = create_attention("sam", shape[1], kernel_size=kernel)
    _randomize(sam, rng)
    x = rng.normal(size=shape).astype("float32")
    _check(sam, x, _np_sam(sam, x.astype("float64")))


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_weighted_average_matches_numpy(shape):
    rng = np.random.default_rng(5)
    awa = AttentionWeightedAverage(shape[1])
    _randomize(awa, rng)
    x = rng.normal(size=shape).astype("float32")
    _check(awa, x, _np_awa(awa, x.astype("float64")))


def test_attention_weighted_average_is_stable_for_large_scores():
    """Scores in the thousands overflow exp() unless the max is subtracted first."""
    rng = np.random.default_rng(6)
    awa = AttentionWeightedAverage(16)
    awa.weight.set_value(np.full([16], 200.0, dtype="float32"))
    x = rng.normal(size=(3, 16, 4, 4)).astype("float32") + 2.0
    got = awa(paddle.to_tensor(x)).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, _np_awa(awa, x.astype("float64")), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_global_weighted_average_matches_numpy(shape):
    rng = np.random.default_rng(7)
    gwap = GlobalWeightedAvgPool(shape[1], size=shape[2:])
    _randomize(gwap, rng)
    x = rng.normal(size=shape).astype("float32")
    _check(gwap, x, _np_gwap(gwap, x.astype("float64")))
    with pytest.raises(ValueError, match="spatial size"):
        gwap(paddle.randn([2, shape[1]] + [s + 1 for s in shape[2:]]))


@pytest.mark.parametrize("pool", [lambda: AttentionWeightedAverage(32), lambda: GlobalWeightedAvgPool(32, size=(5, 7))])
def test_pools_start_as_global_average(pool):
    x = np.random.default_rng(8).normal(size=SHAPES[0]).astype("float32")
    got = pool()(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(got, x.mean((2, 3)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- gates, gradients, counts


def _gate_values(module, x):
    if isinstance(module, CBAM):
        return [module.channel_gate.weights(x), module.spatial_gate.weights(module.channel_gate(x))]
    if isinstance(module, GlobalWeightedAvgPool):
        return [module.weights()]
    return [module.weights(x)]


POOLS = {"attention_weighted_avg": AttentionWeightedAverage, "global_weighted_avg": GlobalWeightedAvgPool}


def _build(name, shape):
    if name in POOLS:  # pooling layers of the multi-attention head, outside the factory
        return POOLS[name](shape[1], **({"size": shape[2:]} if name == "global_weighted_avg" else {}))
    kw = {}
    if name in ("cbam", "sam") and len(shape) == 3:
        kw["dims"] = 1
    if name == "ba":
        kw["bridge_channels"] = ()
    return create_attention(name, shape[1], **kw)


FACTORY = ["se", "eca", "cbam", "sam"]  # plus "ba", bridged (tests/test_bridge_attention.py)
NON_BRIDGED = FACTORY + list(POOLS)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NON_BRIDGED)
def test_shapes_gates_and_gradients(name, shape):
    rng = np.random.default_rng(9)
    module = _build(name, shape)
    _randomize(module, rng)
    module.train()
    x = paddle.to_tensor(rng.normal(size=shape).astype("float32"))
    x.stop_gradient = False
    y = module(x)
    pooled = name in POOLS
    assert list(y.shape) == (list(shape[:2]) if pooled else list(shape))
    for g in _gate_values(module, x):
        g = g.numpy()
        assert g.min() > 0 and g.max() < 1
        if pooled:  # a distribution over positions
            np.testing.assert_allclose(g.sum(-1), 1, rtol=1e-5)
    (y * paddle.to_tensor(rng.normal(size=y.shape).astype("float32"))).sum().backward()
    assert float(paddle.abs(x.grad).sum()) > 0
    trainable = [(n, p) for n, p in module.named_parameters() if not p.stop_gradient]
    assert trainable
    for n, p in trainable:
        assert p.grad is not None and float(paddle.abs(p.grad).sum()) > 0, n


def _param_formula(name, c, r=16, size=(5, 7)):
    h = max(1, c // r)
    mlp = c * h + h + h * c + c  # two linear layers with biases
    return {
        "se": mlp,
        "eca": eca_kernel_size(c),
        "cbam": mlp + 2 * 7 * 7 + 4,  # conv 2->1 without bias, BN(1): weight, bias, mean, variance
        "sam": 7 * 7 + 1,
        "attention_weighted_avg": c,
        "global_weighted_avg": int(np.prod(size)),
    }[name]


@pytest.mark.parametrize("c", [32, 128, 200])
@pytest.mark.parametrize("name", NON_BRIDGED)
def test_param_counts_match_formula(name, c):
    module = _build(name, (1, c, 5, 7))
    assert count_params(module)["total"] == _param_formula(name, c)
    running = 2 if name == "cbam" else 0
    assert count_params(module)["trainable"] == _param_formula(name, c) - running


def _flops_formula(name, c, n, r=16):
    """Per image at C channels and n positions, Paddle's convention: linear/conv multiply-adds
    (+1 per bias element), adaptive-pool-like means (kernel + 1) per output, BN 2 per element,
    elementwise products and sums 1 per element, sigmoid / softmax / max 0."""
    h = max(1, c // r)
    mlp = c * h + h * c  # paddle.flops does not count the biases of Linear layers
    weigh = c * n
    return {
        "se": c * (n + 1) + mlp + weigh,
        "eca": c * (n + 1) + c * eca_kernel_size(c) + weigh,
        "cbam": (c * (n + 1) + 2 * mlp + c + weigh) + (n * (c + 1) + n * 2 * 49 + 2 * n + weigh),
        "sam": n * (c + 1) + n * (49 + 1) + weigh,
        "attention_weighted_avg": 2 * c * n,
        "global_weighted_avg": c * n,
    }[name]


@pytest.mark.parametrize("name", NON_BRIDGED)
def test_flops_match_formula(name):
    shape = (2, 64, 5, 7)
    assert count_macs(_build(name, shape), shape) == 2 * _flops_formula(name, 64, 35)


def test_registry_and_errors():
    assert set(FACTORY + ["ba"]) == set(list_attention())
    with pytest.raises(ValueError, match="unknown attention 'nope'.*cbam.*eca.*sam.*se"):
        create_attention("nope", 16)
    with pytest.raises(ValueError, match="unknown activation"):
        create_attention("se", 16, act="tanh")
    with pytest.raises(ValueError, match="2 spatial axes"):
        SpatialAttention(8)(paddle.randn([2, 8, 9]))
    with pytest.raises(ValueError, match="1 spatial axes"):
        SpatialGate(8, dims=1)(paddle.randn([2, 8, 3, 3]))
    with pytest.raises(ValueError, match="unknown attention 'attention_weighted_avg'"):
        build_model("alexnet", num_classes=10, attention="attention_weighted_avg")  # a pool: not at the BA slot
    with pytest.raises(TypeError, match="unexpected keyword argument 'bridge_channels'"):
        create_attention("se", 16, bridge_channels=(8,))  # unknown keywords raise
    with pytest.raises(TypeError, match="without attention takes no attention arguments"):
        build_model("alexnet", num_classes=10, reduction=8)  # not silently dropped
    assert ChannelGate(8, 16).hidden == 1


# ---------------------------------------------------------------- AlexNet variants

ALEX_PARAMS = 7_524_042
SLOT_C, SLOT_N = 128, 7 * 7  # conv5 at 128 px


@pytest.fixture(scope="module")
def alex_flops():
    return count_macs(build_model("alexnet", num_classes=10))


@pytest.mark.parametrize("model,attention", [
    ("alexnet_se", "se"), ("alexnet_eca", "eca"), ("alexnet_cbam", "cbam"), ("alexnet_sam", "sam")])
def test_alexnet_variants(model, attention, alex_flops):
    net = build_model(model, num_classes=10)
    assert count_params(net)["total"] == ALEX_PARAMS + _param_formula(attention, SLOT_C)
    flops = count_macs(net)
    assert flops == alex_flops + _flops_formula(attention, SLOT_C, SLOT_N) > alex_flops

    net.train()
    x = paddle.randn([2, 3, 128, 128])
    out = net(x)
    assert list(out.shape) == [2, 10] and np.isfinite(out.numpy()).all()
    (out * paddle.randn(out.shape)).sum().backward()
    for n, p in net.named_parameters():
        if not p.stop_gradient:
            assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), n
            if n.startswith("attention."):
                assert float(paddle.abs(p.grad).sum()) > 0, n


def test_alexnet_multihead(alex_flops):
    net = build_model("alexnet_multihead", num_classes=10)
    c, n = SLOT_C, SLOT_N
    alex_classifier = 1152 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 10 + 10
    head = _param_formula("cbam", c) + n + c + 4 * c + (c * 512 + 512) + (512 * 10 + 10)
    assert count_params(net)["total"] == ALEX_PARAMS - alex_classifier + head
    alex_classifier_flops = 1152 * 2048 + 2048 * 2048 + 2048 * 10
    head_flops = (_flops_formula("cbam", c, n) + _flops_formula("global_weighted_avg", c, n)
                  + _flops_formula("attention_weighted_avg", c, n) + c + 2 * c + c * 512 + 512 * 10)
    assert count_macs(net) == alex_flops - alex_classifier_flops + head_flops

    net.train()
    out = net(paddle.randn([3, 3, 128, 128]))
    assert list(out.shape) == [3, 10] and np.isfinite(out.numpy()).all()
    (out * paddle.randn(out.shape)).sum().backward()
    for name, p in net.named_parameters():
        if not p.stop_gradient:
            assert p.grad is not None and float(paddle.abs(p.grad).sum()) > 0, name
    # AlexNet's feature weights load by name
    alex = build_model("alexnet", num_classes=10).state_dict()
    feats = {k: v for k, v in alex.items() if not k.startswith("classifier.")}
    assert set(feats) <= set(net.state_dict())
