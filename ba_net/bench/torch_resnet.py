"""The ResNets of the benchmark's PyTorch peer: ResNet-20 / BA-ResNet-20 (CIFAR form, 32 px) and
ResNet-50 / BA-ResNet-50 (ImageNet form, 224 px) written in PyTorch as ba_net builds them
(:mod:`ba_net.models.cifar_resnet`, :mod:`ba_net.models.resnet`, :mod:`ba_net.attention.bridge`),
module names included, so our state dict copies in key by key (:func:`load_paddle_state`) and
gives our logits (tests/test_torch_peer.py).

Bridge Attention is written the way the official BA-Net code (PyTorch) writes it, the form a
PyTorch user runs: per branch (the block's earlier features, then the current one) a global
average pool, a bias-free Linear to ``hidden = max(1, C // 16)`` and a BatchNorm1d; the sum,
ReLU, a bias-free Linear back to C, sigmoid, and the product with bn's output before the
residual add. :func:`measure_ba_overhead` times BA's cost over the plain model in PyTorch the way
:func:`ba_net.bench.rows.ba_overhead_interleaved` times ours (both models in one process,
alternated step by step in ABBA order).

Like :mod:`ba_net.bench.torch_peer`, this file imports only the standard library at the top and
``torch`` inside its functions, and never ba_net or Paddle: the peer's worker processes load it
by its path (:func:`ba_net.bench.torch_peer.torch_models`).
"""
from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

MODELS = ("resnet20", "ba_resnet20", "resnet50", "ba_resnet50")
INPUT_SIZE = {"resnet20": 32, "ba_resnet20": 32, "resnet50": 224, "ba_resnet50": 224}
REDUCTION = 16  # BA's r, and min_hidden 1: hidden = max(1, C // 16), as ba_net's default
# Paddle's BatchNorm running statistics -> PyTorch's
_PADDLE_TO_TORCH_SUFFIX = {"._mean": ".running_mean", "._variance": ".running_var"}


