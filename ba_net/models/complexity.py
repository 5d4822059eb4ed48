"""Parameter and multiply-accumulate counts computed from the models, never copied.

Parameters are counted as ``paddle.summary`` counts them (BatchNorm running mean and variance
included) and, separately, the trainable ones.

:func:`count_macs` counts multiply-accumulates (MACs) the way ``paddle.flops`` does -- which calls
them FLOPs: one per multiply-add of convolutions and linear layers, one per bias element, 2 per
element for BatchNorm, pools as Paddle counts them, activations and max pools as zero -- and adds
what a per-layer counter cannot see: a layer that computes with functional ops declares that work
in an ``extra_flops(inputs, output)`` method (Bridge Attention's pooled squeezes and branch sums,
the multiply that applies its weights). Floating-point operations are about 2 x MACs.
"""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn


def count_params(model: nn.Layer) -> dict:
    """{'total': as paddle.summary counts, 'trainable': parameters the optimizer updates}."""
    total = trainable = 0
    for p in model.parameters():
        n = int(np.prod(p.shape))
        total += n
        if not p.stop_gradient:
            trainable += n
    return {"total": total, "trainable": trainable}


def _conv(layer, x, y):
    kernel = int(np.prod(layer.weight.shape[2:]))
    bias = 1 if layer.bias is not None else 0
    return int(np.prod(y.shape)) * (int(x.shape[1]) // layer._groups * kernel + bias)


def _linear(layer, x, y):
    return int(np.prod(y.shape)) * int(layer.weight.shape[0])


def _batchnorm(layer, x, y):
    return 2 * int(np.prod(x.shape))


def _avgpool(layer, x, y):
    return int(np.prod(y.shape))


def _adaptive_avgpool(layer, x, y):
    kernel = int(np.prod(np.array(x.shape[2:]) // np.array(y.shape[2:])))
    return int(np.prod(y.shape)) * (kernel + 1)


_LEAF_RULES = (
    ((nn.Conv1D, nn.Conv2D, nn.Conv3D), _conv),
    ((nn.Linear,), _linear),
    ((nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.BatchNorm), _batchnorm),
    ((nn.AvgPool1D, nn.AvgPool2D, nn.AvgPool3D), _avgpool),
    ((nn.AdaptiveAvgPool1D, nn.AdaptiveAvgPool2D, nn.AdaptiveAvgPool3D), _adaptive_avgpool),
)


def _leaf_flops(layer, inputs, output) -> int:
    for types, rule in _LEAF_RULES:
        if isinstance(layer, types):
            return rule(layer, inputs[0], output)
    return 0


def count_macs(model: nn.Layer, input_shape=(1, 3, 128, 128)) -> int:
    """Forward multiply-accumulates for one input of ``input_shape`` (``paddle.flops``' number),
    attention modules' functional work included. Runs one forward pass in eval mode."""
    total = [0]

    def hook(layer, inputs, output):
        if not layer.sublayers():
            total[0] += _leaf_flops(layer, inputs, output)
        if hasattr(layer, "extra_flops"):
            total[0] += int(layer.extra_flops(inputs, output))

    was_training = model.training
    model.eval()
    handles = [layer.register_forward_post_hook(hook) for layer in model.sublayers(include_self=True)]
    try:
        with paddle.no_grad():
            model(paddle.zeros(list(input_shape), dtype="float32"))
    finally:
        for h in handles:
            h.remove()
        if was_training:
            model.train()
    return total[0]


