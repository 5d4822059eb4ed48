"""Evaluation with Paddle Inference: :func:`export_for_inference` writes a model with
``paddle.jit.save`` (global means traced as pooling ops, :mod:`ba_net.accel.tracing`) and
:class:`InferenceRunner` runs it (oneDNN, all usable cores; ``enable_memory_optim()`` is not
called: it fails on CPU in 3.3.1). :func:`ba_net.accel.paths.eval_model` picks it or dygraph."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import paddle

from ba_net.runtime import quiet_paddle, usable_cpus
from ba_net.accel.tracing import global_means_as_pooling

logger = logging.getLogger(__name__)


class _Softmax(paddle.nn.Layer):
    """``model`` followed by a softmax over the classes: the graph outputs probabilities."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return paddle.nn.functional.softmax(self.model(images), axis=-1)


def export_for_inference(model, directory, image_shape: Optional[tuple] = None, prefix: str = "model",
                         softmax: bool = False) -> Path:
    """``paddle.jit.save`` of ``model`` in eval mode with a dynamic batch; returns the path prefix
    (``<directory>/<prefix>``; Paddle 3 writes ``<prefix>.json`` and ``<prefix>.pdiparams``). The
    input is ``image_shape`` (C, H, W), by default (3, s, s) with s the model's ``input_size`` (128
    if it has none). The graph outputs the logits, or with ``softmax`` their softmax over the
    classes (what tools/export.py ships: PaddleX shows the output as scores)."""
    from paddle.static import InputSpec

    from ba_net.data import model_input_size

    if image_shape is None:
        size = model_input_size(model) or 128
        image_shape = (3, size, size)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / prefix
    was_training = model.training
    model.eval()
    layer = _Softmax(model) if softmax else model
    layer.eval()  # Layer.eval() returns None before Paddle 3.1: never chain it
    try:
        with global_means_as_pooling(), quiet_paddle():
            static = paddle.jit.to_static(layer, input_spec=[InputSpec([None, *image_shape], "float32", "images")],
                                          full_graph=True)
            paddle.jit.save(static, str(path))
    finally:
        if was_training:
            model.train()
    return path


def _model_files(prefix: Path) -> tuple[str, str]:
    for ext in (".json", ".pdmodel"):
        if prefix.with_suffix(ext).is_file():
            return str(prefix.with_suffix(ext)), str(prefix.with_suffix(".pdiparams"))
    raise FileNotFoundError(f"no exported model at {prefix} (.json or .pdmodel)")


def _enable_onednn(config) -> bool:
    """Switch a Paddle Inference config to oneDNN: ``enable_onednn`` since Paddle 3.2, the same
    switch under its old name ``enable_mkldnn`` in 3.0 and 3.1 (found by introspection, not by
    version). Returns False (and the predictor runs Paddle's own CPU kernels) if the build has neither."""
    for name in ("enable_onednn", "enable_mkldnn"):
        switch = getattr(config, name, None)
        if callable(switch):
            switch()
            return True
    logger.info("Paddle Inference has no oneDNN switch in this build: the predictor uses Paddle's CPU kernels")
    return False


class InferenceRunner:
    """A Paddle Inference predictor of an exported model: ``runner(images) -> logits`` (dygraph
    tensor), with ``eval()`` / ``train()`` so it stands in for a model in evaluation code.

    Args:
        prefix: what :func:`export_for_inference` returned.
        threads: math-library threads (default: the usable cores).
        onednn: run with oneDNN kernels and fusions (CPU only).
    """

    def __init__(self, prefix, threads: Optional[int] = None, onednn: bool = True):
        import paddle.inference as pi

        model_file, params_file = _model_files(Path(prefix))
        config = pi.Config(model_file, params_file)
        config.disable_glog_info()
        if paddle.device.get_device().startswith("gpu"):
            config.enable_use_gpu(256, int(paddle.device.get_device().split(":")[-1] or 0))
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads or usable_cpus())
            if onednn:
                _enable_onednn(config)
        config.switch_ir_optim(True)
        with quiet_paddle():
            self.predictor = pi.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        self.training = False
        self.warm = False  # the first run picks oneDNN kernels (Paddle prints their checks): held back

    def eval(self):
        return self

    def train(self):
        return self

    def run_numpy(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        self.input.reshape(list(images.shape))
        self.input.copy_from_cpu(images)
        if self.warm:
            self.predictor.run()
        else:
            with quiet_paddle():
                self.predictor.run()
            self.warm = True
        return self.output.copy_to_cpu()

    def __call__(self, images):
        return paddle.to_tensor(self.run_numpy(images.numpy() if hasattr(images, "numpy") else images))


__all__ = ["InferenceRunner", "export_for_inference"]
