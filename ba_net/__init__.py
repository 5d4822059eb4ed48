"""ba-net: Bridge Attention (BA-Net) vs AlexNet on CIFAR-10, reproduced in PaddlePaddle.

Importing the package configures threads and the math library before Paddle loads
(see :mod:`ba_net.runtime`); import ``ba_net`` before ``paddle`` to get the fast path.
"""
import sys as _sys

from ba_net.runtime import check_paddle_version as _check_paddle_version
from ba_net.runtime import configure_environment as _configure_environment
from ba_net.runtime import import_paddle_quietly as _import_paddle_quietly
from ba_net.runtime import set_package_log_level as _set_package_log_level

# The version gate runs before anything touches Paddle's internals: an unsupported Paddle (2.6
# segfaults in the tests, without a message) is refused with an ImportError naming the installed
# and the required versions. If a notebook imported Paddle first, it is checked before
# configure_environment() reaches into it; otherwise the environment is set (Paddle reads it when
# it loads), Paddle is imported and only its __version__ is read before the rest of ba_net loads.
if "paddle" in _sys.modules:
    _check_paddle_version(getattr(_sys.modules["paddle"], "__version__", None))

_configure_environment()

try:
    _paddle = _import_paddle_quietly()
except ImportError as exc:  # pragma: no cover - depends on the user's install
    raise ImportError(
        f"ba_net needs PaddlePaddle 3.x and it cannot be imported ({(str(exc) or type(exc).__name__).splitlines()[0]}): "
        "`pip install 'paddlepaddle>=3,<4'` "
        "on CPU, or paddlepaddle-gpu on CUDA machines (see README)", name="paddle"
    ) from exc

_check_paddle_version(getattr(_paddle, "__version__", None))
_set_package_log_level()

import importlib.util as _importlib_util  # noqa: E402

if _importlib_util.find_spec("cv2") is None:
    raise ImportError("ba_net needs OpenCV (the cv2 module) and none is installed: "
                      "`pip install opencv-python-headless`, or any other OpenCV build", name="cv2")

from ba_net.attention import BridgeAttention, create_attention, list_attention  # noqa: E402
from ba_net.models.complexity import count_macs, count_params  # noqa: E402
from ba_net.train.loss import LabelSmoothingCrossEntropy  # noqa: E402
from ba_net.models import build_model, list_models  # noqa: E402
from ba_net.train.schedule import WarmupCosineDecay, build_lr_scheduler  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "BridgeAttention",
    "LabelSmoothingCrossEntropy",
    "WarmupCosineDecay",
    "build_lr_scheduler",
    "build_model",
    "count_macs",
    "count_params",
    "create_attention",
    "list_attention",
    "list_models",
    "register_paddlex",
]


def __getattr__(name):
    """``ba_net.register_paddlex``, loaded on first use (:mod:`ba_net.deploy.paddlex`): ``import
    ba_net`` imports neither the deploy code nor paddlex, an optional extra."""
    if name == "register_paddlex":
        from ba_net.deploy.paddlex import register_paddlex

        return register_paddlex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
