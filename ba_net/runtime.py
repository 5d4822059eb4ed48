"""Process set-up that has to happen before Paddle is imported, and device selection.

Paddle's CPU wheel uses one core out of the box (it sets ``OMP_NUM_THREADS=1`` when unset) and its
bundled MKL takes a slow code path on AMD CPUs unless ``MKL_DEBUG_CPU_TYPE=5`` is in the
environment when the library loads. ``configure_environment`` fixes both, and is called by
``ba_net/__init__.py`` before anything imports Paddle. Values the user already set are kept.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

logger = logging.getLogger(__name__)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _is_amd_cpu() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    return False


def configure_environment() -> dict:
    """Set thread count and the MKL CPU-type switch for this process (before Paddle loads).

    Under ``paddle.distributed.launch`` the cores are shared between the local ranks.
    Returns the settings that are in force, for logging.
    """
    local_ranks = int(os.environ.get("PADDLE_LOCAL_SIZE", os.environ.get("PADDLE_TRAINERS_NUM", "1")) or 1)
    threads = max(1, _usable_cpus() // max(1, local_ranks))
    late = "paddle" in sys.modules  # e.g. a notebook that ran `import paddle` first
    mkl_unset = _is_amd_cpu() and "MKL_DEBUG_CPU_TYPE" not in os.environ
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if _is_amd_cpu():
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    # Paddle's C++ INFO lines (one per executor and per oneDNN thread pool) say nothing useful;
    # warnings and errors still show. glog reads this when Paddle loads.
    os.environ.setdefault("GLOG_minloglevel", "1")
    # Paddle warns at import time about a missing C++ compiler cache; it is irrelevant here.
    warnings.filterwarnings("ignore", message="No ccache found")
    # BatchNorm in training mode says it tracks running statistics: that is what we want.
    warnings.filterwarnings("ignore", message="When training, we now always track global mean")
    if late:
        _configure_loaded_paddle(threads, mkl_unset)
    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}


def _configure_loaded_paddle(threads: int, mkl_unset: bool) -> None:
    """Paddle was imported before ba_net: its environment is fixed. The thread count can still
    be applied (Paddle's ``core.set_num_threads``, unless OMP_NUM_THREADS asks for more than 1 --
    Paddle sets it to 1 when unset); the MKL switch cannot: MKL has read its environment."""
    try:
        from paddle.base import core

        if os.environ.get("OMP_NUM_THREADS") == "1" and threads > 1:
            core.set_num_threads(threads)
            logger.info("paddle was imported before ba_net: math threads set to %d now", threads)
    except Exception as exc:  # a Paddle without the call: one thread stays
        logger.warning("paddle was imported before ba_net and its thread count could not be set (%s); "
                       "import ba_net before paddle for %d threads", type(exc).__name__, threads)
    if mkl_unset:
        logger.warning("paddle was imported before ba_net, so MKL_DEBUG_CPU_TYPE=5 could not be applied: on "
                       "this AMD CPU MKL's matrix products run ~3x slower; restart and import ba_net first")
    logger.info("paddle was imported before ba_net: Paddle's C++ log level is left as it is")


def import_paddle_quietly():
    """Import Paddle without its start-up warning about OMP_NUM_THREADS > 1 (which we set on
    purpose: one process per machine trains fastest with all cores); other output passes."""
    import contextlib
    import io

    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import paddle
    for line in captured.getvalue().splitlines():
        if "OMP_NUM_THREADS" not in line:
            print(line, file=sys.stderr)
    return paddle


def select_device(requested: str = "auto") -> str:
    """Return the Paddle device string for ``requested`` in {'auto', 'cpu', 'gpu'} and set it."""
    import paddle

    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if requested == "gpu" and not has_gpu:
        from ba_net.errors import ConfigError

        raise ConfigError("device 'gpu' requested but Paddle has no usable CUDA device; use device: cpu or auto")
    device = "gpu" if (requested == "gpu" or (requested == "auto" and has_gpu)) else "cpu"
    if device == "gpu":
        # one process per GPU: the launcher tells each rank its card
        device = f"gpu:{int(os.environ.get('FLAGS_selected_gpus', '0').split(',')[0])}"
    paddle.set_device(device)
    return device


def setup_logging(level: int = logging.INFO) -> None:
    """Console logging for the tools: time-stamped lines from the ``ba_net`` loggers, rank-tagged
    under data parallel (ranks other than 0 log warnings only)."""
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    tag = f"[rank {rank}] " if world > 1 else ""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {tag}%(message)s", "%H:%M:%S"))
    root = logging.getLogger("ba_net")
    root.handlers[:] = [handler]
    root.setLevel(level if rank == 0 else logging.WARNING)
    root.propagate = False
