"""The machine and the process: machine facts (usable cores, the CPU from /proc/cpuinfo, the load),
Paddle's version gate, the set-up that has to happen before Paddle is imported, device
selection, the tools' logging, and the progress lines of long work (:func:`hms`, :class:`Progress`).

Paddle's CPU wheel uses one core out of the box (it sets ``OMP_NUM_THREADS=1`` when unset) and its
bundled MKL takes a slow code path on AMD CPUs unless ``MKL_DEBUG_CPU_TYPE=5`` is in the
environment when the library loads. ``configure_environment`` fixes both, and is called by
``ba_net/__init__.py`` before anything imports Paddle. Values the user already set are kept.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from typing import Optional

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------- machine facts

def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpuinfo(field: str) -> Optional[str]:
    """The first value of ``field`` in /proc/cpuinfo; None without that file or field."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _is_amd_cpu() -> bool:
    return "AuthenticAMD" in (_cpuinfo("vendor_id") or "")


def cpu_model() -> Optional[str]:
    """The CPU's model name (/proc/cpuinfo), None where there is none."""
    return _cpuinfo("model name")


def load_average() -> Optional[float]:
    """The 1-minute load average (other processes slow the CPU down), None where the OS has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def describe_device() -> str:
    """The current Paddle device with the hardware behind it."""
    import paddle

    device = paddle.device.get_device()
    if device.startswith("gpu"):
        try:
            return f"{device} ({paddle.device.cuda.get_device_name()})"
        except Exception:  # the name is decoration only
            return device
    return f"cpu ({cpu_model() or 'unknown CPU'}, {os.environ.get('OMP_NUM_THREADS', '?')} threads)"


# ---------------------------------------------------------------------- Paddle's version


# The Paddle versions ba_net runs on; the `cpu` extra in setup.cfg admits the same range, 3.0.0
# is the oldest. 2.6 is refused: 22 tests failed on it, many by a segfault in zlib's inflateReset2
# with no message, and the fast path fails on it (``paddle.pir_utils.OldIrGuard``).
PADDLE_MIN = (3, 0, 0)
PADDLE_BELOW = (4,)  # first major version not tested; it is warned about, not refused
PADDLE_RANGE = ">=3.0,<4"
_PRERELEASE = re.compile(r"^[.-]?(a|alpha|b|beta|rc|c|pre|preview|dev)", re.IGNORECASE)


def _parse_version(version: str):
    """(major, minor, patch) and whether it is a pre-release, or None if ``version`` does not
    start with ``N.N``."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(.*)$", str(version))
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)), bool(_PRERELEASE.match(m.group(4)))


def paddle_version_problem(version) -> Optional[str]:
    """The one-line reason ``version`` (Paddle's ``__version__``) cannot run ba_net, or None if it
    can. Development builds report 0.0.0 and are let through, as are versions that cannot be read."""
    parsed = _parse_version(version) if version is not None else None
    if parsed is None or parsed[0] == (0, 0, 0):
        return None
    numbers, prerelease = parsed
    if numbers < PADDLE_MIN or (numbers == PADDLE_MIN and prerelease):
        return (f"ba_net needs PaddlePaddle {PADDLE_RANGE} (3.x) but PaddlePaddle {version} is installed; "
                f"on CPU run `pip install -U 'paddlepaddle{PADDLE_RANGE}'`, on a CUDA machine install "
                f"paddlepaddle-gpu 3.x for your CUDA version (see README); on AI Studio choose an "
                f"environment (image) with PaddlePaddle 3.x")
    return None


def check_paddle_version(version) -> None:
    """Raise ImportError (``name='paddle'``, so the tools print it as one line) when Paddle
    ``version`` is older than ba_net supports; warn when it is newer than tested. Reads nothing but
    the version string: it runs before anything touches Paddle's internals."""
    problem = paddle_version_problem(version)
    if problem is not None:
        raise ImportError(problem, name="paddle")
    parsed = _parse_version(version) if version is not None else None
    if parsed is not None and parsed[0][: len(PADDLE_BELOW)] >= PADDLE_BELOW:
        warnings.warn(f"ba_net is tested with PaddlePaddle {PADDLE_RANGE}; {version} may not work "
                      f"(pip install 'paddlepaddle{PADDLE_RANGE}' gets a tested one)", stacklevel=2)


# -------------------------------------------------------------------- process set-up

