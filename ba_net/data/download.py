"""Downloading a file over HTTP(S) safely: :func:`download_file` streams it into a hidden
temporary file beside the target with a progress line (percent, MB/s, ETA), checks its md5, and
only then renames it into place; every failure is one line and leaves nothing behind.
:func:`ba_net.data.locate_cifar10` uses it when the data set is nowhere on the machine."""
from __future__ import annotations

import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from ba_net.files import atomic_file, write_error
from ba_net.errors import DataError
from ba_net.runtime import hms

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30.0  # seconds to connect, and to wait for each read: an offline machine fails fast
PROGRESS_SECONDS = 20.0  # a progress line every 10 %, or after this long without one
_CHUNK = 1 << 16


def _reason(exc: BaseException) -> str:
    """A short, single-line reason for a network or file error."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or exc.__class__.__name__)
    return " ".join(str(text).split())


def _log_progress(name: str, done: int, total: Optional[int], elapsed: float) -> None:
    rate = done / max(elapsed, 1e-6)
    if total:
        logger.info("%s: %3d%% (%.1f of %.1f MB), %.1f MB/s, ETA %s", name, 100 * done // total,
                    done / 1e6, total / 1e6, rate / 1e6, hms((total - done) / max(rate, 1.0)))
    else:
        logger.info("%s: %.1f MB, %.1f MB/s (size unknown)", name, done / 1e6, rate / 1e6)


def _stream(url: str, out, name: str, timeout: float) -> str:
    """Copy ``url`` into the open file ``out``, logging progress; returns the md5 of the bytes.
    Network failures become a one-line DataError; a failed write raises its OSError."""
    request = urllib.request.Request(url, headers={"User-Agent": "ba-net (python urllib)"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DataError(f"cannot download {url} ({_reason(exc)}): check the URL, or retry later") from None
    except (OSError, http.client.HTTPException) as exc:  # offline, DNS failure, refused, timed out
        raise DataError(f"cannot reach {url} ({_reason(exc)}): check the network or proxy and run again") from None
    md5, done = hashlib.md5(), 0
    with response:
        length = (response.headers.get("Content-Length") or "").strip()
        total = int(length) if length.isdigit() and int(length) > 0 else None
        size = f" of {total / 1e6:.1f} MB" if total else " MB"
        start = last_time = time.monotonic()
        last_tenth = 0
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:  # reset, timed out, bad chunked encoding
                raise DataError(f"the download of {url} broke off after {done / 1e6:.1f}{size} ({_reason(exc)}); "
                                f"nothing was kept, run again to retry") from None
            if not chunk:
                break
            out.write(chunk)
            md5.update(chunk)
            done += len(chunk)
            now, tenth = time.monotonic(), 10 * done // total if total else 0
            if tenth > last_tenth or now - last_time >= PROGRESS_SECONDS:
                _log_progress(name, done, total, now - start)
                last_tenth, last_time = tenth, now
    if total is not None and done != total:  # http.client returns b"" when the server closes early
        raise DataError(f"the download of {url} broke off after {done / 1e6:.1f}{size} (connection closed "
                        f"early); nothing was kept, run again to retry")
    return md5.hexdigest()


def download_file(url: str, dest, md5: str, timeout: Optional[float] = None) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``. The bytes stream into a hidden temporary
    file beside ``dest`` (``.<name>.*.tmp``) with a progress line (percent, MB, MB/s, ETA) every
    10 %; only when their md5 equals ``md5`` is the file fsynced and renamed over ``dest``.
    Offline, a cut connection, a wrong checksum or an unwritable folder raise a one-line
    :class:`DataError`, with no temporary file left and ``dest`` untouched. ``timeout`` (default
    :data:`DOWNLOAD_TIMEOUT`) bounds the connection and every read."""
    dest = Path(dest)
    start = time.monotonic()
    try:
        with atomic_file(dest) as out:  # a hidden temporary file, renamed over dest only at the end
            digest = _stream(url, out, dest.name, timeout or DOWNLOAD_TIMEOUT)
            if digest != md5:
                raise DataError(f"the download of {url} has md5 {digest}, not the expected {md5} (corrupted in "
                                f"transit or changed on the server); nothing was kept, run again to retry")
    except OSError as exc:  # the folder: not creatable, not writable, disk full
        raise DataError(f"cannot write {dest} ({write_error(dest, exc).reason}); free disk space or make "
                        f"its folder writable") from None
    logger.info("%s: downloaded %.1f MB in %.0f s, md5 verified", dest, dest.stat().st_size / 1e6,
                time.monotonic() - start)
    return dest