@functools.lru_cache(maxsize=None)
def _classes():
    """The nn.Module classes, made on first use so that this file imports without torch."""
    import torch
    import torch.nn as nn

    def conv(cin, cout, k, stride=1):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)

    class BridgeAttention(nn.Module):
        """x * sigmoid(excite(relu(sum_i BN_i(squeeze_i(GAP(F_i)))))) over the bridges F_1.. and x."""

        def __init__(self, channels, bridge_channels):
            super().__init__()
            hidden = max(1, channels // REDUCTION)
            self.squeeze = nn.ModuleList(nn.Linear(c, hidden, bias=False) for c in (*bridge_channels, channels))
            self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in self.squeeze)
            self.excite = nn.Linear(hidden, channels, bias=False)

        def forward(self, x, bridges):
            fused = None
            for feature, squeeze, norm in zip((*bridges, x), self.squeeze, self.norms):
                s = norm(squeeze(feature.mean((2, 3))))
                fused = s if fused is None else fused + s
            w = torch.sigmoid(self.excite(torch.relu(fused)))
            return x * w[:, :, None, None]

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride, downsample, ba):
            super().__init__()
            self.conv1, self.bn1 = conv(inplanes, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv(planes, planes, 3), nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.attention = BridgeAttention(planes, (planes,)) if ba else None
            self.downsample = downsample

        def forward(self, x):
            f1 = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(f1))
            if self.attention is not None:
                out = self.attention(out, (f1,))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride, downsample, ba):
            super().__init__()
            out = planes * 4
            self.conv1, self.bn1 = conv(inplanes, planes, 1), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = conv(planes, out, 1), nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.attention = BridgeAttention(out, (planes, planes)) if ba else None
            self.downsample = downsample

        def forward(self, x):
            f1 = self.relu(self.bn1(self.conv1(x)))
            f2 = self.relu(self.bn2(self.conv2(f1)))
            out = self.bn3(self.conv3(f2))
            if self.attention is not None:
                out = self.attention(out, (f1, f2))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class TorchResNet(nn.Module):
        """``cifar``: 3x3 stem (16), stages 16 / 32 / 64; else 7x7/2 stem (64), max pool,
        stages 64 / 128 / 256 / 512 (x 4 for the Bottleneck); global pool, fc."""

        def __init__(self, block, layers, num_classes, ba, cifar):
            super().__init__()
            width = 16 if cifar else 64
            self.inplanes = width
            self.conv1 = conv(3, width, 3) if cifar else conv(3, width, 7, 2)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
            for i, n in enumerate(layers):
                setattr(self, f"layer{i + 1}", self._make_layer(block, width * 2 ** i, n, 1 if i == 0 else 2, ba))
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(self.inplanes, num_classes)
            self.stages = len(layers)

        def _make_layer(self, block, planes, blocks, stride, ba):
            out = planes * block.expansion
            downsample = None
            if stride != 1 or self.inplanes != out:
                downsample = nn.Sequential(conv(self.inplanes, out, 1, stride), nn.BatchNorm2d(out))
            layers = [block(self.inplanes, planes, stride, downsample, ba)]
            self.inplanes = out
            layers += [block(out, planes, 1, None, ba) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(self.stages):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return BasicBlock, Bottleneck, TorchResNet


def build_torch_resnet(name: str, num_classes: int):
    """``name`` (one of :data:`MODELS`) in PyTorch, PyTorch's default initialisation."""
    if name not in MODELS:
        raise ValueError(f"the PyTorch peer has no {name!r}; it has {', '.join(MODELS)}")
    basic, bottleneck, resnet = _classes()
    ba = name.startswith("ba_")
    if name.endswith("20"):
        return resnet(basic, [3, 3, 3], num_classes, ba, cifar=True)
    return resnet(bottleneck, [3, 4, 6, 3], num_classes, ba, cifar=False)


def torch_key(paddle_key: str) -> str:
    """The PyTorch state-dict key of one of our keys (the module names are the same; BatchNorm's
    ``_mean`` / ``_variance`` are ``running_mean`` / ``running_var``)."""
    for ours, theirs in _PADDLE_TO_TORCH_SUFFIX.items():
        if paddle_key.endswith(ours):
            return paddle_key[: -len(ours)] + theirs
    return paddle_key


def load_paddle_state(model, state: dict) -> None:
    """Copy our state dict (key -> Paddle tensor or NumPy array, e.g. ``model.state_dict()`` of
    ``ba_net.build_model(name, ...)``) into the PyTorch ``model`` key by key. Linear weights are
    [in, out] in Paddle and [out, in] in PyTorch: every 2-D weight is transposed (the convolutions'
    are 4-D, the same layout in both). Raises KeyError / ValueError unless every key and shape
    matches both ways (``num_batches_tracked`` aside, which Paddle has not). The values take the
    dtype of ``model``'s (``model.double()`` first for a float64 copy).

    The running statistics copy as they are, but note that a train-mode forward moves them
    differently: PyTorch updates the running variance with the unbiased batch variance, Paddle
    with the biased one (the outputs of that forward are the same)."""
    import numpy as np
    import torch

    target = model.state_dict()
    wanted = {k for k in target if not k.endswith("num_batches_tracked")}
    given = {torch_key(k): k for k in state}
    if set(given) != wanted:
        raise KeyError(f"state dicts differ: only ours {sorted(set(given) - wanted)[:5]}, "
                       f"only PyTorch's {sorted(wanted - set(given))[:5]}")
    with torch.no_grad():
        for key, ours in given.items():
            value = state[ours]
            value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
            if value.ndim == 2:
                value = value.T
            if tuple(target[key].shape) != value.shape:
                raise ValueError(f"{ours}: shape {value.shape} (transposed if 2-D) for {tuple(target[key].shape)}")
            target[key].copy_(torch.from_numpy(np.ascontiguousarray(value)))


def measure_ba_overhead(spec: dict, train_step: Callable) -> dict:
    """BA's cost over its plain model in PyTorch, as ours is measured: ``spec['model']`` (a BA
    model) and its plain model in this process, each in ``spec['<task>_layout']`` (eager or
    channels_last), alternated step by step in ABBA order after ``warmup`` untimed steps, first
    training steps (``train_step(model, x, labels, spec)`` gives the step), then eval forwards
    under ``inference_mode``; per task the median over ``pairs`` pairs of (BA time / plain time -
    1) in percent, and each model's images/s."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    ba_name = spec["model"]
    pair = (ba_name[3:], ba_name)
    batch, size = int(spec["batch"]), int(spec["image_size"])
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    out = {"layouts": {}}
    for task in ("train", "eval"):
        layout = spec[f"{task}_layout"]
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        x = images.contiguous(memory_format=fmt)
        fns = {}
        for name in pair:
            model = build_torch_resnet(name, 10).to(memory_format=fmt)
            if task == "train":
                fns[name] = train_step(model, x, labels, spec)
            else:
                model.eval()
                fns[name] = functools.partial(_forward, model, x)
        for fn in fns.values():
            for _ in range(max(1, int(spec["warmup"]))):
                fn()
        times = {name: [] for name in pair}
        for i in range(int(spec["pairs"])):
            for name in (pair if i % 2 == 0 else pair[::-1]):
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        ratios = [b / a for a, b in zip(times[pair[0]], times[pair[1]])]
        out[task] = {"overhead_pct": 100.0 * (statistics.median(ratios) - 1.0), "pairs": len(ratios),
                     **{f"{name}_img_s": batch / statistics.median(times[name]) for name in pair}}
        out["layouts"][task] = layout
        del fns
    return out


def _forward(model, x) -> None:
    import torch

    with torch.inference_mode():
        model(x).numpy()


__all__ = ["INPUT_SIZE", "MODELS", "build_torch_resnet", "load_paddle_state", "measure_ba_overhead", "torch_key"]
