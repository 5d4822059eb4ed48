"""One writer per run folder: an exclusive lock file beside it.

``<output_dir>/<experiment>/<model>/.seed<seed>.lock`` is created with ``O_CREAT | O_EXCL`` (atomic
on local file systems) and holds the host, the pid and the process start time of its owner. A
second ``tools/train.py`` on the same experiment sees the lock and skips that run. A lock whose
owner is gone (same host, no such process, or the pid now belongs to a younger process) is taken
over with one log line; a lock held on another host is never taken over (we cannot tell whether
its owner lives): delete the file by hand if that host is down.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)


def lock_path(run_root: Path) -> Path:
    return run_root.parent / f".{run_root.name}.lock"


def _start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    """Whether the owner recorded in a lock may still run (True when it cannot be told)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    started = owner.get("start_ticks")
    return started is None or _start_ticks(pid) in (None, started)


def describe(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}"


def read_owner(path: Path) -> Optional[dict]:
    """The owner recorded in a lock file; {} for a torn or unreadable one; None when there is none."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def holder(run_root: Path) -> Optional[dict]:
    """The live owner of the run's lock, or None when it is free (or held by a dead process)."""
    owner = read_owner(lock_path(run_root))
    return owner if owner is not None and owner and _alive(owner) else None


class RunLock:
    """``with RunLock(root) as lock: if lock.acquired: ...``; ``lock.owner`` names the holder otherwise."""

    def __init__(self, run_root: Path):
        self.path = lock_path(run_root)
        self.acquired = False
        self.owner: Optional[dict] = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": _start_ticks(os.getpid())}
        for _ in range(3):  # a stale lock is moved aside, then the create is tried again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_owner(self.path)
                if owner is None:
                    continue  # released meanwhile
                if owner and _alive(owner):
                    self.owner = owner
                    return self
                aside = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                except FileNotFoundError:
                    continue
                moved = read_owner(aside)
                if moved != owner:  # another taker was faster and this was its fresh lock: put it back
                    try:
                        os.link(aside, self.path)
                    except FileExistsError:
                        pass
                    aside.unlink(missing_ok=True)
                    self.owner = moved or {}
                    return self
                aside.unlink(missing_ok=True)
                logger.warning("%s: took over the lock of %s, which no longer runs", self.path.parent,
                               describe(owner) if owner else "an unreadable lock file")
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.acquired = True
            return self
        self.owner = read_owner(self.path) or {}
        return self

    def __exit__(self, *exc) -> None:
        if self.acquired:
            self.path.unlink(missing_ok=True)
            self.acquired = False
