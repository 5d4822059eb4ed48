"""Shared helpers for the tests: tiny configs and run-folder readers."""
import atexit
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path, data_file, **sections):
    """A config dict for a run of a few iterations on the CIFAR-10 subset: ResNet-20 at 32 px
    (1 MB checkpoints; tests about AlexNet name it, with ``data={"transforms": "notebook"}``)."""
    cfg = {
        "experiment": "tiny",
        "models": ["resnet20"],
        "seeds": [0],
        "output_dir": str(tmp_path / "out"),
        "data": {"data_file": str(data_file), "num_workers": 0, "transforms": "cifar"},
        "train": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 3, "log_every": 2},
        "optimizer": {"lr": 2e-4},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def read_history(folder):
    return json.loads((Path(folder) / "history.json").read_text())


def strip_times(history):
    h = json.loads(json.dumps(history))
    for e in h["epochs"]:
        e.pop("time_s")
    return h


def tool_env(extra=None) -> dict:
    """This process's environment without $BA_NET_CIFAR10 (a tool must not find the full data set
    through it), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "BA_NET_CIFAR10"}
    env.update(extra or {})
    return env


def run_tool(args, env_extra=None, timeout=600, cwd=REPO, **popen):
    """Run a tools/ script in a fresh interpreter; returns CompletedProcess (text). ``popen``
    goes to subprocess.run (e.g. preexec_fn)."""
    return subprocess.run([sys.executable] + args, cwd=cwd, env=tool_env(env_extra), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **popen)


# Variables read when Paddle or ba_net is imported (Paddle's DATA_HOME comes from HOME, thread and
# flag settings from OMP_* / MKL_* / FLAGS_* / GLOG_*, ba_net's thread share from PADDLE_LOCAL_SIZE /
# PADDLE_TRAINERS_NUM): a call that sets one needs a fresh interpreter. BA_NET_CIFAR10 / _CIFAR100 are
# read when the data is looked for, so a forked child sees them.
IMPORT_TIME_ENV = ("HOME", "OMP_", "MKL_", "FLAGS_", "GLOG_", "PYTHON", "CUDA_", "PADDLE_")
_SERVER = {}
_SERVER_LOCK = threading.Lock()


def _stop_server():
    proc = _SERVER.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.stdin.close()  # the server ends when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


atexit.register(_stop_server)  # a no-op when no server was started


def forked_tool(args, env_extra=None, timeout=600, cwd=REPO, fsize=None):
    """``run_tool`` for tests that call a tool many times about its answer, not about start-up: the
    script runs in a child forked from tests/tool_server.py, which has imported ba_net and Paddle
    once (~1.5 s of a fresh interpreter go to importing Paddle and tearing it down). ``args[0]`` is
    the script; ``fsize`` caps the size of files the child may write (RLIMIT_FSIZE). A call whose
    ``env_extra`` sets a variable read at import time (IMPORT_TIME_ENV) runs in a fresh interpreter
    (``run_tool``). Returns a CompletedProcess (text)."""
    import json
    import signal
    import tempfile

    if any(k.startswith(IMPORT_TIME_ENV) for k in env_extra or {}):
        import resource

        limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
        return run_tool(list(args), env_extra=env_extra, timeout=timeout, cwd=cwd, preexec_fn=limit)
    env = tool_env(env_extra)
    with _SERVER_LOCK, tempfile.TemporaryDirectory(prefix="ba_net_tool_") as tmp:
        if "proc" not in _SERVER or _SERVER["proc"].poll() is not None:
            _SERVER["proc"] = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "tool_server.py")], cwd=REPO, text=True, bufsize=1,
                env=tool_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        server = _SERVER["proc"]
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        request = {"argv": [str(REPO / args[0]), *map(str, args[1:])], "cwd": str(cwd), "env": env,
                   "stdout": str(out), "stderr": str(err), "fsize": fsize}
        timed_out = []

        def kill(pid):
            timed_out.append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        try:
            server.stdin.write(json.dumps(request) + "\n")
            pid = json.loads(server.stdout.readline())["pid"]
            timer = threading.Timer(timeout, kill, (pid,))
            timer.start()
            try:
                code = json.loads(server.stdout.readline())["returncode"]
            finally:
                timer.cancel()
        except BaseException:  # an interrupted or broken exchange: the next call starts a new server
            server.kill()
            _SERVER.pop("proc", None)
            raise
        if timed_out:
            raise subprocess.TimeoutExpired(args, timeout)
        return subprocess.CompletedProcess(args, code, out.read_text(errors="replace"), err.read_text(errors="replace"))


def write_cifar10_tarball(path, members):
    """A tar.gz laid out like cifar-10-python.tar.gz: ``members`` maps a member name (e.g.
    'cifar-10-batches-py/data_batch_1') to (images [N, 32, 32, 3] uint8, labels) or to raw bytes."""
    import io
    import pickle
    import tarfile

    import numpy as np

    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            if not isinstance(content, bytes):
                images, labels = content
                batch = {b"data": np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)).reshape(len(images), -1),
                         b"labels": [int(v) for v in labels]}
                content = pickle.dumps(batch, protocol=2)  # the protocol of the original files
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return Path(path)


def small_cifar10(source, path, n_train=200, n_test=64):
    """A smaller copy of the CIFAR-10 tarball ``source``: its first ``n_train`` training images
    (spread over the five training members) and first ``n_test`` test images."""
    from ba_net import data as D

    images, labels = D.read_cifar10(source, "train")
    test_images, test_labels = D.read_cifar10(source, "test")
    per = n_train // 5
    members = {f"cifar-10-batches-py/data_batch_{i + 1}": (images[i * per:(i + 1) * per], labels[i * per:(i + 1) * per])
               for i in range(5)}
    members["cifar-10-batches-py/test_batch"] = (test_images[:n_test], test_labels[:n_test])
    return write_cifar10_tarball(path, members)


def tree_snapshot(root):
    """{relative path: (size, mtime_ns, sha256)} of every file under ``root``, and '<dir>/' for each folder."""
    import hashlib

    root = Path(root)
    snap = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir() and not path.is_symlink():
            snap[rel + "/"] = None
        elif path.is_file():
            st = path.stat()
            snap[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return snap


def tool_main(name, argv):
    """Run ``tools/<name>.py``'s main(argv) in this process (for failures a subprocess cannot
    simulate); the ``ba_net`` logger's set-up is restored afterwards. Returns the exit code."""
    import importlib.util
    import logging

    spec = importlib.util.spec_from_file_location(f"_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logger = logging.getLogger("ba_net")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        return module.main(list(argv))
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


_HELD_SOCKETS = []


def unreachable_url():
    """A URL on 127.0.0.1 whose port is bound but not listening (kept so for the test session):
    a connection to it is refused at once, so download tests behave the same with or without a
    network (and never fetch the real 170 MB)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD_SOCKETS.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}/cifar-10-python.tar.gz"


def write_cifar100_tarball(path, train, test, names=None, meta=True):
    """A tar.gz laid out like cifar-100-python.tar.gz: members cifar-100-python/train and /test
    (pickled dicts, protocol 2 as the originals, with b'data' [N, 3072] uint8, b'fine_labels' and
    b'coarse_labels') from ``train`` and ``test`` = (images [N, 32, 32, 3] uint8, fine labels), and
    cifar-100-python/meta with b'fine_label_names' (``names``, default 'class_00'..'class_99',
    as bytes like the original) and b'coarse_label_names' (left out when ``meta`` is False)."""
    import io
    import pickle
    import tarfile

    import numpy as np

    names = names or [f"class_{i:02d}" for i in range(100)]
    members = {}
    for split, (images, labels) in (("train", train), ("test", test)):
        flat = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)).reshape(len(images), -1)
        members[split] = {b"filenames": [f"{split}_{i}.png".encode() for i in range(len(images))],
                          b"batch_label": f"{split} batch".encode(), b"data": flat,
                          b"fine_labels": [int(v) for v in labels],
                          b"coarse_labels": [int(v) // 5 for v in labels]}
    if meta:
        members["meta"] = {b"fine_label_names": [n.encode() for n in names],
                           b"coarse_label_names": [f"super_{i:02d}".encode() for i in range(20)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            raw = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return Path(path)
