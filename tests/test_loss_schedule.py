"""Label-smoothing loss and the cosine schedule against independent formulas."""
import math

import numpy as np
import paddle
import pytest

from ba_net import LabelSmoothingCrossEntropy, WarmupCosineDecay, build_lr_scheduler


def _np_log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_hard_labels_equal_notebook_formula(eps):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(8, 10)).astype("float32") * 3
    labels = rng.integers(0, 10, size=8)
    logp = _np_log_softmax(logits.astype("float64"))
    expected = ((1 - eps) * -logp[np.arange(8), labels] + eps * -logp.mean(1)).mean()
    loss = LabelSmoothingCrossEntropy(eps)
    for shape in ([8], [8, 1]):
        got = float(loss(paddle.to_tensor(logits), paddle.to_tensor(labels.reshape(shape))))
        assert got == pytest.approx(expected, rel=1e-5)


def test_soft_targets_match_numpy_and_one_hot_equals_hard():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 4)).astype("float32")
    q = rng.dirichlet(np.ones(4), size=5).astype("float32")
    logp = _np_log_softmax(logits.astype("float64"))
    eps = 0.2
    expected = ((1 - eps) * -(q * logp).sum(1) + eps * -logp.mean(1)).mean()
    loss = LabelSmoothingCrossEntropy(eps)
    assert float(loss(paddle.to_tensor(logits), paddle.to_tensor(q))) == pytest.approx(expected, rel=1e-5)
    labels = np.array([0, 3, 1, 2, 2])
    one_hot = np.eye(4, dtype="float32")[labels]
    assert float(loss(paddle.to_tensor(logits), paddle.to_tensor(one_hot))) == pytest.approx(
        float(loss(paddle.to_tensor(logits), paddle.to_tensor(labels))), rel=1e-6)


def test_smoothing_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LabelSmoothingCrossEntropy(1.0)


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.last_lr)  # what the optimizer uses at this step
        sched.step()
    return out


def test_cosine_without_warmup_matches_paddle_and_formula():
    steps_per_epoch, epochs, base = 50000 // 128, 3, 1e-4
    ours = build_lr_scheduler(base, steps_per_epoch, epochs)
    total = steps_per_epoch * epochs
    assert ours.total_steps == 1170
    ref = paddle.optimizer.lr.CosineAnnealingDecay(base, T_max=total)
    a, b = _lrs(ours, total), _lrs(ref, total)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    formula = lambda t: base * (1 + math.cos(math.pi * t / total)) / 2  # noqa: E731
    assert a[0] == pytest.approx(base)
    assert a[total // 2] == pytest.approx(formula(total // 2)) == pytest.approx(base / 2)
    assert a[-1] == pytest.approx(formula(total - 1))


def test_warmup_then_cosine_at_key_steps():
    base, total, warm = 0.1, 1000, 100
    s = WarmupCosineDecay(base, total, warmup_steps=warm, eta_min=0.001)
    lrs = _lrs(s, total)
    assert lrs[0] == pytest.approx(0.0)
    assert lrs[50] == pytest.approx(base * 50 / warm)
    assert lrs[warm] == pytest.approx(base)  # end of warmup: the peak
    mid = warm + (total - warm) // 2
    assert lrs[mid] == pytest.approx(0.001 + (base - 0.001) * (1 + math.cos(math.pi * 0.5)) / 2)
    assert lrs[-1] == pytest.approx(0.001 + (base - 0.001) * (1 + math.cos(math.pi * (total - 1 - warm) / (total - warm))) / 2)
    assert max(lrs) == pytest.approx(base)


def test_resumed_schedule_continues_exactly():
    a = WarmupCosineDecay(0.1, 200, warmup_steps=10)
    _lrs(a, 77)
    b = WarmupCosineDecay(0.1, 200, warmup_steps=10)
    b.set_state_dict(a.state_dict())
    assert _lrs(b, 50) == _lrs(a, 50)


def test_schedule_holds_its_last_value_past_the_horizon():
    """A run resumed with more steps than planned (or a partial last epoch) must not climb the
    cosine back up: past the horizon the rate stays eta_min."""
    sched = build_lr_scheduler(0.1, steps_per_epoch=10, epochs=2, warmup_epochs=0.5, eta_min=1e-3)
    rates = []
    for _ in range(40):
        rates.append(sched.get_lr())
        sched.step()
    assert rates[20] == pytest.approx(1e-3) and rates[19] > 1e-3
    assert rates[20:] == [rates[20]] * 20
