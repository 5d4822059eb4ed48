"""Paddle imported before ba_net (a notebook's first cell): ba_net raises Paddle's thread count
from the 1 Paddle's import sets to the usable cores, but never over a thread count the user set
(``OMP_NUM_THREADS`` in the environment the process started with, or ``FLAGS_paddle_num_threads``).
Real interpreters: ``import paddle`` then ``import ba_net``, with Paddle's ``set_num_threads``
recorded."""
import json
import os
import subprocess
import sys

import pytest

from ba_net import runtime
from helpers import REPO

# import paddle first, record what ba_net asks of Paddle's thread count, print it
PADDLE_FIRST = ("import json, paddle\n"
                "from paddle.base import core\n"
                "calls = []\n"
                "core.set_num_threads = calls.append\n"
                "import ba_net\n"
                "print(json.dumps(calls))\n")


def _paddle_first(**env_vars) -> list:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FLAGS_paddle_num_threads")}
    env.update(env_vars)
    proc = subprocess.run([sys.executable, "-c", PADDLE_FIRST], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


needs_cores = pytest.mark.skipif(runtime.usable_cpus() < 2, reason="one usable core: nothing to raise")


@needs_cores
def test_paddle_first_without_a_user_setting_gets_every_core():
    assert _paddle_first() == [runtime.usable_cpus()]


@needs_cores
@pytest.mark.parametrize("setting", [{"OMP_NUM_THREADS": "1"}, {"FLAGS_paddle_num_threads": "1"}])
def test_paddle_first_keeps_the_thread_count_the_user_set(setting):
    assert _paddle_first(**setting) == []  # was raised to every core for OMP_NUM_THREADS=1


def test_the_user_setting_is_the_start_environment_not_paddles_default(monkeypatch):
    monkeypatch.delenv("FLAGS_paddle_num_threads", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Paddle's import leaves when it was unset
    monkeypatch.setattr(runtime, "_start_environment", lambda: {"PATH": "/bin"})
    assert runtime.user_thread_setting() is None
    monkeypatch.setattr(runtime, "_start_environment", lambda: {"OMP_NUM_THREADS": "1"})
    assert runtime.user_thread_setting() == "OMP_NUM_THREADS=1"
    monkeypatch.setattr(runtime, "_start_environment", lambda: None)  # no /proc: a 1 may be the user's
    assert runtime.user_thread_setting() == "OMP_NUM_THREADS=1"
    monkeypatch.setenv("FLAGS_paddle_num_threads", "3")
    assert runtime.user_thread_setting() == "FLAGS_paddle_num_threads=3"
