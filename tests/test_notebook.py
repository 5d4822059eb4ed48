"""The AI Studio / Jupyter notebook on a fresh kernel, as a user gets it: Paddle and an OpenCV
installed, ba-net not.

A throw-away venv gets this environment's installs of Paddle, numpy, scipy, matplotlib, VisualDL, the
notebook runner, pip and setuptools (with everything they require, as pip installed them here), the non-headless
`opencv-python` that AI Studio ships, but neither ba-net nor PyYAML. The notebook then runs top to bottom (tiny settings, `notebooks/` as the working
directory) in a kernel of that venv: its install cell has to pip-install the missing PyYAML, make
`ba_net` importable in the running kernel and leave the OpenCV alone.
"""
import configparser
import errno
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import distribution, packages_distributions, version
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

from helpers import REPO  # noqa: E402

NOTEBOOK = REPO / "notebooks" / "ba_vs_alexnet.ipynb"
KERNEL = "ba-net-fresh-kernel"
# What the venv gets from this environment (with what they require); not ba-net, PyYAML or an OpenCV.
# pip and setuptools are what `python -m venv` puts in (Paddle imports setuptools without requiring it).
SHARED = ["paddlepaddle", "numpy", "scipy", "matplotlib", "visualdl", "nbclient", "nbformat", "ipykernel", "pip",
          "setuptools"]
DRIVER = """
import sys, nbclient, nbformat
notebook, executed, kernel, cwd = sys.argv[1:]
nb = nbformat.read(notebook, as_version=4)
try:
    nbclient.NotebookClient(nb, timeout=900, kernel_name=kernel, resources={"metadata": {"path": cwd}}).execute()
finally:
    nbformat.write(nb, executed)
"""