def configure_environment() -> dict:
    """Set thread count and the MKL CPU-type switch for this process (before Paddle loads).

    Under ``paddle.distributed.launch`` the cores are shared between the local ranks.
    Returns the settings that are in force, for logging.
    """
    local_ranks = int(os.environ.get("PADDLE_LOCAL_SIZE", os.environ.get("PADDLE_TRAINERS_NUM", "1")) or 1)
    threads = max(1, usable_cpus() // max(1, local_ranks))
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


# Lines Paddle's C++ code writes to stderr that say nothing a user can act on (each seen here):
# jit.save of a model with BatchNorm warns that PIR does not support "input out tensor" (the
# running statistics), and oneDNN's reduce-mean check prints its name while Paddle Inference
# builds a predictor. quiet_paddle() keeps these out of the terminal; every other line is shown.
HARMLESS_PADDLE_LINES = ("Paddle static graph(PIR) not support input out tensor", "ReduceMeanCheckIfOneDNNSupport")


@contextlib.contextmanager
def quiet_paddle():
    """Hold back what is written to stderr (file descriptor 2, where Paddle's C++ code writes)
    while the block runs, then write it out without the lines of :data:`HARMLESS_PADDLE_LINES`:
    nothing else is dropped, an exception from the block included."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(noise in line for noise in HARMLESS_PADDLE_LINES)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _start_environment() -> Optional[dict]:
    """The environment this process was started with (Linux's ``/proc/self/environ``, which later
    changes inside the process do not touch), or None where it cannot be read."""
    try:
        raw = open("/proc/self/environ", "rb").read()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in pairs}


def user_thread_setting() -> Optional[str]:
    """The thread count the user asked for, as ``NAME=value``, or None: ``FLAGS_paddle_num_threads``
    if set, else ``OMP_NUM_THREADS`` if the process was started with it. Once Paddle is imported
    the variable alone cannot tell: Paddle sets ``OMP_NUM_THREADS=1`` when it is unset, so the
    value the process started with decides. Where that cannot be read (no /proc), a 1 may be the
    user's and counts as theirs. (A value set inside the process before ``import paddle``, e.g. by
    a notebook cell, is not seen: Paddle's import has already replaced or kept it.)"""
    if os.environ.get("FLAGS_paddle_num_threads"):
        return f"FLAGS_paddle_num_threads={os.environ['FLAGS_paddle_num_threads']}"
    start = _start_environment()
    if start is None:
        value = os.environ.get("OMP_NUM_THREADS")
    else:
        value = start.get("OMP_NUM_THREADS")
    return None if value is None else f"OMP_NUM_THREADS={value}"


def _configure_loaded_paddle(threads: int, mkl_unset: bool) -> None:
    """Paddle was imported before ba_net: its environment is fixed. The thread count can still
    be applied (Paddle's ``core.set_num_threads``) when Paddle's import left its default of 1 and
    the user set no thread count of their own (:func:`user_thread_setting`: an explicit
    ``OMP_NUM_THREADS=1`` or ``FLAGS_paddle_num_threads`` stays as it is); the MKL switch cannot:
    MKL has read its environment."""
    explicit = user_thread_setting()
    try:
        from paddle.base import core

        if explicit is not None:
            logger.info("paddle was imported before ba_net: math threads left as set (%s)", explicit)
        elif os.environ.get("OMP_NUM_THREADS") == "1" and threads > 1:
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


def package_logger() -> logging.Logger:
    """The logger every ``ba_net`` module's logger is a child of (each module logs under its own
    ``__name__``); the tools' console handler and a run's train.log handler attach here."""
    return logging.getLogger(__name__.partition(".")[0])


def set_package_log_level(level: int = logging.INFO) -> None:
    """Give the ``ba_net`` logger a level of its own (unless one is set), so that its INFO records
    reach the run's train.log whatever the root logger says. Importing Paddle reconfigures the root
    logger (``paddle.distributed.utils.log_utils.get_logger`` adds a stderr handler and sets the
    root level, once per module that calls it): the level it leaves is INFO in 3.3 but WARNING in
    3.0 to 3.2, where train.log stayed empty because every INFO record was dropped at the logger."""
    package = package_logger()
    if package.level == logging.NOTSET:
        package.setLevel(level)


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
    root = package_logger()
    root.handlers[:] = [handler]
    root.setLevel(level if rank == 0 else logging.WARNING)
    root.propagate = False


# ---------------------------------------------------------------------- progress of long work
# (an epoch, a download, a prediction run): hms formats a duration, Progress says when the next
# line is due and what its rate and ETA are; the lines themselves are logged by the caller.

def hms(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds (rounded to the second)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """``total`` units of work from now: a line is :meth:`due` every ``every`` seconds and at the
    end (never when not ``enabled``, e.g. on ranks other than 0)."""

    def __init__(self, total: int, every: float, enabled: bool = True):
        self.total, self.every, self.enabled = total, every, enabled
        self.start = self.last = time.monotonic()

    def due(self, done: int) -> bool:
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every and done < self.total):
            return False
        self.last = now
        return True

    def elapsed(self) -> float:
        return max(time.monotonic() - self.start, 1e-9)

    def rate(self, amount: float) -> float:
        """``amount`` (images, bytes, ...) per second since the start."""
        return amount / self.elapsed()

    def eta(self, done: int) -> str:
        """The time left at the pace so far, as :func:`hms`."""
        return hms(self.elapsed() / max(done, 1) * (self.total - done))


