"""The AlexNet / BA-AlexNet pair: counts, FLOPs, and the notebook's defect."""
import numpy as np
import paddle
import pytest

import ba_net
from ba_net import build_model, count_macs, count_params


def _alexnet_params_by_hand():
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    lin = lambda i, o: i * o + o  # noqa: E731
    return (conv(3, 48, 11) + conv(48, 128, 5) + conv(128, 192, 3) + conv(192, 192, 3) + conv(192, 128, 3)
            + lin(1152, 2048) + lin(2048, 2048) + lin(2048, 10))


def _ba_params_by_hand(bridges=(192, 192), c=128, r=16):
    h = c // r
    squeeze = sum(cin * h for cin in bridges + (c,))
    bn = 4 * h * (len(bridges) + 1)  # weight, bias, running mean, running variance
    return squeeze + bn + h * c, 2 * h * (len(bridges) + 1)  # (total, running stats)


def test_param_counts_match_hand_count_and_reference():
    assert _alexnet_params_by_hand() == 7_524_042
    ba_total, ba_running = _ba_params_by_hand()
    assert ba_total == 5_216
    assert count_params(build_model("alexnet", num_classes=10)) == {"total": 7_524_042, "trainable": 7_524_042}
    for name in ("ba_alexnet", "ba_alexnet_notebook"):
        assert count_params(build_model(name, num_classes=10)) == {
            "total": 7_529_258, "trainable": 7_529_258 - ba_running}


def test_param_count_matches_paddle_summary():
    model = build_model("ba_alexnet", num_classes=10)
    summary = paddle.summary(model, (1, 3, 128, 128))
    assert summary["total_params"] == count_params(model)["total"]


def test_macs_match_paddle_for_plain_layers_and_count_ba_work():
    # multiply-accumulates, not 2 x: a 3x3 convolution 3 -> 8 channels on 4x4 does 27 multiply-adds
    # and one bias add for each of its 8 x 4 x 4 outputs
    assert count_macs(paddle.nn.Conv2D(3, 8, 3, padding=1), (1, 3, 4, 4)) == 8 * 4 * 4 * (27 + 1)
    alex = build_model("alexnet", num_classes=10)
    assert count_macs(alex) == paddle.flops(alex, [1, 3, 128, 128])
    # BA at conv5 (7x7): three pooled squeezes (adds + a divide per channel, as Paddle counts
    # adaptive pooling), three linear squeezes, three BNs over 8 values, two branch sums,
    # the excitation, and the multiply that applies the weights to conv5's output.
    hw = 7 * 7
    pools = (192 + 192 + 128) * (hw + 1)
    ba = pools + (192 + 192 + 128) * 8 + 3 * 2 * 8 + 2 * 8 + 8 * 128 + 128 * hw
    for name in ("ba_alexnet", "ba_alexnet_notebook"):
        assert count_macs(build_model(name, num_classes=10)) - count_macs(alex) == ba
    # per image: a batch of 2 costs twice as much
    assert count_macs(alex, (2, 3, 128, 128)) == 2 * count_macs(alex)


def test_num_classes_is_required_never_cifar10_by_default():
    """A model is never silently a 10-class one: build_model and every model builder need
    num_classes (a TypeError at the call), and ResNet-50 for ImageNet has torchvision's count."""
    from ba_net.models import cifar_resnet, resnet

    for build in (lambda: build_model("resnet50"), lambda: build_model("alexnet"), lambda: resnet.resnet50(),
                  lambda: cifar_resnet.resnet20(), lambda: ba_net.models.AlexNet()):
        with pytest.raises(TypeError, match="num_classes"):
            build()
    assert count_params(build_model("resnet50", num_classes=1000))["trainable"] == 25_557_032


