"""Attention modules, one file per family, built by name through :func:`create_attention`.

Every module takes ``channels`` first, then the reduction ratio and its activation / gate choices.
Modules with ``bridged = True`` (Bridge Attention) take the earlier features as a second forward
argument and return channel weights; the others return the re-weighted feature.
"""
from __future__ import annotations

from ba_net.attention.bridge import BridgeAttention

_REGISTRY = {
    "ba": BridgeAttention,
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


__all__ = ["BridgeAttention", "create_attention", "list_attention"]
