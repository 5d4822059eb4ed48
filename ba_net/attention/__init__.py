"""Attention modules, one file per family, built by name through :func:`create_attention`.

One contract for every module the factory builds: the constructor takes ``channels`` first, then
``reduction`` and its activation / gate choices (modules without a bottleneck accept and ignore
``reduction``), and refuses any other keyword; ``forward`` takes the feature map [B, C, *spatial]
(plus the earlier features for Bridge Attention, whose ``bridged = True``) and returns the
re-weighted feature map of the same shape. ``weights(...)`` (same arguments) returns the gate
values alone, for plots and histograms.

Registered names: ba, se, eca, cbam, sam. The weighted-average pools of the notes'
multi-attention head (:mod:`ba_net.attention.pooling`) reduce [B, C, *spatial] to [B, C]: they
are pooling layers with another contract, so the factory does not build them.
"""
from __future__ import annotations

from ba_net.attention.bridge import BridgeAttention
from ba_net.attention.cbam import CBAM, ChannelGate, SpatialGate
from ba_net.attention.eca import EfficientChannelAttention, eca_kernel_size
from ba_net.attention.pooling import AttentionWeightedAverage, GlobalWeightedAvgPool
from ba_net.attention.se import SqueezeExcitation
from ba_net.attention.spatial import SpatialAttention

_REGISTRY = {
    "ba": BridgeAttention,
    "se": SqueezeExcitation,
    "eca": EfficientChannelAttention,
    "cbam": CBAM,
    "sam": SpatialAttention,
}


def list_attention() -> list:
    """Names accepted by :func:`create_attention`."""
    return sorted(_REGISTRY)


def create_attention(name: str, channels: int, **kwargs):
    """Build the attention module registered as ``name`` for a feature with ``channels`` channels."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; choose one of {list_attention()}") from None
    return cls(channels, **kwargs)


__all__ = [
    "AttentionWeightedAverage",
    "BridgeAttention",
    "CBAM",
    "ChannelGate",
    "EfficientChannelAttention",
    "GlobalWeightedAvgPool",
    "SpatialAttention",
    "SpatialGate",
    "SqueezeExcitation",
    "create_attention",
    "eca_kernel_size",
    "list_attention",
]