def test_every_exported_model_builds_by_name():
    """Each model builder a models module exports (its __all__) is registered under its own name;
    the CIFAR ones (cheap to build) give the builder's network by name (same parameter count). The
    ImageNet ones are built by name against hand counts in tests/test_resnet.py and against the
    official code's counts in tests/test_backbones.py."""
    import inspect

    from ba_net.models import cifar_resnet, efficientnet, mobilenetv3, resnet, resnext

    classes = ("ResNet", "CifarResNet", "MobileNetV3", "EfficientNet")
    for module in (cifar_resnet, resnet, resnext, mobilenetv3, efficientnet):
        for name in module.__all__:
            builder = getattr(module, name)
            if inspect.isfunction(builder) and inspect.signature(builder).return_annotation in classes:
                assert name in ba_net.list_models(), name
                if module is cifar_resnet:
                    assert count_params(build_model(name, num_classes=10)) == count_params(builder(num_classes=10)), name


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="alexnet.*ba_alexnet"):
        build_model("vgg", num_classes=10)


def _ba_params(model):
    return [p for n, p in model.named_parameters() if n.startswith("attention.") and not p.stop_gradient]


def test_corrected_model_depends_on_attention_and_trains_it():
    model = build_model("ba_alexnet", num_classes=10)
    model.eval()
    x = paddle.randn([4, 3, 128, 128])
    before = model(x).numpy()
    with paddle.no_grad():
        model.attention.excite.weight.set_value(paddle.randn(model.attention.excite.weight.shape))
    after = model(x).numpy()
    assert np.abs(after - before).max() > 1e-4

    model.train()
    loss = model(x).mean()
    loss.backward()
    grads = [p.grad for p in _ba_params(model)]
    assert len(grads) == 3 + 3 * 2 + 1  # 3 squeezes, 3 BN (weight, bias), excite
    assert all(g is not None and float(paddle.abs(g).sum()) > 0 for g in grads)


def test_notebook_variant_equals_alexnet_with_copied_weights_and_ignores_ba():
    alex, nb = build_model("alexnet", num_classes=10), build_model("ba_alexnet_notebook", num_classes=10)
    nb.set_state_dict({**nb.state_dict(), **alex.state_dict()})
    shared = {k: v for k, v in nb.state_dict().items() if not k.startswith("attention.")}
    assert set(shared) == set(alex.state_dict())
    for k, v in alex.state_dict().items():
        np.testing.assert_array_equal(shared[k].numpy(), v.numpy())
    alex.eval(), nb.eval()
    x = paddle.randn([3, 3, 128, 128])
    np.testing.assert_array_equal(nb(x).numpy(), alex(x).numpy())
    with paddle.no_grad():
        nb.attention.excite.weight.set_value(paddle.randn(nb.attention.excite.weight.shape) * 10)
    np.testing.assert_array_equal(nb(x).numpy(), alex(x).numpy())

    nb.train()
    nb(x).mean().backward()
    for p in _ba_params(nb):
        assert p.grad is None or float(paddle.abs(p.grad).sum()) == 0.0


def test_there_is_no_ba_module_alias_with_another_signature():
    """The official code's ``BA_module(pre_channels, cur_channel)`` takes other arguments than
    BridgeAttention(channels, ..., bridge_channels=...): an alias by that name would mislead."""
    assert not hasattr(ba_net, "BAModule") and "BAModule" not in ba_net.__all__
    ba = ba_net.BridgeAttention(256, bridge_channels=(64, 128))
    assert [tuple(sq.weight.shape) for sq in ba.squeeze] == [(64, 16), (128, 16), (256, 16)]


@pytest.mark.parametrize("name", ["alexnet", "ba_resnet20", "ba_resnet50", "ba_efficientnet_b1"])
def test_a_structure_is_the_model_without_initialised_weights(name):
    """build_structure: the same parameters and buffers (names, shapes) and input side as
    build_model, and no initialiser ran (the random generator has not moved)."""
    from ba_net.models import build_structure

    def next_draw(build):
        paddle.seed(5)
        with paddle.utils.unique_name.guard():
            built = build(name, num_classes=7)
        return built, float(paddle.rand([1]))

    paddle.seed(5)
    untouched = float(paddle.rand([1]))
    structure, after_structure = next_draw(build_structure)
    model, after_model = next_draw(build_model)
    assert structure.input_size == model.input_size
    assert {k: list(v.shape) for k, v in structure.state_dict().items()} == \
        {k: list(v.shape) for k, v in model.state_dict().items()}
    assert after_structure == untouched and after_model != untouched  # a real build draws; the structure does not
