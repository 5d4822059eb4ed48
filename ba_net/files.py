"""Crash-safe files: every write goes to a temporary file in the same folder, is flushed and
fsynced, then renamed over the target, so a kill at any instant leaves the old or the new
version, never a torn one.

``.pdparams`` / ``.pdopt`` files are pickles: load them only from sources you trust.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import paddle

from ba_net.errors import OutputError, RunStateError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


TEMP_SUFFIX = ".tmp"


def _first_non_folder(path):
    """The file that stands where ``path`` needs a folder (``path`` itself or an ancestor)."""
    for p in (Path(path), *Path(path).parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def write_error(path, exc: OSError, **fix) -> OutputError:
    """The one-line error for a failed write of ``path`` (``fix=`` replaces the default advice)."""
    reason = exc.strerror or exc.__class__.__name__
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        blocker = _first_non_folder(exc.filename or path)
        reason = f"{blocker or 'a part of the path'} is a file, not a folder"
    elif exc.filename and str(exc.filename) != str(path) and not is_temp_file(exc.filename):
        reason += f": {exc.filename}"
    return OutputError(path, reason, **fix)


@contextlib.contextmanager
def atomic_file(path: str | Path):
    """A binary file to write ``path`` through: a hidden temporary file beside it
    (``.<name>.*.tmp``, the usual permissions), flushed, fsynced and renamed over ``path`` when
    the block ends. If the block (or the write) raises, the temporary file is removed and ``path``
    keeps its previous content; the exception passes on as it is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`. An OSError (disk full, not
    writable) becomes an :class:`OutputError`; ``path`` keeps its previous content."""
    try:
        with atomic_file(path) as f:
            f.write(data)
    except OSError as exc:
        raise write_error(path, exc) from None


def is_temp_file(path: str | Path) -> bool:
    """True for the temporary files of :func:`atomic_write_bytes` (a kill can leave one behind;
    it is never read, only removed)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def remove_temp_files(folder: str | Path) -> list:
    """Delete the temporary files that killed writes left under ``folder``; returns their paths."""
    removed = []
    for path in sorted(Path(folder).rglob(f".*{TEMP_SUFFIX}")):
        if path.is_file() and is_temp_file(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def save_paddle(path: str | Path, state: dict) -> None:
    """``paddle.save`` of ``state`` to ``path``, atomically."""
    buf = io.BytesIO()
    paddle.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_paddle(path: str | Path, what: str = "checkpoint") -> dict:
    """``paddle.load`` with a one-line error for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise RunStateError(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as f:
            state = paddle.load(io.BytesIO(f.read()))
    except Exception as exc:
        raise RunStateError(
            f"{what} {path} cannot be loaded ({exc.__class__.__name__}): truncated or not a Paddle checkpoint"
        ) from None
    if not isinstance(state, dict):
        raise RunStateError(f"{what} {path} does not hold a state dict")
    return state


def read_json(path: str | Path, what: str = "file") -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RunStateError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunStateError(f"{what} {path} is unreadable or not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise RunStateError(f"{what} {path} does not hold a JSON object")
    return data
