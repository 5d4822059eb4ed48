"""A process that imports ba_net, Paddle and the tools' commands once, then forks one child per
``tools/*.py`` call (:func:`helpers.forked_tool`): the child runs the script as ``__main__`` with
the call's argv, environment, working folder and stdout / stderr files, joins its threads, runs
the atexit handlers (logging's shutdown among them) and flushes its output (C stdio included) as
a fresh interpreter would, then ends without tearing the interpreter's modules down. What a
child does not redo is importing Paddle and that teardown (~1.5 s of a fresh interpreter, ~0.5 s
of it the teardown), so tests that run a tool many times to check its answer to bad input use it.
Variables read while Paddle is imported (HOME for its data folder, thread and flag settings)
cannot change in a child: helpers.forked_tool sends calls that set them to a fresh interpreter,
and tests about start-up (thread set-up, an old Paddle, the first lines a tool prints) use one
(``helpers.run_tool``).

Protocol, one JSON object per line: a request on stdin ({argv, cwd, env, stdout, stderr, fsize}),
then two replies on stdout: {"pid": child} when forked and {"returncode": code} when it ended;
the server ends when its stdin closes.
"""
import atexit
import ctypes
import gc
import json
import os
import resource
import runpy
import sys
import threading
import traceback

# The replies go to a copy of fd 1; fd 1 itself points at /dev/null until a child takes it over,
# so nothing printed while Paddle loads can end up in the protocol.
_REPLIES = os.fdopen(os.dup(1), "w", buffering=1)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.close(_null)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's ba_net

import ba_net  # noqa: E402,F401  (thread set-up, before Paddle loads)
import paddle  # noqa: E402,F401
from ba_net import cli  # noqa: E402,F401
from ba_net.deploy import command as deploy_command  # noqa: E402,F401
from ba_net.report import command as report_command  # noqa: E402,F401
from ba_net.train import command as train_command  # noqa: E402,F401


def _reply(obj) -> None:
    _REPLIES.write(json.dumps(obj) + "\n")
    _REPLIES.flush()


def _child(request: dict) -> int:
    """In the forked child: become the requested process and run the script; its exit code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if request.get("fsize"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
    _REPLIES.close()  # the child never replies
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    script = os.path.abspath(request["argv"][0])
    sys.argv = [script, *request["argv"][1:]]
    sys.path[0] = os.path.dirname(script)
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: B036 - as an interpreter reports an uncaught exception
        traceback.print_exc()
        return 1
    return 0


def serve() -> int:
    """Answer requests until stdin closes; returns in a child with the child's exit code."""
    gc.freeze()  # the imported modules stay out of the children's collections (no copy-on-write)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return _child(request)
        _reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        _reply({"returncode": os.waitstatus_to_exitcode(status)})
    return 0


if __name__ == "__main__":
    code = serve()
    threading._shutdown()  # as at interpreter exit: non-daemon threads joined, their exit hooks run
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # what C code (Paddle's) buffered in its stdio
    os._exit(code)
