"""ba-net: Bridge Attention (BA-Net) vs AlexNet on CIFAR-10, reproduced in PaddlePaddle.

Importing the package configures threads and the math library before Paddle loads
(see :mod:`ba_net.runtime`); import ``ba_net`` before ``paddle`` to get the fast path.
"""
from ba_net.runtime import configure_environment as _configure_environment
from ba_net.runtime import import_paddle_quietly as _import_paddle_quietly

_configure_environment()

try:
    _paddle = _import_paddle_quietly()
except ImportError as exc:  # pragma: no cover - depends on the user's install
    raise ImportError(
        "ba_net needs PaddlePaddle 3.x: `pip install 'paddlepaddle>=3,<4'` on CPU, "
        "or paddlepaddle-gpu on CUDA machines (see README)"
    ) from exc

from ba_net.attention import BridgeAttention, create_attention, list_attention  # noqa: E402
from ba_net.complexity import count_flops, count_params  # noqa: E402
from ba_net.loss import LabelSmoothingCrossEntropy  # noqa: E402
from ba_net.models import build_model, list_models  # noqa: E402
from ba_net.schedule import WarmupCosineDecay, build_lr_scheduler  # noqa: E402

BAModule = BridgeAttention  # the name used in the project's issues

__version__ = "0.1.0"
__all__ = [
    "BAModule",
    "BridgeAttention",
    "LabelSmoothingCrossEntropy",
    "WarmupCosineDecay",
    "build_lr_scheduler",
    "build_model",
    "count_flops",
    "count_params",
    "create_attention",
    "list_attention",
    "list_models",
]
