"""Attention modules, one file per family, built by name through :func:`create_attention`.

Every module takes ``channels`` first, then the reduction ratio and its activation / gate choices
(modules without a bottleneck accept and ignore ``reduction``). Modules with ``bridged = True``
(Bridge Attention) take the earlier features as a second forward argument and return channel
weights; modules with ``pooling = True`` reduce [B, C, *spatial] to [B, C]; the others return
the re-weighted feature.

Registered names: ba, se, eca, cbam, sam, attention_weighted_avg, global_weighted_avg.
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
    "attention_weighted_avg": AttentionWeightedAverage,
    "global_weighted_avg": GlobalWeightedAvgPool,
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
