"""An exponential moving average of a model's weights (``train.ema_decay``, off by default).

After every optimizer step, each floating-point entry of the model's state dict (parameters and
BatchNorm running statistics alike) moves towards the model's:
``shadow = d * shadow + (1 - d) * weight``, with ``d = min(decay, (1 + t) / (10 + t))`` at the
t-th update (the warm-up of TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so
a short run is not dominated by its initial weights. The engine evaluates the averaged weights
beside the raw ones every epoch (:meth:`WeightEMA.applied` swaps them in and back), saves them
with each checkpoint so a resumed run continues the same average, and writes them as
``best_ema.pdparams`` (best epoch by the EMA's own validation accuracy) and
``final_ema.pdparams``.
"""
from __future__ import annotations

import contextlib

import paddle

_FLOAT = (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)


class WeightEMA:
    """The moving average of ``model``'s floating-point state."""

    def __init__(self, model, decay: float):
        self.model, self.decay, self.updates = model, float(decay), 0
        with paddle.no_grad():
            self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype in _FLOAT}

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def update(self) -> None:
        """One step of the average, after an optimizer step."""
        d = self.current_decay()
        with paddle.no_grad():
            for k, v in self.model.state_dict().items():
                if k in self.shadow:
                    self.shadow[k] = d * self.shadow[k] + (1.0 - d) * v.detach().astype(self.shadow[k].dtype)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """The model with the averaged weights inside the block, its own weights after it."""
        with paddle.no_grad():
            raw = {k: self.model.state_dict()[k].detach().clone() for k in self.shadow}
            self.model.set_state_dict(self.shadow)
        try:
            yield self.model
        finally:
            with paddle.no_grad():
                self.model.set_state_dict(raw)

    def weights(self) -> dict:
        """The averaged weights under the model's keys: a state dict the model loads."""
        return dict(self.shadow)

    def state_dict(self) -> dict:
        """:meth:`weights` and the update count under ``ema.updates`` (for resuming)."""
        return {**self.shadow, "ema.updates": paddle.to_tensor(self.updates, dtype="int64")}

    def set_state_dict(self, state: dict) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing or "ema.updates" not in state:
            raise KeyError(f"EMA state lacks {', '.join(missing[:3]) or 'ema.updates'}")
        def tensor(v):
            return v if isinstance(v, paddle.Tensor) else paddle.to_tensor(v)

        with paddle.no_grad():
            self.shadow = {k: tensor(state[k]).astype(self.shadow[k].dtype) for k in self.shadow}
        self.updates = int(tensor(state["ema.updates"]).item())


__all__ = ["WeightEMA"]
