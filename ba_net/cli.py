"""The command-line contract every tool in tools/ follows: the same flag means the same thing in
every tool, and every outcome is one line and an exit code.

======  ===================================================================================
 exit   when
======  ===================================================================================
 0      done
 1      a check did not pass (:class:`~ba_net.errors.CheckFailed`: an export's parity, a
        measurement that could not be taken) or a run failed (a non-finite loss)
 2      bad input (any other :class:`~ba_net.errors.BaNetError`: a config, the data, a run
        folder, an output that cannot be written), with the fix in its line
 130    Ctrl-C (SIGINT)
 143    SIGTERM (``docker stop``, Slurm preemption, ``timeout``), handled as Ctrl-C is: the
        interrupt is raised in the main thread (:class:`Terminated`), so training records its run
        as interrupted and releases the lock, and ``--resume`` continues it
======  ===================================================================================

Shared flags (:func:`parser` and the ``add_*`` helpers): ``--version`` on every tool;
``--data-file FILE`` (a data set's python tarball), ``--out DIR`` (always a folder) and
``--force`` (replace what already exists) wherever a tool has them.
"""
from __future__ import annotations

import argparse
import logging
import platform
import signal
from typing import Callable

from ba_net.errors import BaNetError, CheckFailed
from ba_net.runtime import setup_logging

logger = logging.getLogger(__name__)

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt: every clean-up that
    runs on Ctrl-C runs on SIGTERM too (Paddle's own handler would print a C++ stack and exit)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def version() -> str:
    """``ba-net <version> (PaddlePaddle <version>, Python <version>)``."""
    import paddle

    from ba_net import __version__

    return f"ba-net {__version__} (PaddlePaddle {paddle.__version__}, Python {platform.python_version()})"


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser showing the tool's docstring, with ``--version``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=version())
    return p


def add_data_file(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--data-file", metavar="FILE", help=f"the data set's python tarball ({what})")


def add_out(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--out", metavar="DIR", help=f"folder to write into ({what})")


def add_force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what} if it already exists")


def run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace, interrupted: str = "") -> int:
    """Console logging, SIGTERM as :class:`Terminated`, then ``main(args)``; every error becomes
    one log line and its exit code (module notes). ``interrupted``: what the user can do after
    Ctrl-C or SIGTERM (e.g. rerun with --resume)."""
    setup_logging()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    after = f"; {interrupted}" if interrupted else ""
    try:
        return int(main(args) or 0)
    except CheckFailed as exc:
        logger.error("error: %s", exc)
        return EXIT_CHECK_FAILED
    except BaNetError as exc:
        logger.error("error: %s", exc)
        return EXIT_BAD_INPUT
    except Terminated:
        logger.error("terminated (SIGTERM)%s", after)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        logger.error("interrupted%s", after)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["EXIT_BAD_INPUT", "EXIT_CHECK_FAILED", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated", "add_data_file",
           "add_force", "add_out", "parser", "run", "version"]