def _run(args, env, cwd=None, check=True):
    proc = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)
    if check and proc.returncode:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _closure(names):
    """This environment's distributions ``names`` need: theirs and their requirements', recursively
    (with the extras asked for), as pip installed them."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found, todo = {}, [Requirement(name) for name in names]
    while todo:
        req = todo.pop()
        dist = distribution(req.name)
        done = found.setdefault(canonicalize_name(dist.metadata["Name"]), (dist, set()))[1]
        extras = ({""} | set(req.extras)) - done
        done |= extras
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if any(dep.marker is None or dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return [dist for dist, _ in found.values()]


def _install_from_here(dists, venv):
    """Install ``dists`` into ``venv`` as pip installed them here, file by file (each file of their
    RECORD, metadata included, so the venv's pip sees them installed): hard links, which cost neither
    disk nor an unpacking of the wheels (copies where the temporary folder is on another file
    system). pip unlinks a file before it writes or removes it, so what runs in the venv cannot
    change this environment's files. Scripts in bin/ are copied with the venv's python in their #!
    line."""
    prefix = os.path.normpath(sys.prefix) + os.sep
    made = set()
    for dist in dists:
        assert dist.files is not None, f"{dist.metadata['Name']}: no RECORD"
        site = str(dist.locate_file(""))
        for entry in dist.files:
            source = os.path.normpath(os.path.join(site, entry))
            assert source.startswith(prefix), f"{dist.metadata['Name']}: {source} is outside {prefix}"
            rel = source[len(prefix):]
            target = os.path.join(venv, rel)
            folder = os.path.dirname(target)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            if rel.startswith("bin" + os.sep) and os.path.isfile(source):
                lines = Path(source).read_bytes().split(b"\n", 1)
                if lines[0].startswith(b"#!") and prefix.encode() in lines[0]:
                    lines[0] = b"#!" + str(venv / "bin" / "python").encode()
                Path(target).write_bytes(b"\n".join(lines))
                shutil.copymode(source, target)
                continue
            try:
                os.link(source, target)
            except FileNotFoundError:  # RECORD may list a .pyc that was never written
                continue
            except FileExistsError:  # listed twice
                assert filecmp.cmp(source, target, shallow=False), target
            except OSError as exc:  # another file system (a tmpfs /tmp) or no hard links there: a copy
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copy2(source, target)


def _distributions(python, env):
    listing = json.loads(_run([python, "-m", "pip", "list", "--format", "json"], env).stdout)
    return {d["name"].lower(): d["version"] for d in listing}


def _outputs_text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        for key in ("text/markdown", "text/plain"):
            if key in out.get("data", {}):
                parts.append(out["data"][key])
    return "".join(parts)


@pytest.mark.slow
def test_notebook_runs_on_a_fresh_kernel_without_ba_net(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", IPYTHONDIR=str(tmp_path / "ipython"), PYTHONNOUSERSITE="1")
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env)  # pip: this environment's, below
    _install_from_here(_closure(SHARED), venv)
    opencv = packages_distributions()["cv2"][0]
    # AI Studio's OpenCV, from the registry (or pip's cache); where it cannot load, this environment's
    installed = _run([python, "-m", "pip", "install", "-q", "--no-compile", f"opencv-python=={version(opencv)}"], env,
                     check=False)
    if installed.returncode or _run([python, "-c", "import cv2"], env, check=False).returncode:
        _run([python, "-m", "pip", "uninstall", "-q", "-y", "opencv-python"], env, check=False)
        _install_from_here([distribution(opencv)], venv)  # its numpy is there
    _run([python, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL], env)

    # The user's situation, checked: no ba_net (nor PyYAML) in that venv, one OpenCV.
    for module in ("ba_net", "yaml"):
        probe = _run([python, "-c", f"import {module}"], env, cwd=NOTEBOOK.parent, check=False)
        assert probe.returncode and f"No module named '{module}'" in probe.stderr, probe.stderr
    before = _distributions(python, env)
    opencv_before = sorted(name for name in before if name.startswith("opencv"))
    assert len(opencv_before) == 1, opencv_before

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    tiny = {
        "EXPERIMENT": "nbtest",
        "OUTPUT_DIR": str(tmp_path / "out"),
        "MODELS": ["alexnet", "ba_alexnet_notebook"],
        "SEEDS": [0],
        "EPOCHS": 1,
        "MAX_STEPS_PER_EPOCH": 2,
        "BATCH_SIZE": 8,
        "THROUGHPUT": dict(batch_size=4, warmup=0, repeats=1, max_batches=1),
    }
    # The install cell's list of dependencies is setup.cfg's (the bounds included).
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    install = [c for c in nb.cells if "REQUIREMENTS = " in c.source]
    assert len(install) == 1
    for requirement in (setup["options"]["install_requires"] + setup["options.extras_require"]["opencv"]).split():
        assert f'"{requirement}"' in install[0].source, requirement
    for name in tiny:  # a renamed setting must not be overridden in vain
        assert re.search(rf"^{name} = ", params[0].source, re.M), name
    # The notebook's own settings (DATA_FILE: the embedded sample), then the tiny ones.
    params[0].source += "\n" + "\n".join(f"{name} = {value!r}" for name, value in tiny.items())
    nbformat.write(nb, tmp_path / "in.ipynb")
    executed = tmp_path / "executed.ipynb"
    run = _run([python, "-c", DRIVER, tmp_path / "in.ipynb", executed, KERNEL, NOTEBOOK.parent], env, cwd=tmp_path,
               check=False)
    nb = nbformat.read(executed, as_version=4) if executed.exists() else None
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"] if nb else []
    assert run.returncode == 0 and nb is not None and not errors, re.sub(r"\x1b\[[0-9;]*m", "", (
        "\n".join(f"{e['ename']}: {e['evalue']}\n" + "\n".join(e["traceback"][-3:]) for e in errors)
        or run.stderr[-5000:]))

    text = "\n".join(_outputs_text(c) for c in nb.cells if c.cell_type == "code")
    assert "max |notebook BA-AlexNet - AlexNet| = 0.0" in text
    corrected = float(text.split("max |corrected BA-AlexNet - AlexNet| =")[1].split()[0])
    assert corrected > 0
    assert "7,524,042" in text and "7,529,258" in text
    tables = [o["data"]["text/markdown"] for c in nb.cells for o in c.get("outputs", [])
              if "text/markdown" in o.get("data", {})]
    assert len(tables) == 1
    rows = [line.split("|")[1].strip() for line in tables[0].splitlines() if line.startswith("| ")]
    assert "alexnet" in rows and "ba_alexnet_notebook" in rows
    summary = json.loads((tmp_path / "out" / "nbtest" / "comparison.json").read_text())
    assert {r["model"] for r in summary["rows"]} == {"alexnet", "ba_alexnet_notebook"}
    saved = (tmp_path / "out" / "nbtest" / "alexnet" / "seed0" / "config.yaml").read_text()
    assert str(REPO / "data" / "cifar-10-sample.tar.gz") in saved  # the default data: the embedded sample
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3

    # The install cell installed what was missing and nothing in place of what was there.
    after = _distributions(python, env)
    assert sorted(name for name in after if name.startswith("opencv")) == opencv_before
    assert "pyyaml" in after and "pyyaml" not in before
    assert {name: after.get(name) for name in before} == before  # nothing upgraded or removed
    shutil.rmtree(venv)  # kept when the test fails
