"""The notes' 1-D CNN with ECA and the spatial-attention net for series x modality inputs:
counts by hand, the residual ECA, and training on a synthetic signal task."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from ba_net import build_model, count_macs, count_params

STAGES_1D = [(1, 16, 64), (16, 32, 3), (32, 64, 3), (64, 64, 3), (64, 64, 3)]  # (in, out, kernel)


def _eca_cnn1d_params(classes):
    convs = sum(cin * cout * k + cout + 4 * cout for cin, cout, k in STAGES_1D)  # conv + BN (4 per channel)
    eca = 3  # C = 32: t = int((5 + 1) / 2) = 3, odd
    return convs + eca + (64 * 4 * 100 + 100) + (100 * classes + classes)


def _eca_cnn1d_flops(classes, length=2048):
    total, size = 0, (length + 2 * 24 - 64) // 16 + 1  # 128 after the strided first conv
    for i, (cin, cout, k) in enumerate(STAGES_1D):  # after the first: stride 1, 'same' padding
        total += cout * size * (cin * k + 1) + 2 * cout * size  # conv (bias +1), BN
        size //= 2  # max pool, counted as zero
        if i == 1:  # ECA on [32, 32]: pool (32 + 1 per channel), conv k3, weighting, residual add
            total += 32 * (size + 1) + 32 * 3 + 32 * size + 32 * size
    return total + 64 * size * 100 + 100 * classes


def _sam_net_params(classes, channels=(16, 32, 64), k=5):
    total, cin = 0, 1
    for c in channels:
        total += cin * c * k + c + (3 * 1 + 1) + 4 * c  # conv, spatial attention conv (3, 1) + bias, BN
        cin = c
    return total + cin * classes + classes


def test_eca_cnn1d_counts_and_shapes():
    model = build_model("eca_cnn1d", num_classes=10)
    assert count_params(model)["total"] == _eca_cnn1d_params(10) == 61_193
    assert count_macs(model, (1, 1, 2048)) == _eca_cnn1d_flops(10)
    assert model.eca.kernel_size == 3
    model.eval()
    assert list(model(paddle.randn([3, 1, 2048])).shape) == [3, 10]
    assert list(build_model("eca_cnn1d", num_classes=4, input_length=1024)(paddle.randn([2, 1, 1024])).shape) == [2, 4]
    with pytest.raises(ValueError, match="too short"):
        build_model("eca_cnn1d", num_classes=10, input_length=256)


def test_eca_cnn1d_adds_eca_back_residually():
    model = build_model("eca_cnn1d", num_classes=5)
    model.eval()
    seen = {}

    def after_stage2(layer, inputs, output):  # hooks must return None or they replace the value
        seen["s2"] = output.numpy()

    def before_stages(layer, inputs):
        seen["next"] = inputs[0].numpy()

    model.stage2.register_forward_post_hook(after_stage2)
    model.stages.register_forward_pre_hook(before_stages)
    model(paddle.randn([2, 1, 2048]))
    s2 = seen["s2"]
    pooled = s2.mean(-1)  # ECA by hand: pad 1, kernel 3 over the channel axis, sigmoid
    kernel = model.eca.conv.weight.numpy().ravel()
    padded = np.pad(pooled, [(0, 0), (1, 1)])
    w = 1 / (1 + np.exp(-sum(kernel[j] * padded[:, j:j + 32] for j in range(3))))
    np.testing.assert_allclose(seen["next"], s2 + s2 * w[:, :, None], rtol=1e-5, atol=1e-6)


def test_sam_net_counts_and_shapes():
    model = build_model("sam_net", num_classes=6)
    assert count_params(model)["total"] == _sam_net_params(6)
    model.eval()
    assert list(model(paddle.randn([4, 1, 128, 3])).shape) == [4, 6]
    assert list(model(paddle.randn([2, 1, 50, 9])).shape) == [2, 6]  # any length / modality count
    with pytest.raises(ValueError, match="length, modalities"):
        model(paddle.randn([2, 128, 3]))
    assert count_macs(model, (1, 1, 128, 3)) > 0


@pytest.mark.parametrize("name,shape", [("eca_cnn1d", [3, 1, 2048]), ("sam_net", [4, 1, 128, 3])])
def test_forward_backward_reaches_every_parameter(name, shape):
    model = build_model(name, num_classes=4)
    model.train()
    out = model(paddle.randn(shape))
    assert np.isfinite(out.numpy()).all()
    (out * paddle.randn(out.shape)).sum().backward()
    for n, p in model.named_parameters():
        if not p.stop_gradient:
            assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), n
            assert float(paddle.abs(p.grad).sum()) > 0, n


FREQS = [10, 20, 40, 80]  # cycles per window: the class of a signal


def _sinusoids(n, length, rng, modalities=None):
    """Sine of the class's frequency, random phase per modality, Gaussian noise of std 1."""
    labels = rng.integers(0, len(FREQS), n)
    m = modalities or 1
    t = np.arange(length) / length
    phase = rng.uniform(0, 2 * np.pi, (n, 1, m))
    x = np.sin(2 * np.pi * np.array(FREQS)[labels][:, None, None] * t[None, :, None] + phase)
    x = x + rng.normal(size=x.shape)
    shape = (n, 1, length) if modalities is None else (n, 1, length, modalities)
    return x.reshape(shape).astype("float32"), labels.astype("int64")


@pytest.mark.parametrize("name,length,modalities", [("eca_cnn1d", 2048, None), ("sam_net", 256, 3)])
def test_learns_synthetic_signal_task(name, length, modalities):
    rng = np.random.default_rng(0)
    x_train, y_train = _sinusoids(320, length, rng, modalities)
    x_test, y_test = _sinusoids(200, length, rng, modalities)
    model = build_model(name, num_classes=len(FREQS))
    opt = paddle.optimizer.Adam(3e-3, parameters=model.parameters())
    model.train()
    for _ in range(30):  # 30 steps: test accuracy 0.975-1.0 for three initial seeds of each model
        idx = rng.integers(0, len(x_train), 32)
        loss = F.cross_entropy(model(paddle.to_tensor(x_train[idx])), paddle.to_tensor(y_train[idx]))
        loss.backward()
        opt.step()
        opt.clear_grad()
    model.eval()
    acc = (model(paddle.to_tensor(x_test)).numpy().argmax(1) == y_test).mean()
    assert acc > 0.7, acc  # chance is 0.25
