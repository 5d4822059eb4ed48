"""Bridge Attention against an independent NumPy implementation using the module's weights."""
import numpy as np
import paddle
import pytest

from ba_net import BridgeAttention, create_attention


def _np_bn(z, bn, training):
    w, b = bn.weight.numpy(), bn.bias.numpy()
    if training:
        mean, var = z.mean(0), z.var(0)  # biased variance, as BN normalizes with
    else:
        mean, var = bn._mean.numpy(), bn._variance.numpy()
    return (z - mean) / np.sqrt(var + bn._epsilon) * w + b


def _np_ba(module, x, bridges, training, act, gate):
    fused = 0.0
    for f, sq, bn in zip(list(bridges) + [x], module.squeeze, module.norms):
        pooled = f.reshape(f.shape[0], f.shape[1], -1).mean(-1)
        fused = fused + _np_bn(pooled @ sq.weight.numpy(), bn, training)
    hidden = {"relu": lambda v: np.maximum(v, 0), "swish": lambda v: v / (1 + np.exp(-v))}[act](fused)
    score = hidden @ module.excite.weight.numpy()
    w = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)),
         "hard_sigmoid": lambda v: np.clip(v / 6 + 0.5, 0, 1)}[gate](score)
    return w.reshape(w.shape + (1,) * (x.ndim - 2))


@pytest.mark.parametrize("channels,bridges,spatial,reduction,act,gate", [
    (128, (192, 192), (7, 7), 16, "relu", "sigmoid"),      # the AlexNet slot
    (64, (), (5, 5), 16, "relu", "sigmoid"),               # no bridge: an SE-like block
    (48, (16, 32, 8), (4, 6), 6, "swish", "sigmoid"),      # EfficientNet form, three bridges
    (96, (24,), (9,), 6, "relu", "hard_sigmoid"),          # MobileNetV3 form, 1-D input
])
@pytest.mark.parametrize("training", [True, False])
def test_matches_numpy(channels, bridges, spatial, reduction, act, gate, training):
    paddle.seed(7)
    ba = BridgeAttention(channels, reduction, act=act, gate=gate, bridge_channels=bridges)
    rng = np.random.default_rng(0)
    for bn in ba.norms:  # non-trivial affine and running statistics so eval mode is tested
        bn.weight.set_value(rng.normal(1, 0.3, bn.weight.shape).astype("float32"))
        bn.bias.set_value(rng.normal(0, 0.3, bn.bias.shape).astype("float32"))
        bn._mean.set_value(rng.normal(0, 0.1, bn._mean.shape).astype("float32"))
        bn._variance.set_value(rng.uniform(0.05, 0.2, bn._variance.shape).astype("float32"))
    ba.train() if training else ba.eval()
    batch = 6
    x = rng.normal(size=(batch, channels) + spatial).astype("float32")
    feats = [rng.normal(size=(batch, c) + spatial).astype("float32") for c in bridges]
    expected = _np_ba(ba, x, feats, training, act, gate)
    x_t, feats_t = paddle.to_tensor(x), [paddle.to_tensor(f) for f in feats]
    weights = ba.weights(x_t, feats_t).numpy()
    assert weights.shape == (batch, channels) + (1,) * len(spatial)
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ba(x_t, feats_t).numpy(), x * expected, rtol=1e-4, atol=1e-5)  # forward: x * w
    assert ba.hidden == max(1, channels // reduction)


def test_weights_scale_feature_and_gradients_reach_every_parameter():
    ba = create_attention("ba", 32, reduction=4, bridge_channels=(16,))
    x = paddle.randn([4, 32, 5, 5])
    x.stop_gradient = False
    bridge = paddle.randn([4, 16, 5, 5])
    w = ba.weights(x, [bridge])
    assert float(w.min()) > 0 and float(w.max()) < 1
    ba(x, [bridge]).sum().backward()
    for name, p in ba.named_parameters():
        if not p.stop_gradient:
            assert p.grad is not None and float(paddle.abs(p.grad).sum()) > 0, name


def test_wrong_number_of_bridges_and_bad_choices_are_errors():
    ba = BridgeAttention(16, 4, bridge_channels=(8, 8))
    with pytest.raises(ValueError, match="2 bridged features, got 1"):
        ba(paddle.randn([2, 16, 3, 3]), [paddle.randn([2, 8, 3, 3])])
    with pytest.raises(ValueError, match="unknown gate 'softmax'"):
        BridgeAttention(16, gate="softmax")
    with pytest.raises(ValueError, match="unknown attention"):
        create_attention("nope", 16)
