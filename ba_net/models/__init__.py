"""Model registry: every network is built by name through :func:`build_model`; parameter and
multiply-accumulate counts in :mod:`~ba_net.models.complexity`. May import :mod:`ba_net.attention`."""
from __future__ import annotations

from functools import partial

from ba_net.models.alexnet import AlexNet
from ba_net.models.multi_attention import MultiAttentionAlexNet
from ba_net.models import cifar_resnet as _cifar
from ba_net.models import efficientnet as _efficientnet
from ba_net.models import mobilenetv3 as _mobilenetv3
from ba_net.models import resnet as _resnet
from ba_net.models import resnext as _resnext
from ba_net.models.signal import EcaCNN1D, SpatialAttentionNet

_REGISTRY = {
    "alexnet": AlexNet,
    "ba_alexnet": partial(AlexNet, attention="ba"),
    "ba_alexnet_notebook": partial(AlexNet, attention="ba", apply_attention=False),
    "alexnet_se": partial(AlexNet, attention="se"),
    "alexnet_eca": partial(AlexNet, attention="eca"),
    "alexnet_cbam": partial(AlexNet, attention="cbam"),
    "alexnet_sam": partial(AlexNet, attention="sam"),
    "alexnet_multihead": MultiAttentionAlexNet,
    "eca_cnn1d": EcaCNN1D,
    "sam_net": SpatialAttentionNet,
    # CIFAR-form ResNets (32 px, projection shortcuts), attention in every block
    "resnet20": _cifar.resnet20,
    "resnet32": _cifar.resnet32,
    "resnet44": _cifar.resnet44,
    "resnet56": _cifar.resnet56,
    "resnet110": _cifar.resnet110,
    "ba_resnet20": _cifar.ba_resnet20,
    "ba_resnet56": _cifar.ba_resnet56,
    "resnet20_se": partial(_cifar.resnet20, attention="se"),
    "resnet20_eca": partial(_cifar.resnet20, attention="eca"),
    "resnet20_cbam": partial(_cifar.resnet20, attention="cbam"),
    "resnet56_se": partial(_cifar.resnet56, attention="se"),
    "resnet56_eca": partial(_cifar.resnet56, attention="eca"),
    "resnet56_cbam": partial(_cifar.resnet56, attention="cbam"),
    # ImageNet-form ResNets (224 px)
    "resnet18": _resnet.resnet18,
    "resnet34": _resnet.resnet34,
    "resnet50": _resnet.resnet50,
    "resnet101": _resnet.resnet101,
    "ba_resnet18": _resnet.ba_resnet18,
    "ba_resnet34": _resnet.ba_resnet34,
    "ba_resnet50": _resnet.ba_resnet50,
    "ba_resnet101": _resnet.ba_resnet101,
    "resnet152": _resnext.resnet152,
    "ba_resnet152": _resnext.ba_resnet152,
    "resnext50_32x4d": _resnext.resnext50_32x4d,
    "ba_resnext50_32x4d": _resnext.ba_resnext50_32x4d,
    "resnext101_32x4d": _resnext.resnext101_32x4d,
    "ba_resnext101_32x4d": _resnext.ba_resnext101_32x4d,
    "se_resnet50": _resnext.se_resnet50,
    # the paper's lightweight backbones (224 px; EfficientNet-B1..B3 240 / 260 / 300 px)
    "mobilenetv3_large": _mobilenetv3.mobilenetv3_large,
    "mobilenetv3_small": _mobilenetv3.mobilenetv3_small,
    "ba_mobilenetv3_large": _mobilenetv3.ba_mobilenetv3_large,
    "ba_mobilenetv3_small": _mobilenetv3.ba_mobilenetv3_small,
    "efficientnet_b0": _efficientnet.efficientnet_b0,
    "efficientnet_b1": _efficientnet.efficientnet_b1,
    "efficientnet_b2": _efficientnet.efficientnet_b2,
    "efficientnet_b3": _efficientnet.efficientnet_b3,
    "ba_efficientnet_b0": _efficientnet.ba_efficientnet_b0,
    "ba_efficientnet_b1": _efficientnet.ba_efficientnet_b1,
    "ba_efficientnet_b2": _efficientnet.ba_efficientnet_b2,
    "ba_efficientnet_b3": _efficientnet.ba_efficientnet_b3,
}


