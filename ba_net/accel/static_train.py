"""The fast training path on CPU: :class:`StaticTrainer`, a training step run as a legacy static
program with oneDNN convolutions (``train.path: fast``; :mod:`ba_net.accel.paths` decides when).

Why (Paddle 3.3, CPU): dygraph convolutions run as im2col plus one small GEMM per image and never
reach oneDNN (``FLAGS_use_mkldnn`` has no effect on them), so an AlexNet step spends most of its
time in slow convolutions and in the broadcast bias add with its gradient. Turning oneDNN on for
a whole program is not an option either: with PIR programs (``paddle.jit.to_static`` or
``paddle.static``) it crashes (segfaults in ``run_program`` and with linear layers, exceptions
in pooling), and in legacy programs it fails in a reshape and in the pooling backward
(docs/performance.md says what was tried).

What works: the model is traced once into a *legacy* static program (forward, backward and the
optimizer update) with the rewrites of :mod:`ba_net.accel.tracing` (oneDNN for the convolutions only,
biases as maps, global means as pooling ops), and run by Paddle's executor in a scope of its own,
one op after another.

The results equal plain dygraph within float32 rounding (tests/test_accel.py). The dygraph model
and optimizer stay the owners of the state: their values are copied into the program's scope when
the trainer is made and copied back by :meth:`StaticTrainer.sync` (the engine calls it after every
epoch, before it evaluates and saves), so checkpoints, resume and evaluation are unchanged.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, Optional

import numpy as np
import paddle

from ba_net.accel.tracing import global_means_as_pooling, legacy_program_mode, mark_onednn, use_bias_maps

logger = logging.getLogger(__name__)

CHECK_TOLERANCE = 1e-3  # max |logit difference| / (1 + max |logit|) accepted by the build check


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

        with legacy_program_mode(), global_means_as_pooling(), paddle.utils.unique_name.guard():
            main, startup = paddle.static.Program(), paddle.static.Program()
            with paddle.static.program_guard(main, startup):
                x = paddle.static.data("images", list(image_shape), "float32")
                static_model = build_model(self.model_name, num_classes=self.num_classes, **self.model_kwargs)
                use_bias_maps(static_model)
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
        mark_onednn(main)
        return program

    def _program(self, images, target=None) -> _Program:
        if target is None:  # one eval program for every batch size (a ragged last batch included)
            key = ("eval", tuple(images.shape[1:]))
        else:
            dtype = "int64" if "int" in str(target.dtype) else "float32"
            key = ("train", tuple(images.shape), dtype, tuple(target.shape))
        program = self.programs.get(key)
        if program is None:
            shape = tuple(images.shape) if target is not None else (-1, *images.shape[1:])
            program = self._trace(shape, None if target is None else (dtype, tuple(target.shape)))
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
        self.load()

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

    def load(self) -> None:
        """Dygraph model and optimizer state -> the scope: call it after changing the dygraph
        objects' state (a checkpoint loaded, weights set) between steps. Before the first
        program is traced there is nothing to load into: tracing loads the state itself."""
        if self.train_program is None:
            return
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
        """A model-like object for ``loops.evaluate``: the traced eval-mode forward."""
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


__all__ = ["CHECK_TOLERANCE", "StaticTrainer"]
