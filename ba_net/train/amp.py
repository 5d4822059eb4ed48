"""Mixed precision (``train.amp``): fp16 autocast with a dynamic loss scaler on a GPU
(:func:`grad_scaler`; on CPU the run trains in float32 with one warning line), and the scaler's
state as JSON in the resume checkpoint (:func:`scaler_state`, :func:`load_scaler_state`), so a
resumed AMP run scales its loss exactly as the uninterrupted one."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import paddle

logger = logging.getLogger(__name__)


def grad_scaler(amp: bool, device: str):
    """AMP's loss scaler on a GPU; None (float32) otherwise."""
    if amp and device.startswith("gpu"):
        return paddle.amp.GradScaler(init_loss_scaling=2.0**15)
    if amp:
        logger.warning("train.amp needs a GPU; training in float32 on %s", device)
    return None


def scaler_state(scaler) -> Optional[dict]:
    """The loss scaler's state as JSON (its scale, growth counters and settings), or None."""
    if scaler is None or not scaler.state_dict():
        return None
    return {k: float(np.asarray(v).reshape(-1)[0]) if k == "scale" else v for k, v in scaler.state_dict().items()}


def load_scaler_state(scaler, state: Optional[dict], label: str) -> None:
    """Restore :func:`scaler_state` into ``scaler``, so a resumed AMP run scales its loss as the
    uninterrupted run would have."""
    if scaler is None:
        return
    if not state:
        logger.warning("%s: the checkpoint has no loss-scaler state (saved without AMP on a GPU); the scale "
                       "starts again at its initial value", label)
        return
    scaler.load_state_dict({**state, "scale": np.array([state["scale"]], dtype=np.float32)})


__all__ = ["grad_scaler", "load_scaler_state", "scaler_state"]
