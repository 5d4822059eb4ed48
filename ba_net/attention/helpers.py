"""Small pieces shared by the attention modules: activation / gate choice by name, pooling."""
from __future__ import annotations

import paddle
import paddle.nn as nn

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "swish": nn.Swish,  # = SiLU, x * sigmoid(x): the EfficientNet form
    "silu": nn.Silu,
    "hardswish": nn.Hardswish,
    "gelu": nn.GELU,
}

_GATES = {
    "sigmoid": nn.Sigmoid,
    # relu6(x + 3) / 6, the MobileNetV3 form (Paddle's default slope 1/6 and offset 0.5)
    "hard_sigmoid": nn.Hardsigmoid,
}


def _pick(table: dict, kind: str, name: str) -> nn.Layer:
    try:
        return table[name]()
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(table)}") from None


def make_activation(name: str) -> nn.Layer:
    """The hidden activation of an attention block, by name (relu, swish, silu, hardswish, gelu)."""
    return _pick(_ACTIVATIONS, "activation", name)


def make_gate(name: str) -> nn.Layer:
    """The gate that turns scores into weights in (0, 1), by name (sigmoid, hard_sigmoid)."""
    return _pick(_GATES, "gate", name)


def global_avg_pool(x: paddle.Tensor) -> paddle.Tensor:
    """Mean over every axis after the channel axis: [B, C, *spatial] -> [B, C].

    The spatial axes are flattened into one and the mean is taken over that last axis: Paddle's
    CPU gradient of a mean over several axes ([2, 3]) is a slow broadcast (3.3.1, [128, 16, 32, 32]:
    83 ms against 10 ms forward + backward), which made a dygraph BA-ResNet-20 training step ~30 %
    slower than ResNet-20's (3-5 % this way). Same values up to float32 rounding. While a model is
    traced, :func:`ba_net.accel.tracing.global_means_as_pooling` swaps this function for a pooling
    op (oneDNN has no fast reduction for Paddle Inference)."""
    if x.ndim <= 2:
        return x
    return (paddle.flatten(x, 2) if x.ndim > 3 else x).mean(axis=-1)


def global_max_pool(x: paddle.Tensor) -> paddle.Tensor:
    """Max over every axis after the channel axis: [B, C, *spatial] -> [B, C]. For 1 to 3 spatial
    axes it is a pooling op: Paddle's CPU gradient of a reduce-max is orders of magnitude slower
    (3.3.1, [32, 16, 32, 32]: 1.8 s against 2 ms), which made a CIFAR CBAM-ResNet-20 step 13x
    slower than ResNet-20's. Same values; with tied maxima the pool's gradient goes to one of
    them, the reduce-max's to all."""
    import paddle.nn.functional as F

    pools = {3: F.adaptive_max_pool1d, 4: F.adaptive_max_pool2d, 5: F.adaptive_max_pool3d}
    if x.ndim in pools:
        return paddle.flatten(pools[x.ndim](x, 1), 1)
    return x.reshape([x.shape[0], x.shape[1], -1]).max(axis=-1)


def channel_max(x: paddle.Tensor) -> paddle.Tensor:
    """Max over the channel axis, kept: [B, C, *spatial] -> [B, 1, *spatial]; a pooling op for 1
    or 2 spatial axes, for the reason given in :func:`global_max_pool` (0.23 s against 3 ms)."""
    import paddle.nn.functional as F

    c = int(x.shape[1])
    if x.ndim == 4:
        return F.max_pool3d(x.unsqueeze(1), kernel_size=[c, 1, 1]).squeeze(1)
    if x.ndim == 3:
        return F.max_pool2d(x.unsqueeze(1), kernel_size=[c, 1]).squeeze(1)
    return x.max(axis=1, keepdim=True)


def spatial_size(x: paddle.Tensor) -> int:
    """Number of positions per channel of a [B, C, *spatial] tensor."""
    n = 1
    for d in x.shape[2:]:
        n *= int(d)
    return n


def expand_like(weights: paddle.Tensor, x: paddle.Tensor) -> paddle.Tensor:
    """Reshape per-channel weights [B, C] so they broadcast against x [B, C, *spatial]."""
    return weights.reshape(list(weights.shape) + [1] * (x.ndim - 2))


_CONVS = {1: nn.Conv1D, 2: nn.Conv2D, 3: nn.Conv3D}


def same_conv(in_channels: int, out_channels: int, kernel_size, dims: int = 2, bias: bool = True) -> nn.Layer:
    """A stride-1 convolution over ``dims`` spatial axes that keeps the spatial size.

    ``kernel_size`` is an int (the same on every axis) or one odd size per axis, e.g. (3, 1);
    a tuple sets ``dims`` to its length.
    """
    if isinstance(kernel_size, int):
        kernel = (kernel_size,) * dims
    else:
        kernel = tuple(int(k) for k in kernel_size)
        dims = len(kernel)
    if dims not in _CONVS:
        raise ValueError(f"convolutions over 1, 2 or 3 spatial axes only, got {dims}")
    if any(k < 1 or k % 2 == 0 for k in kernel):
        raise ValueError(f"kernel sizes must be odd and positive to keep the size, got {kernel}")
    return _CONVS[dims](
        in_channels, out_channels, list(kernel), padding=[(k - 1) // 2 for k in kernel],
        bias_attr=None if bias else False,
    )


def check_rank(x: paddle.Tensor, dims: int, name: str) -> None:
    """Raise a readable error when ``x`` is not [B, C] plus ``dims`` spatial axes."""
    if x.ndim != dims + 2:
        raise ValueError(f"{name} built for {dims} spatial axes, got an input of shape {list(x.shape)}")


def hidden_width(channels: int, reduction: int) -> int:
    """Bottleneck width ``channels // reduction`` (at least 1) of a squeeze-excitation style MLP."""
    if channels < 1 or reduction < 1:
        raise ValueError(f"channels and reduction must be positive, got {channels}, {reduction}")
    return max(1, channels // reduction)
