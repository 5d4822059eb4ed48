"""What a model's attention modules do: their gate values on a batch, captured in one forward
(for the training dashboard, :mod:`ba_net.train.dashboard`, and tools/compare.py's BA-vs-SE figure,
:mod:`ba_net.report.attention_figure`).

* :func:`attention_modules` finds every module of :mod:`ba_net.attention` in a model that has a
  ``weights(...)`` method (BA, SE, ECA, SAM, CBAM's channel and spatial gates, the multi-attention
  head's pools), by its name in ``model.named_sublayers()`` (``attention`` in AlexNet,
  ``layer1.0.attention`` in the CIFAR ResNets, ``attention.channel_gate`` for CBAM).
* :func:`probe` runs one forward of a batch in eval mode under ``no_grad``, with a forward
  pre-hook on each of those modules that calls its ``weights`` on the module's own inputs; it
  returns the predicted classes and ``{module name: gates}``. The layers' train/eval flags are
  restored afterwards and no random generator is drawn from, so training continues exactly as
  without it.
"""
from __future__ import annotations

import inspect

import numpy as np
import paddle


def attention_modules(model) -> list:
    """[(name, layer)] of the modules from :mod:`ba_net.attention` in ``model`` that have ``weights``."""
    return [(name, layer) for name, layer in model.named_sublayers()
            if type(layer).__module__.startswith("ba_net.attention.") and callable(getattr(layer, "weights", None))]


def _recorder(name: str, layer, out: dict):
    """A forward pre-hook that appends ``layer.weights(*inputs)`` (numpy) to ``out[name]``."""
    takes_input = bool(inspect.signature(layer.weights).parameters)  # GlobalWeightedAvgPool's are parameters only

    def hook(_layer, inputs):
        gates = layer.weights(*inputs) if takes_input else layer.weights()
        out.setdefault(name, []).append(gates.numpy())

    return hook


def probe(model, inputs: np.ndarray) -> tuple:
    """(predicted classes, {module name: gates}) of ``model`` on ``inputs`` (NCHW float32): one
    forward in eval mode under no_grad; every layer's train/eval flag is restored afterwards.
    A module's gates keep the shape its ``weights`` returns ([B, C, 1, 1] for channel gates,
    [B, 1, H, W] for spatial ones)."""
    captured = {}
    handles = [layer.register_forward_pre_hook(_recorder(name, layer, captured))
               for name, layer in attention_modules(model)]
    modes = [(layer, layer.training) for layer in model.sublayers(include_self=True)]
    model.eval()
    try:
        with paddle.no_grad():
            logits = model(paddle.to_tensor(inputs))
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes:
            layer.training = training
    gates = {name: np.concatenate(parts) if len(parts) > 1 else parts[0] for name, parts in captured.items()}
    return logits.numpy().argmax(axis=1), gates


def per_channel(gates: np.ndarray) -> np.ndarray:
    """[B, C]: each image's gate per channel (the mean over positions for gates with positions)."""
    return gates.reshape(gates.shape[0], gates.shape[1], -1).mean(axis=2)


__all__ = ["attention_modules", "per_channel", "probe"]
