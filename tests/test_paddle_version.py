"""The Paddle versions ba_net admits (setup.cfg's `cpu` extra: paddlepaddle>=3.0,<4), tested without
installing an old Paddle: the version gate on version strings, and the tools, ``import ba_net`` and
a notebook that imported Paddle first against a fake too-old ``paddle`` module put first on
PYTHONPATH. Also: the run log does not depend on the root logger's level, which Paddle's import
sets (INFO in 3.3, WARNING in 3.0 to 3.2, where train.log stayed empty)."""
import configparser
import logging
import os
import warnings

import pytest

from ba_net.train import engine
from ba_net.runs import folder as runs
from ba_net.config import load_config
from ba_net.runtime import PADDLE_RANGE, check_paddle_version, paddle_version_problem
from helpers import REPO, run_tool, tiny_config

TOOLS = {
    "train": ["tools/train.py", "-c", "experiments/quick.yaml"],
    "compare": ["tools/compare.py", "output/quick"],
    "benchmark": ["tools/benchmark.py", "--quick"],
}


@pytest.mark.parametrize("version", ["2.6.2", "2.6.0", "2.5.2", "1.8.5", "3.0.0rc1", "3.0.0b2", "3.0.0.dev20241201"])
def test_too_old_paddle_is_refused_with_the_versions_and_the_fix(version):
    with pytest.raises(ImportError) as info:
        check_paddle_version(version)
    message = str(info.value)
    assert info.value.name == "paddle"  # what the tools test to print it as one line
    assert "\n" not in message
    assert f"PaddlePaddle {version} is installed" in message
    assert PADDLE_RANGE in message and "pip install" in message and "AI Studio" in message
    assert paddle_version_problem(version) == message


@pytest.mark.parametrize("version", ["3.0.0", "3.0.1", "3.1.0", "3.1.1", "3.2.2", "3.3.1", "3.3.1.post1",
                                     "0.0.0", "0.0.0.dev0", "", "unknown", None])
def test_supported_and_development_versions_pass(version):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_paddle_version(version)
    assert paddle_version_problem(version) is None


def test_an_untested_major_version_is_warned_about_not_refused():
    with pytest.warns(UserWarning, match=r"tested with PaddlePaddle >=3.0,<4; 4.0.0 may not work"):
        check_paddle_version("4.0.0")


def test_the_gate_and_setup_cfg_admit_the_same_range():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requirements = [r.strip() for r in cfg["options.extras_require"]["cpu"].splitlines() if r.strip()]
    assert f"paddlepaddle{PADDLE_RANGE}" in requirements


# ------------------------------------------------------------------ a fake too-old paddle module

@pytest.fixture
def old_paddle(tmp_path):
    """A directory holding a ``paddle`` package that says it is 2.6.2. Its ``paddle.base`` (what
    ba_net reaches into when Paddle was imported first) announces itself on stderr, so a test sees
    anything touching Paddle's internals before the version check."""
    pkg = tmp_path / "fake" / "paddle"
    (pkg / "base").mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "2.6.2"\n')
    (pkg / "base" / "__init__.py").write_text('import sys\nprint("PADDLE INTERNALS TOUCHED", file=sys.stderr)\n')
    path = os.pathsep.join([str(tmp_path / "fake")] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return {"PYTHONPATH": path}


def _assert_one_error_line(proc, prefix="error: "):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "PADDLE INTERNALS TOUCHED" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    line = lines[0]
    assert line.startswith(prefix), line
    assert "2.6.2" in line and PADDLE_RANGE in line and "pip install" in line and "AI Studio" in line
    return line


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_refuses_an_old_paddle_in_one_line(tool, old_paddle):
    proc = run_tool(TOOLS[tool], env_extra=old_paddle, timeout=120)
    _assert_one_error_line(proc)


def test_import_ba_net_raises_import_error_before_touching_paddle(old_paddle):
    code = ("import sys\n"
            "try:\n"
            "    import ba_net\n"
            "except ImportError as exc:\n"
            "    print(type(exc).__name__, exc.name, exc, file=sys.stderr)\n"
            "    sys.exit(2)\n")
    proc = run_tool(["-c", code], env_extra=old_paddle, timeout=120)
    _assert_one_error_line(proc, prefix="ImportError paddle ba_net needs PaddlePaddle")


def test_paddle_imported_first_is_checked_before_ba_net_reaches_into_it(old_paddle):
    """A notebook that ran ``import paddle`` first: configure_environment() would set Paddle's
    thread count through ``paddle.base.core``; the check has to come before that."""
    code = ("import sys\n"
            "import paddle\n"
            "try:\n"
            "    import ba_net\n"
            "except ImportError as exc:\n"
            "    print('error:', exc, file=sys.stderr)\n"
            "    sys.exit(2)\n")
    proc = run_tool(["-c", code], env_extra=old_paddle, timeout=120)
    _assert_one_error_line(proc)


# ---------------------------------------------------------------------------------- run log

@pytest.fixture
def root_at_warning():
    """The root logger at WARNING, as importing Paddle 3.0 to 3.2 leaves it (3.3 leaves INFO)."""
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(saved)


def test_train_log_gets_info_lines_whatever_level_paddle_left_on_the_root_logger(tmp_path, small_cifar,
                                                                                 root_at_warning):
    assert logging.getLogger("ba_net").getEffectiveLevel() <= logging.INFO
    cfg = load_config(None, base=tiny_config(tmp_path, small_cifar, train={"epochs": 1, "max_steps_per_epoch": 1}))
    engine.run_experiment(cfg)
    log = (runs.run_folder(cfg, "resnet20", 0).root / "train.log").read_text()
    assert "epoch 1/1" in log, log


# ------------------------------------------------------------------ OpenCV missing

_NO_CV2 = ("import importlib.util as u\n"
           "real = u.find_spec\n"
           "u.find_spec = lambda name, *a: None if name == 'cv2' else real(name, *a)  # as if no OpenCV were installed\n")


def test_missing_opencv_is_one_line_naming_what_to_install():
    code = _NO_CV2 + ("import sys\n"
                      "try:\n"
                      "    import ba_net\n"
                      "except ImportError as exc:\n"
                      "    print(exc.name, exc, file=sys.stderr)\n"
                      "    sys.exit(2)\n")
    proc = run_tool(["-c", code], timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("cv2 ba_net needs OpenCV") and "pip install opencv-python-headless" in proc.stderr
    code = _NO_CV2 + ("import runpy, sys\n"
                      "sys.argv = ['tools/train.py', '-c', 'experiments/quick.yaml']\n"
                      "runpy.run_path('tools/train.py', run_name='__main__')\n")
    proc = run_tool(["-c", code], timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "needs OpenCV" in proc.stderr
