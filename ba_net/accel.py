"""Fast execution paths for training and evaluation, with plain dygraph as the fallback.

Why a separate path is needed (Paddle 3.3, CPU): dygraph convolutions run as im2col plus one small
GEMM per image and never reach oneDNN (``FLAGS_use_mkldnn`` has no effect on them), so an AlexNet
step spends most of its time in slow convolutions and in the broadcast bias add with its
gradient. Turning oneDNN on for a whole program is not an option either: with PIR programs
(``paddle.jit.to_static`` or ``paddle.static``) it crashes (segfaults in ``run_program`` and with
linear layers, exceptions in pooling), and in legacy programs it fails in a reshape and in the
pooling backward (docs/PERFORMANCE.md lists every attempt).

What works, and is what ``train.path: fast`` uses on CPU (:class:`StaticTrainer`):

* the model is traced once into a *legacy* static program (forward, backward and the optimizer
  update, ``paddle.pir_utils.OldIrGuard``), run by Paddle's executor in a scope of its own;
* only the ``conv2d`` / ``conv2d_grad`` ops are switched to oneDNN (per op, through their
  ``use_mkldnn`` attribute); every other op keeps Paddle's CPU kernel;
* each ``Conv2D`` bias is added as a [C, H*W] map broadcast over the batch, whose gradient is a
  cheap reduction over the leading axis (Paddle's [1, C, 1, 1] broadcast costs several times more);
* the attention modules' global average pools are traced as pooling ops (see
  :func:`_global_means_as_pooling`).

The results equal plain dygraph within float32 rounding (tests/test_accel.py). The dygraph model
and optimizer stay the owners of the state: their values are copied into the program's scope when
the trainer is made and copied back by :meth:`StaticTrainer.sync` (the engine calls it after every
epoch, before it evaluates and saves), so checkpoints, resume and evaluation are unchanged.
Anything the fast path cannot do -- GPU, several processes, a model whose program cannot be built,
a program whose output differs from dygraph on a check batch -- falls back to dygraph with a log
line saying why.

Evaluation outside training: :func:`export_for_inference` writes the model with
``paddle.jit.save`` and :class:`InferenceRunner` runs it with Paddle Inference (oneDNN, all cores;
``enable_memory_optim()`` is not called: it fails on CPU in 3.3.1). :func:`eval_model` returns
whichever of the two a path calls for, usable wherever a model in eval mode is.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import paddle

logger = logging.getLogger(__name__)

PATHS = ("fast", "dygraph")
ONEDNN_OPS = ("conv2d", "conv2d_grad")  # the only ops the fast path moves to oneDNN
CHECK_TOLERANCE = 1e-3  # max |logit difference| / (1 + max |logit|) accepted by the build check


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ------------------------------------------------------------------------- legacy programs

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
def _legacy_program_mode():
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


@contextlib.contextmanager
def _run_mode(scope):
    """Run legacy programs in ``scope``, the executor running ops one after another: its default
    thread pool runs independent ops concurrently, each with its own OpenMP team, which on a
    2-core machine means 4+ busy threads on 2 cores (~10-20 % more CPU time per step)."""
    from paddle.pir_utils import OldIrGuard

    serial = paddle.get_flags("FLAGS_new_executor_serial_run")["FLAGS_new_executor_serial_run"]
    paddle.set_flags({"FLAGS_new_executor_serial_run": True})
    try:
        with OldIrGuard(), paddle.static.scope_guard(scope):
            yield
    finally:
        paddle.set_flags({"FLAGS_new_executor_serial_run": serial})


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


def _use_bias_maps(model) -> int:
    n = 0
    for layer in model.sublayers(include_self=True):
        if (type(layer) is paddle.nn.Conv2D and layer.bias is not None and layer._data_format == "NCHW"
                and layer._padding_mode == "zeros"):
            layer.forward = _conv2d_with_bias_map(layer)
            n += 1
    return n


def _mark_onednn(program) -> int:
    n = 0
    for op in program.global_block().ops:
        if op.type in ONEDNN_OPS and op.has_attr("use_mkldnn"):
            op._set_attr("use_mkldnn", True)
            n += 1
    return n


def _tensor_to_numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


class _Program:
    """One traced program: training (forward, backward, update) or eval-mode forward."""

    def __init__(self, main, startup, loss, logits, static_model, optimizer=None):
        self.main, self.startup, self.loss, self.logits = main, startup, loss, logits
        self.static_model, self.optimizer = static_model, optimizer


class StaticTrainer:
    """A training step ``(images, target) -> (logits, loss)`` run as a legacy static program with
    oneDNN convolutions, on the state of a dygraph model and optimizer (see the module notes).

    Programs are traced per input shape (and target kind); they all name their variables alike,
    so they share one scope and one state.

    Args:
        model_name, model_kwargs, num_classes: how to build the model again (:func:`build_model`).
        model: the dygraph model; its weights and buffers are the starting point and receive the
            trained values at :meth:`sync`.
        optimizer: the dygraph optimizer; its state is loaded likewise and receives the trained
            state at :meth:`sync`.
        make_optimizer: ``make_optimizer(parameters)`` builds an optimizer like ``optimizer`` (same
            type, hyperparameters and LR scheduler object); it is called with None in static mode.
        loss_fn: the loss layer, ``loss_fn(logits, target)``.
    """

    def __init__(self, model_name: str, model_kwargs: dict, num_classes: int, model, optimizer,
                 make_optimizer: Callable, loss_fn):
        self.model_name, self.model_kwargs, self.num_classes = model_name, dict(model_kwargs), num_classes
        self.model, self.optimizer, self.make_optimizer, self.loss_fn = model, optimizer, make_optimizer, loss_fn
        self.place = paddle.CPUPlace()
        self.scope = paddle.static.Scope()
        self.executor = paddle.static.Executor(self.place)
        self.programs: dict = {}
        self.train_program: Optional[_Program] = None  # the one that created the scope's state
        self.dirty = False  # the scope holds steps the dygraph objects have not seen yet

    # ---------------------------------------------------------------- building
    def _trace(self, image_shape: tuple, target=None) -> _Program:
        """Trace the model for ``image_shape``: a training program when ``target`` = (dtype, shape)
        is given, else an eval-mode forward."""
        from ba_net.models import build_model

        with _legacy_program_mode(), _global_means_as_pooling(), paddle.utils.unique_name.guard():
            main, startup = paddle.static.Program(), paddle.static.Program()
            with paddle.static.program_guard(main, startup):
                x = paddle.static.data("images", list(image_shape), "float32")
                static_model = build_model(self.model_name, num_classes=self.num_classes, **self.model_kwargs)
                _use_bias_maps(static_model)
                if target is None:
                    static_model.eval()
                    logits = static_model(x)
                    program = _Program(main, startup, None, logits, static_model)
                else:
                    y = paddle.static.data("target", list(target[1]), target[0])
                    static_model.train()
                    logits = static_model(x)
                    loss = self.loss_fn(logits, y)
                    optimizer = self.make_optimizer(None)
                    optimizer.minimize(loss)
                    program = _Program(main, startup, loss, logits, static_model, optimizer)
        _mark_onednn(main)
        return program

    def _program(self, images, target=None) -> _Program:
        if target is None:
            key = ("eval", tuple(images.shape))
        else:
            dtype = "int64" if "int" in str(target.dtype) else "float32"
            key = ("train", tuple(images.shape), dtype, tuple(target.shape))
        program = self.programs.get(key)
        if program is None:
            program = self._trace(tuple(images.shape), None if target is None else (dtype, tuple(target.shape)))
            self._attach(program)
            self.programs[key] = program
            logger.debug("fast path: traced %s %s program for %s", self.model_name, key[0], list(images.shape))
        return program

    def _attach(self, program: _Program) -> None:
        """Make the scope hold every persistable variable ``program`` uses."""
        needed = [v.name for v in program.main.list_vars() if v.persistable and v.name not in ("feed", "fetch")]
        if all(self.scope.find_var(name) is not None for name in needed):
            return  # state shared with the programs traced before
        if program.optimizer is None:
            raise RuntimeError("an eval program was traced before any training program")
        self.sync()
        rng = paddle.get_rng_state()
        with _run_mode(self.scope):
            self.executor.run(program.startup)  # creates the variables; the values are replaced below
        paddle.set_rng_state(rng)  # initializers must not move the generator dropout draws from
        self.train_program = program
        self._load()

    def _state_pairs(self):
        """(dygraph tensor, static variable name) for every weight and buffer."""
        static_state = self.train_program.static_model.state_dict()
        dy_state = self.model.state_dict()
        if list(static_state) != list(dy_state):
            raise RuntimeError("the traced model's state does not match the dygraph model's")
        return [(dy_state[k], static_state[k].name) for k in dy_state]

    def _optimizer_pairs(self):
        """(dygraph state-dict name, static variable name) of every optimizer accumulator. The
        dygraph optimizer names them ``<parameter>_<accumulator>_0`` when it creates them."""
        by_static_name = {static_name: tensor for tensor, static_name in self._state_pairs()}
        return [(f"{by_static_name[param].name}_{acc}_0", var.name)
                for acc, per_param in self.train_program.optimizer._accumulators.items()
                for param, var in per_param.items()]

    def _load(self) -> None:
        """Dygraph model and optimizer state -> the scope."""
        for tensor, name in self._state_pairs():
            self.scope.find_var(name).get_tensor().set(_tensor_to_numpy(tensor), self.place)
        opt_state = self.optimizer.state_dict()
        for dy_name, static_name in self._optimizer_pairs():
            if dy_name in opt_state:
                self.scope.find_var(static_name).get_tensor().set(_tensor_to_numpy(opt_state[dy_name]), self.place)

    # ---------------------------------------------------------------- running
    def __call__(self, images, target):
        """One optimizer step on (images, target); returns (logits, loss) as dygraph tensors."""
        program = self._program(images, target)
        feed = {"images": _tensor_to_numpy(images), "target": _tensor_to_numpy(target)}
        with _run_mode(self.scope):
            loss, logits = self.executor.run(program.main, feed=feed, fetch_list=[program.loss, program.logits])
        self.dirty = True
        return paddle.to_tensor(logits), paddle.to_tensor(loss)

    def predict(self, images):
        """Logits of the current weights in eval mode (no dropout, BatchNorm running statistics)."""
        program = self._program(images)
        with _run_mode(self.scope):
            (logits,) = self.executor.run(program.main, feed={"images": _tensor_to_numpy(images)},
                                          fetch_list=[program.logits])
        return paddle.to_tensor(logits)

    def sync(self) -> None:
        """Trained weights, buffers and optimizer state -> the dygraph model and optimizer."""
        if self.train_program is None or not self.dirty:
            return
        for tensor, name in self._state_pairs():
            tensor.set_value(np.array(self.scope.find_var(name).get_tensor()))
        state = {dy_name: paddle.to_tensor(np.array(self.scope.find_var(static_name).get_tensor()))
                 for dy_name, static_name in self._optimizer_pairs()}
        lr = getattr(self.optimizer, "_learning_rate", None)
        if hasattr(lr, "state_dict"):
            state["LR_Scheduler"] = lr.state_dict()
        self.optimizer.set_state_dict(state)
        self.dirty = False

    @property
    def eval_model(self):
        """A model-like object for ``engine.evaluate``: the traced eval-mode forward."""
        return _EvalModel(self.predict)

    # ---------------------------------------------------------------- checking
    def check(self, image_shape: tuple, soft_targets: bool = False) -> float:
        """Trace the training program for batches of ``image_shape`` (integer labels, or class
        probabilities when ``soft_targets``), then compare eval-mode logits with dygraph's on a
        small random batch; returns the relative difference (raises above CHECK_TOLERANCE)."""
        batch = int(image_shape[0])
        target = (paddle.zeros([batch, self.num_classes], dtype="float32") if soft_targets
                  else paddle.zeros([batch], dtype="int64"))
        self._program(paddle.zeros(list(image_shape), dtype="float32"), target)
        images = paddle.to_tensor(np.random.default_rng(0).standard_normal(
            (min(4, batch),) + tuple(image_shape[1:])).astype("float32"))
        was_training = self.model.training
        self.model.eval()
        try:
            with paddle.no_grad():
                reference = self.model(images).numpy()
        finally:
            if was_training:
                self.model.train()
        got = self.predict(images).numpy()
        diff = float(np.abs(got - reference).max() / (1.0 + np.abs(reference).max()))
        if not np.isfinite(diff) or diff > CHECK_TOLERANCE:
            raise RuntimeError(f"traced program differs from dygraph by {diff:.3g} (relative)")
        return diff


class _EvalModel:
    """Wraps a ``images -> logits`` function as a model in eval mode."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.training = False

    def eval(self):
        return self

    def train(self):
        return self

    def __call__(self, images):
        return self.fn(images)