# Not CIFAR image classifiers: 1-D signal and series x modality networks from the project's notes.
_SIGNAL_MODELS = {"eca_cnn1d", "sam_net"}


def list_models(images_only: bool = False) -> list:
    """Names accepted by :func:`build_model`; ``images_only``: the ones that classify 3-channel
    images (what an experiment config may train)."""
    return sorted(n for n in _REGISTRY if not (images_only and n in _SIGNAL_MODELS))


def build_model(name: str, num_classes: int, **kwargs):
    """Build the model registered as ``name`` with ``num_classes`` outputs (required: a model is
    never silently CIFAR-10's; the data set says how many, :attr:`ba_net.data.Dataset.num_classes`).

    alexnet: the notebook's AlexNet (128 px input). ba_alexnet: BA-AlexNet with the attention
    applied (the corrected model). ba_alexnet_notebook: the notebook's BA-AlexNet, attention
    computed and discarded (its output does not depend on the BA module).
    alexnet_se / alexnet_eca / alexnet_cbam / alexnet_sam: AlexNet with that module scaling
    conv5's output. alexnet_multihead: AlexNet's features with the notes' multi-attention head.
    eca_cnn1d: the notes' 1-D CNN with ECA, input [B, 1, 2048]. sam_net: the notes'
    spatial-attention network, input [B, 1, length, modalities].
    resnet20 / 32 / 44 / 56 / 110: He et al.'s CIFAR ResNets (32 px, projection shortcuts);
    ba_resnet20 / ba_resnet56: with Bridge Attention in every block (r = 16, ``min_hidden=1``
    by default: the official hidden width, 1 in the 16-channel stage);
    resnet20_se / _eca / _cbam, resnet56_se / _eca / _cbam: that module at BA's place.
    resnet18 / 34 / 50 / 101 and ba_resnet18 / 34 / 50 / 101: the ImageNet-form (224 px)
    ResNets and BA-ResNets of the paper. The ResNets take ``attention``-module keywords
    (reduction, act, gate, min_hidden) and carry their input side as ``model.input_size``.
    resnet152 / ba_resnet152, resnext50_32x4d / resnext101_32x4d and their ba_ forms (BA at the
    BA-ResNets' place), se_resnet50 (the official SE-ResNet-50: bias-free SE, r = 16): 224 px.
    mobilenetv3_large / _small (their SE layers) and ba_mobilenetv3_large / _small (BA, r = 6,
    hard sigmoid, in the expanded SE blocks): 224 px. efficientnet_b0..b3 (SE) and
    ba_efficientnet_b0..b3 (BA, r = 6, swish, in the expanded blocks; the first block's gate
    per position as the official code's, ``unpooled_first_gate=False`` pools it): 224 / 240 / 260 / 300 px. Every model carries its
    input side as ``model.input_size``.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}") from None
    return factory(num_classes=num_classes, **kwargs)


def build_structure(name: str, num_classes: int, **kwargs):
    """The model ``build_model`` gives, its weights left uninitialised (``paddle.LazyGuard``): for
    reading what the structure says (``input_size``), never for running it. Initialising is most of
    a build: ResNet-50 took 3.6 s to build and 0.13 s as a structure (2026-12-03, Intel Xeon, 2 cores)."""
    import paddle

    with paddle.LazyGuard():
        return build_model(name, num_classes=num_classes, **kwargs)


__all__ = ["AlexNet", "EcaCNN1D", "MultiAttentionAlexNet", "SpatialAttentionNet", "build_model", "build_structure",
           "list_models"]
