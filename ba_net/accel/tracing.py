"""What changes while a dygraph model is traced into a static program (the fast path's training
program, :mod:`ba_net.accel.static_train`, and the exported inference model, :mod:`ba_net.accel.inference`).

* :func:`legacy_program_mode`: static mode with *legacy* programs (``OldIrGuard``); Paddle 3
  replaced some functionals (``F.sigmoid``, ``F.tanh``) by C++ entry points that refuse legacy
  variables, so legacy versions are swapped in meanwhile.
* :func:`use_bias_maps`: each ``Conv2D`` bias is added as a [C, H*W] map broadcast over the
  batch, whose gradient is a cheap reduction over the leading axis (Paddle's [1, C, 1, 1]
  broadcast costs several times more).
* :func:`mark_onednn`: only the ``conv2d`` / ``conv2d_grad`` ops of a program run on oneDNN.
* :func:`global_means_as_pooling`: the attention modules' global average pools become pooling ops.

Same values as dygraph up to float32 rounding; the model code is untouched.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import paddle

ONEDNN_OPS = ("conv2d", "conv2d_grad")  # the only ops the fast path moves to oneDNN


def _legacy_unary(op_type: str) -> Callable:
    """A functional that appends ``op_type`` to the current legacy program (Paddle 3 replaced some
    functionals, e.g. ``F.sigmoid``, by C++ entry points that accept dygraph tensors and PIR values
    only)."""

    def apply(x, name=None):
        from paddle.base.layer_helper import LayerHelper

        helper = LayerHelper(op_type)
        out = helper.create_variable_for_type_inference(x.dtype)
        helper.append_op(type=op_type, inputs={"X": x}, outputs={"Out": out})
        return out

    return apply


@contextlib.contextmanager
def legacy_program_mode():
    """Static mode with legacy programs, the functionals that need it swapped in meanwhile."""
    import paddle.nn.functional as F
    from paddle.pir_utils import OldIrGuard

    saved = {name: getattr(F, name) for name in ("sigmoid", "tanh")}
    try:
        with OldIrGuard():
            for name in saved:
                setattr(F, name, _legacy_unary(name))
            yield
    finally:
        for name, fn in saved.items():
            setattr(F, name, fn)


def _conv2d_with_bias_map(layer):
    """Forward for a (static) ``nn.Conv2D``: the convolution without bias, then the bias as a
    [C, H*W] map added over the batch axis."""
    import paddle.nn.functional as F

    def forward(x):
        y = F.conv2d(x, layer.weight, None, layer._stride, layer._padding, layer._dilation, layer._groups,
                     layer._data_format)
        _, c, h, w = y.shape
        bias_map = paddle.expand(paddle.reshape(layer.bias, [c, 1]), [c, h * w])
        return paddle.reshape(paddle.reshape(y, [-1, c, h * w]) + bias_map, [-1, c, h, w])

    return forward


def use_bias_maps(model) -> int:
    n = 0
    for layer in model.sublayers(include_self=True):
        if (type(layer) is paddle.nn.Conv2D and layer.bias is not None and layer._data_format == "NCHW"
                and layer._padding_mode == "zeros"):
            layer.forward = _conv2d_with_bias_map(layer)
            n += 1
    return n


def mark_onednn(program) -> int:
    n = 0
    for op in program.global_block().ops:
        if op.type in ONEDNN_OPS and op.has_attr("use_mkldnn"):
            op._set_attr("use_mkldnn", True)
            n += 1
    return n


@paddle.jit.not_to_static  # plain tensor ops: paddle.jit.to_static calls it as it is
def _pooled_mean(x):
    """Global average pool as a pooling op for 4-D input (the mean over [2, 3] otherwise)."""
    import paddle.nn.functional as F

    if x.ndim == 4:
        return paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return x.mean(axis=list(range(2, x.ndim))) if x.ndim > 2 else x


@contextlib.contextmanager
def global_means_as_pooling():
    """While a model is traced (training program or export), the attention modules' global
    average pool becomes a pooling op. As ``reduce_mean`` over [2, 3], oneDNN runs it with its
    reference reduction in Paddle Inference (~65 ms per 128 images for BA-AlexNet's three pools, a
    third of the pass), and Paddle's CPU gradient of it made BA's training step ~7 % slower than
    AlexNet's; as a pooling op both cost next to nothing. Same values up to float32 rounding."""
    import sys

    from ba_net.attention import helpers

    original = helpers.global_avg_pool
    swapped = [m for name, m in list(sys.modules.items())
               if name.startswith("ba_net.") and getattr(m, "global_avg_pool", None) is original]
    try:
        for module in swapped:
            module.global_avg_pool = _pooled_mean
        yield
    finally:
        for module in swapped:
            module.global_avg_pool = original


__all__ = ["ONEDNN_OPS", "global_means_as_pooling", "legacy_program_mode", "mark_onednn", "use_bias_maps"]
