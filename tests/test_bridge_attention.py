"""Bridge Attention against an independent NumPy implementation using the module's weights, and
against the implementation it replaced (:class:`ReferenceBridgeAttention`, kept here verbatim with
its mean over [2, 3]): same state dict, outputs, gradients and BatchNorm running statistics."""
from typing import Sequence

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ba_net import BridgeAttention, create_attention
from ba_net.attention import helpers
from ba_net.attention.helpers import expand_like, hidden_width, make_activation, make_gate


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


# --- the implementation this one replaced -----------------------------------------------------------

def _reference_global_avg_pool(x):
    """The former ``helpers.global_avg_pool``: a mean over [2, ..., ndim - 1] at once."""
    return x.mean(axis=list(range(2, x.ndim))) if x.ndim > 2 else x


class ReferenceBridgeAttention(nn.Layer):
    """``ba_net.attention.bridge.BridgeAttention`` as it was before the GAP change (issue 26),
    forward and weights verbatim; ``extra_flops`` left out."""

    bridged = True

    def __init__(self, channels: int, reduction: int = 16, act: str = "relu", gate: str = "sigmoid",
                 bridge_channels: Sequence[int] = ()):
        super().__init__()
        self.channels = channels
        self.hidden = hidden_width(channels, reduction)
        self.bridge_channels = tuple(int(c) for c in bridge_channels)
        self.squeeze = nn.LayerList(
            [nn.Linear(c, self.hidden, bias_attr=False) for c in self.bridge_channels + (channels,)]
        )
        self.norms = nn.LayerList([nn.BatchNorm1D(self.hidden) for _ in self.squeeze])
        self.act = make_activation(act)
        self.excite = nn.Linear(self.hidden, channels, bias_attr=False)
        self.gate = make_gate(gate)

    def forward(self, x, bridges=()):
        return x * self.weights(x, bridges)

    def weights(self, x, bridges=()):
        features = list(bridges) + [x]
        if len(features) != len(self.squeeze):
            raise ValueError(
                f"BridgeAttention built for {len(self.squeeze) - 1} bridged features, got {len(features) - 1}"
            )
        fused = None
        for feature, squeeze, norm in zip(features, self.squeeze, self.norms):
            s = norm(squeeze(_reference_global_avg_pool(feature)))
            fused = s if fused is None else fused + s
        weights = self.gate(self.excite(self.act(fused)))
        return expand_like(weights, x)


def _pair(channels, bridges, reduction, act, gate, seed=0):
    """The reference and the current module with the same (random) weights and running statistics."""
    paddle.seed(seed)
    ref = ReferenceBridgeAttention(channels, reduction, act=act, gate=gate, bridge_channels=bridges)
    new = BridgeAttention(channels, reduction, act=act, gate=gate, bridge_channels=bridges)
    rng = np.random.default_rng(seed)
    for name, t in ref.state_dict().items():
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 2.0, t.shape)
        elif name.endswith("_mean"):
            value = rng.normal(0, 0.3, t.shape)
        elif name.startswith("norms."):
            value = rng.normal(1.0 if name.endswith("weight") else 0.0, 0.3, t.shape)
        else:
            value = rng.normal(0, 0.5, t.shape)
        t.set_value(value.astype("float32"))
    missing, unexpected = new.set_state_dict(ref.state_dict())
    assert not missing and not unexpected
    return ref, new


def _inputs(channels, bridges, spatial, batch=8, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, channels) + spatial).astype("float32")
    feats = [rng.normal(size=(batch, c) + spatial).astype("float32") for c in bridges]
    return x, feats


def _tensors(x, feats):
    xs = paddle.to_tensor(x, stop_gradient=False)
    fs = [paddle.to_tensor(f, stop_gradient=False) for f in feats]
    return xs, fs


VARIANTS = [("relu", "sigmoid"), ("swish", "sigmoid"), ("relu", "hard_sigmoid")]
BRIDGES = [(), (16,), (16, 24)]


@pytest.mark.parametrize("bridges", BRIDGES)
def test_state_dict_keys_and_shapes_are_the_reference_ones(bridges):
    ref, new = _pair(32, bridges, 4, "relu", "sigmoid")
    got = {k: list(v.shape) for k, v in new.state_dict().items()}
    want = {k: list(v.shape) for k, v in ref.state_dict().items()}
    assert list(got) == list(want) and got == want
    n = len(bridges) + 1
    assert f"squeeze.{n - 1}.weight" in got and f"norms.{n - 1}._variance" in got and f"norms.{n}.weight" not in got
    assert [p.name for p in new.parameters()] != [] and len(new.parameters()) == len(ref.parameters())


@pytest.mark.parametrize("act,gate", VARIANTS)
@pytest.mark.parametrize("bridges", BRIDGES)
@pytest.mark.parametrize("spatial", [(6, 5), (7,)])
def test_outputs_gradients_and_running_statistics_equal_the_reference(bridges, act, gate, spatial):
    ref, new = _pair(32, bridges, 4, act, gate)
    x, feats = _inputs(32, bridges, spatial)
    for step in range(3):  # train mode: outputs and every gradient, then the running statistics
        ref.train(), new.train()
        outs = []
        for module in (ref, new):
            xs, fs = _tensors(x * (1 + 0.1 * step), feats)
            y = module(xs, fs)
            (y * paddle.to_tensor(np.linspace(-1, 1, y.size).reshape(y.shape).astype("float32"))).sum().backward()
            grads = {f"param {n}": p.grad.numpy() for n, p in module.named_parameters() if not p.stop_gradient}
            grads.update({"x": xs.grad.numpy(), **{f"bridge {i}": f.grad.numpy() for i, f in enumerate(fs)}})
            outs.append((y.numpy(), grads))
            module.clear_gradients()
        np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-6)
        assert list(outs[1][1]) == list(outs[0][1])
        for name, want in outs[0][1].items():  # sums over the batch: absolute rounding on the tensor's scale
            np.testing.assert_allclose(outs[1][1][name], want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=name)
    ref_state, new_state = ref.state_dict(), new.state_dict()
    for name in ref_state:  # after 3 steps: running means and variances moved alike
        np.testing.assert_allclose(new_state[name].numpy(), ref_state[name].numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
    assert not np.allclose(ref_state["norms.0._mean"].numpy(), _pair(32, bridges, 4, act, gate)[0].norms[0]._mean.numpy())
    ref.eval(), new.eval()  # eval mode: the running statistics
    with paddle.no_grad():
        xs, fs = _tensors(x, feats)
        np.testing.assert_allclose(new(xs, fs).numpy(), ref(xs, fs).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(new.weights(xs, fs).numpy(), ref.weights(xs, fs).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 9), (4, 6, 5, 7), (4, 6, 3, 4, 5)])
def test_global_avg_pool_is_the_mean_over_the_spatial_axes_with_its_gradient(shape):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    xs = paddle.to_tensor(x, stop_gradient=False)
    pooled = helpers.global_avg_pool(xs)
    want = x.reshape(shape[0], shape[1], -1).mean(-1) if len(shape) > 2 else x
    np.testing.assert_allclose(pooled.numpy(), want, rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(3).normal(size=want.shape).astype("float32")
    (pooled * paddle.to_tensor(g)).sum().backward()
    n = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    np.testing.assert_allclose(xs.grad.numpy(), np.broadcast_to(g.reshape(g.shape + (1,) * (len(shape) - 2)) / n, shape),
                               rtol=1e-5, atol=1e-7)