def resolve_path(requested: str, device: str, world: int = 1) -> tuple[str, str]:
    """(path actually used, reason) for ``train.path``: 'static_onednn' or 'dygraph'."""
    if requested == "dygraph":
        return "dygraph", "train.path: dygraph"
    if not device.startswith("cpu"):
        return "dygraph", f"on {device} the fast path is dygraph (with train.amp if set)"
    if world > 1:
        return "dygraph", f"{world} processes: the static program has no gradient all-reduce; dygraph DataParallel"
    try:  # Paddle's internals: the build's oneDNN flag is named differently across 3.x
        from paddle.base import core

        has_onednn = getattr(core, "is_compiled_with_onednn", getattr(core, "is_compiled_with_mkldnn", None))()
    except Exception:  # no such module or function in this Paddle: do not guess
        return "dygraph", "this Paddle does not say whether it was built with oneDNN"
    if not has_onednn:
        return "dygraph", "this Paddle build has no oneDNN"
    return "static_onednn", "legacy static program, oneDNN convolutions"


def prepare_training(cfg: dict, model_name: str, model, optimizer, make_optimizer: Callable, loss_fn, *,
                     device: str, world: int = 1, image_shape: Optional[tuple] = None) -> Optional[StaticTrainer]:
    """The training step for ``cfg['train']['path']``: a :class:`StaticTrainer`, or None for the
    engine's own dygraph step. A trainer is returned only after its program was built and checked
    against dygraph; any failure is logged and leads to None."""
    path, reason = resolve_path(cfg["train"]["path"], device, world)
    if path == "dygraph":
        logger.info("training path: dygraph (%s)", reason)
        return None
    if image_shape is None:
        from ba_net.data import IMAGE_SIZE

        image_shape = (cfg["train"]["batch_size"], 3, IMAGE_SIZE, IMAGE_SIZE)
    from ba_net.data import CLASSES

    num_classes = len(CLASSES)
    try:
        trainer = StaticTrainer(model_name, cfg["model_kwargs"], num_classes, model, optimizer, make_optimizer, loss_fn)
        diff = trainer.check(tuple(image_shape), soft_targets=cfg["data"]["mixup_alpha"] > 0)
    except Exception as exc:  # an op the legacy program cannot express, or a mismatch
        logger.warning("training path: dygraph (the fast path is unavailable for %s: %s: %s)", model_name,
                       type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return None
    logger.info("training path: fast (%s; check against dygraph: %.1e)", reason, diff)
    return trainer


# ----------------------------------------------------------------------------- inference

@paddle.jit.not_to_static  # plain tensor ops: paddle.jit.to_static calls it as it is
def _pooled_mean(x):
    """Global average pool as a pooling op for 4-D input (the mean over [2, 3] otherwise)."""
    import paddle.nn.functional as F

    if x.ndim == 4:
        return paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return x.mean(axis=list(range(2, x.ndim))) if x.ndim > 2 else x


@contextlib.contextmanager
def _global_means_as_pooling():
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


def export_for_inference(model, directory, image_shape: tuple = (3, 128, 128)) -> Path:
    """``paddle.jit.save`` of ``model`` in eval mode with a dynamic batch; returns the path prefix
    (``<directory>/model``; Paddle 3 writes ``model.json`` and ``model.pdiparams``)."""
    from paddle.static import InputSpec

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / "model"
    was_training = model.training
    model.eval()
    try:
        with _global_means_as_pooling():
            static = paddle.jit.to_static(model, input_spec=[InputSpec([None, *image_shape], "float32", "images")],
                                          full_graph=True)
            paddle.jit.save(static, str(prefix))
    finally:
        if was_training:
            model.train()
    return prefix


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
        self.predictor = pi.create_predictor(config)
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        self.training = False

    def eval(self):
        return self

    def train(self):
        return self

    def run_numpy(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        self.input.reshape(list(images.shape))
        self.input.copy_from_cpu(images)
        self.predictor.run()
        return self.output.copy_to_cpu()

    def __call__(self, images):
        return paddle.to_tensor(self.run_numpy(_tensor_to_numpy(images)))


def eval_model(model, path: str = "fast"):
    """What evaluation should call for ``path`` ('fast' or 'dygraph', as ``train.path``): on
    'fast' an :class:`InferenceRunner` of ``model`` exported with its current weights (the export
    goes to a temporary folder, removed once the predictor has loaded it), else ``model`` itself.
    Falls back to ``model`` (logged) if the export or the predictor fails."""
    import shutil

    if path == "dygraph":
        return model
    if paddle.device.get_device().startswith("gpu"):
        return model  # Paddle Inference on GPU is untested here: dygraph (with AMP if asked) stays
    directory = tempfile.mkdtemp(prefix="ba_net_infer_")
    try:
        return InferenceRunner(export_for_inference(model, directory))
    except Exception as exc:
        logger.warning("eval path: dygraph (export for Paddle Inference failed: %s: %s)", type(exc).__name__, exc)
        return model
    finally:
        shutil.rmtree(directory, ignore_errors=True)


__all__ = ["InferenceRunner", "PATHS", "StaticTrainer", "eval_model", "export_for_inference", "prepare_training",
           "resolve_path"]
