"""Model registry: every network is built by name through :func:`build_model`."""
from __future__ import annotations

from functools import partial

from ba_net.models.alexnet import AlexNet

_REGISTRY = {
    "alexnet": AlexNet,
    "ba_alexnet": partial(AlexNet, attention="ba"),
    "ba_alexnet_notebook": partial(AlexNet, attention="ba", apply_attention=False),
}


def list_models() -> list:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int = 10, **kwargs):
    """Build the model registered as ``name``.

    alexnet: the notebook's AlexNet (128 px input). ba_alexnet: BA-AlexNet with the attention
    applied (the corrected model). ba_alexnet_notebook: the notebook's BA-AlexNet, attention
    computed and discarded (its output does not depend on the BA module).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}") from None
    return factory(num_classes=num_classes, **kwargs)


__all__ = ["AlexNet", "build_model", "list_models"]
