"""Hostile and broken input: every case is one CLI call in a child process (forked from one that has
imported Paddle, helpers.forked_tool) that must exit non-zero
with exactly one error line naming the problem and the fix, no traceback, and leave every file
already written (config, data, run folders) byte-for-byte and mtime-for-mtime as it was.

Also here: disk full in the middle of a run (in-process, the previous files stay intact), tar
members with unsafe paths and a pickle that would run a command (nothing written, nothing run).
"""
import errno
import io
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import paddle
import pytest
import yaml

from ba_net import build_model
from ba_net.train import engine
from ba_net.runs import folder as runs
from ba_net import data as D
from ba_net.data.datasets import _ArrayUnpickler
from ba_net.files import is_temp_file
from ba_net.config import load_config
from ba_net.errors import DataError
from helpers import forked_tool, read_history, small_cifar10, tiny_config, tool_main, tree_snapshot, unreachable_url, write_cifar10_tarball

RUN = Path("out") / "tiny" / "resnet20" / "seed0"


# ------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def small_data(module_tmp, cifar_subset):
    return small_cifar10(cifar_subset, module_tmp("data") / "cifar-10-python.tar.gz")


def _config(root, data, **train):
    """The cases' config: tiny_config on the dygraph path (the cases are about input and files,
    not about the fast path's tracing, which would cost each run that trains ~0.7 s)."""
    return tiny_config(root, data, train={"path": "dygraph", **train})


@pytest.fixture(scope="module")
def templates(module_tmp, small_data):
    """Run folders to copy into each case: a finished run, and one stopped after epoch 1 of 2."""
    root = module_tmp("templates")
    cfg = load_config(None, base=_config(root / "finished", small_data))
    engine.run_experiment(cfg)
    save = runs.save_resume_state

    def save_then_die(folder, epoch, *args):
        save(folder, epoch, *args)
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs, "save_resume_state", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            engine.run_experiment(load_config(None, base=_config(root / "stopped", small_data)))
    assert read_history(root / "finished" / RUN)["status"] == "finished"
    assert (root / "stopped" / RUN / "state.json").is_file()
    return root


@dataclass
class Ctx:
    """One case's world: ``root`` (snapshotted) holds cfg.yaml and out/; HOME lies outside it."""
    root: Path
    home: Path
    data: Path

    @property
    def cfg(self):
        return self.root / "cfg.yaml"

    @property
    def run(self):
        return self.root / RUN

    def write(self, name, content):
        path = self.root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def cut(self, rel, fraction=0.5):
        path = self.root / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])


@dataclass
class Case:
    id: str
    args: Callable  # Ctx -> (argv for tools/<tool>.py, env additions)
    expect: tuple  # substrings of the error line (or callables of the Ctx giving one): the problem and the fix
    tree: str = "finished"  # template copied to out/: finished | stopped | none
    tool: str = "train"
    may_create: str = None  # a folder under root where new files are allowed (the run that fails to write)
    fsize: int = None  # RLIMIT_FSIZE for the subprocess: writes beyond it fail (EFBIG)
    check: Callable = None  # Ctx -> None, extra checks after the call


def _train(*args, env=None):
    return lambda c: (["-c", str(c.cfg), *args], env or {})


def _with(setup, args):
    """Run ``setup(ctx)`` (corrupting a file, writing a bad config), then build the arguments."""
    def make(c):
        setup(c)
        return args(c)
    return make


def _unreadable_config(c):
    if os.geteuid() == 0:  # root reads through chmod 000: a folder in the config's place fails for root too
        (c.root / "locked.yaml").mkdir()
    else:
        c.write("locked.yaml", "models: [alexnet]\n").chmod(0)
    return ["-c", str(c.root / "locked.yaml")], {}


def _tar(c, name, members):
    return write_cifar10_tarball(c.root / name, members)


def _valid_members(c):
    train, test = D.read_cifar10(c.data, "train"), D.read_cifar10(c.data, "test")
    members = {f"cifar-10-batches-py/data_batch_{i}": (train[0][:20], train[1][:20]) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = (test[0][:20], test[1][:20])
    return members


class _RunsACommand:
    """A pickle that would create ``marker`` when unpickled by an unrestricted unpickler."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile_pickle(c):
    members = _valid_members(c)
    members["cifar-10-batches-py/data_batch_1"] = pickle.dumps(_RunsACommand(c.root.parent / "pwned"), protocol=2)
    return _tar(c, "hostile.tar.gz", members)


def _unsafe_names(c):
    members = _valid_members(c)
    members["../evil"] = b"outside"
    members["/abs/data_batch_1"] = members.pop("cifar-10-batches-py/data_batch_1")
    return _tar(c, "unsafe.tar.gz", members)


def _nothing_outside(c):
    assert not (c.root.parent / "evil").exists() and not Path("/abs").exists()
    assert not (c.root.parent / "pwned").exists()


def _other_arch(c):
    paddle.save(build_model("ba_resnet20", num_classes=10).state_dict(), str(c.run / "checkpoint" / "epoch0001.pdparams"))


def _state_outside(c):
    state = json.loads((c.run / "state.json").read_text())
    state["params"] = str(c.root.parent / "elsewhere.pdparams")
    (c.run / "state.json").write_text(json.dumps(state))


def _corrupt_fields(c):
    (c.run / "history.json").write_text(json.dumps({"status": "finished", "epochs": "oops"}))


def _disk_full_files_load(c):
    """The run that hit the size limit: its files all load, no temp file is left behind."""
    run = c.root / "out" / "other" / "resnet20" / "seed0"
    assert read_history(run)["status"] == "running"
    load_config(run / "config.yaml")
    assert not [p for p in run.rglob("*") if is_temp_file(p)]
    assert not (run / "best.pdparams").exists()


def _needs_no_gpu():
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("a GPU is available: device=gpu is valid here")


FORCE = "--force"  # the data cases rerun the finished run: the data must fail before it is touched

CASES = [
    # ---- the config file
    Case("config-missing", lambda c: (["-c", str(c.root / "missing.yaml")], {}),
         ("config file", "missing.yaml not found", "pass an existing file with -c")),
    Case("config-unreadable", _unreadable_config, ("locked.yaml cannot be read", "check its permissions")),
    Case("config-not-utf8", _with(lambda c: c.write("cfg.yaml", b"models: [\xff\xfe]\n"), _train()),
         ("cannot be read (UnicodeDecodeError)", "encoding")),
    Case("yaml-malformed", _with(lambda c: c.write("cfg.yaml", "train: {epochs: 3\nmodels: [alexnet\n"), _train()),
         ("is not valid YAML at line", "fix its syntax")),
    Case("yaml-not-a-mapping", _with(lambda c: c.write("cfg.yaml", "- alexnet\n- ba_alexnet\n"), _train()),
         ("must hold a mapping of sections, not a list",)),
    Case("yaml-python-tag", _with(lambda c: c.write(
        "cfg.yaml", f"experiment: !!python/object/apply:os.system ['touch {c.root.parent / 'pwned'}']\n"), _train()),
         ("YAML tag that safe loading refuses", "python/object/apply:os.system", "use plain values"),
         check=_nothing_outside),
    Case("unknown-key-in-file", _with(lambda c: c.write("cfg.yaml", c.cfg.read_text() + "trian: {epochs: 2}\n"),
                                      _train()),
         ("unknown key 'trian'", "valid keys here: data, device, experiment")),
    Case("unknown-key-override", _train("-o", "optimizer.learning_rate=0.1"),
         ("unknown key 'optimizer.learning_rate'", "valid keys here: ", "lr")),
    Case("wrong-type", _train("-o", "train.batch_size=eight"), ("train.batch_size: expected an integer, got 'eight'",)),
    Case("wrong-type-list", _train("-o", "models=alexnet"), ("models: expected a non-empty list",)),
    Case("override-not-key-value", _train("-o", "train.epochs"), ("is not key=value", "example: -o train.epochs=3")),
    Case("negative-epochs", _train("-o", "train.epochs=-1"), ("train.epochs: must be >= 1, got -1",)),
    Case("zero-batch-size", _train("-o", "train.batch_size=0"), ("train.batch_size: must be >= 1, got 0",)),
    Case("smoothing-one", _train("-o", "loss.label_smoothing=1.0"), ("loss.label_smoothing: must be < 1.0, got 1.0",)),
    Case("smoothing-negative", _train("-o", "loss.label_smoothing=-0.1"),
         ("loss.label_smoothing: must be >= 0.0, got -0.1",)),
    Case("infinite-lr", _train("-o", "optimizer.lr=.inf"), ("optimizer.lr: expected a finite number",)),
    Case("unknown-model", _train("-o", "models=[vgg16]"), ("models: unknown value 'vgg16'", "choose from", "alexnet")),
    Case("signal-model-in-image-config", _train("-o", "models=[alexnet,eca_cnn1d]"),
         ("models: unknown value 'eca_cnn1d'", "choose from", "ba_alexnet")),
    Case("series-model-in-image-config", _train("-o", "models=[sam_net]"), ("models: unknown value 'sam_net'",)),
    Case("experiment-escapes", _train("-o", "experiment=../../escape"), ("must be a plain folder name",)),
    Case("warmup-too-long", _train("-o", "schedule.warmup_epochs=2", FORCE),
         ("schedule.warmup_epochs: 2.0 must be smaller than train.epochs (2)",)),
    Case("model-does-not-fit-preset", _train("-o", "data.transforms=notebook", FORCE),
         ("models: resnet20 is built for 32 px images, but data.transforms: notebook gives 128 px",
          "use data.transforms: cifar for resnet20")),
    Case("batch-exceeds-data", _train("-o", "train.batch_size=100000", FORCE),
         ("train.batch_size: 100000", "exceeds the 200 training images", "use a smaller batch")),
    Case("no-gpu", lambda c: (_needs_no_gpu(), _train("-o", "device=gpu")(c))[1],
         ("no usable CUDA device", "use device: cpu or auto")),
    # ---- the data
    Case("data-missing", _train("-o", "data.data_file=/nonexistent/cifar-10-python.tar.gz", FORCE),
         ("data.data_file points to /nonexistent/cifar-10-python.tar.gz", "which is not a file", "fix the path")),
    Case("data-env-missing", _train("-o", "data.data_file=null", FORCE, env={"BA_NET_CIFAR10": "/nonexistent.tar.gz"}),
         ("BA_NET_CIFAR10 points to /nonexistent.tar.gz", "fix the path or unset it")),
    Case("data-truncated", lambda c: (shutil.copy(c.data, c.root / "cut.tar.gz"), c.cut("cut.tar.gz", 0.6),
                                      _train("-o", f"data.data_file={c.root / 'cut.tar.gz'}", FORCE)(c))[-1],
         ("is not a readable CIFAR-10 tarball", "truncated", "download again")),
    Case("data-not-a-tarball", lambda c: (c.write("noise.tar.gz", np.random.default_rng(0).bytes(5000)),
                                          _train("-o", f"data.data_file={c.root / 'noise.tar.gz'}", FORCE)(c))[-1],
         ("is not a readable CIFAR-10 tarball", "download again")),
    Case("data-without-members", lambda c: (_tar(c, "readme.tar.gz", {"README": b"hello"}),
                                            _train("-o", f"data.data_file={c.root / 'readme.tar.gz'}", FORCE)(c))[-1],
         ("lacks the CIFAR-10 members data_batch_1", "point data.data_file at cifar-10-python.tar.gz")),
    Case("data-unsafe-member-paths", lambda c: (_unsafe_names(c),
                                                _train("-o", f"data.data_file={c.root / 'unsafe.tar.gz'}", FORCE)(c))[-1],
         ("has a member with an unsafe path", "download it again"), check=_nothing_outside),
    Case("data-hostile-pickle", lambda c: (_hostile_pickle(c),
                                           _train("-o", f"data.data_file={c.root / 'hostile.tar.gz'}", FORCE)(c))[-1],
         ("member data_batch_1 is not a CIFAR-10 batch (UnpicklingError)", "download CIFAR-10 again"),
         check=_nothing_outside),
    Case("offline-without-data", lambda c: _train("-o", "data.data_file=null", "-o", f"data.download_url={unreachable_url()}",
                                                  FORCE, env={"HOME": str(c.home)})(c),
         ("CIFAR-10 not found", "cannot reach http://127.0.0.1:", "-o data.data_file=PATH", "export BA_NET_CIFAR10=PATH",
          "cifar-10-python.tar.gz at", lambda c: str(c.home))),  # Paddle's cache under the case's HOME
    # ---- the output folder
    Case("output-under-a-file", lambda c: (c.write("afile", "x"), _train("-o", f"output_dir={c.root / 'afile'}")(c))[-1],
         ("afile is a file, not a folder", "choose another output_dir")),
    Case("disk-full", _train("-o", "experiment=other"), ("cannot write", "best.pdparams", "File too large",
                                                         "free disk space", "choose another output_dir"),
         may_create="out/other", fsize=1 << 19, check=_disk_full_files_load),
    # ---- resuming
    Case("resume-nothing-to-resume", _train("--resume"),
         ("--resume: no run under", "has a saved state to continue", "drop --resume")),
    Case("resume-and-force", _train("--resume", "--force"), ("--resume and --force contradict each other", "pass one")),
    Case("stopped-run-without-resume", _train(), ("stopped after epoch 1 of 2", "rerun with --resume"), tree="stopped"),
    Case("checkpoint-truncated", _with(lambda c: c.cut(RUN / "checkpoint" / "epoch0001.pdparams"), _train("--resume")),
         ("resume weights", "epoch0001.pdparams cannot be loaded", "truncated or not a Paddle checkpoint",
          "rerun with --force"), tree="stopped"),
    Case("checkpoint-other-architecture", _with(_other_arch, _train("--resume")),
         ("epoch0001.pdparams does not fit model CifarResNet", "unexpected", "rerun with --force"), tree="stopped"),
    Case("checkpoint-not-a-checkpoint",
         _with(lambda c: c.write(RUN / "checkpoint" / "epoch0001.pdopt", "not a checkpoint\n"), _train("--resume")),
         ("resume optimizer state", "epoch0001.pdopt cannot be loaded", "rerun with --force"), tree="stopped"),
    Case("resume-state-torn", _with(lambda c: c.cut(RUN / "state.json"), _train("--resume")),
         ("resume state", "state.json is unreadable or not JSON", "rerun with --force"), tree="stopped"),
    Case("resume-state-points-outside", _with(_state_outside, _train("--resume")),
         ("resume state", "elsewhere.pdparams", "is not a file in", "rerun with --force"), tree="stopped"),
    Case("history-torn", _with(lambda c: c.cut(RUN / "history.json"), _train()),
         ("run history", "history.json is unreadable or not JSON", "--force")),
    Case("config-changed", _train("-o", "optimizer.lr=0.01"),
         ("was run with a different config (optimizer.lr: 0.0002 -> 0.01)", "--force to overwrite it")),
    # ---- compare
    Case("compare-empty-folder", _with(lambda c: (c.root / "empty").mkdir(),
                                       lambda c: ([str(c.root / "empty"), "--no-throughput"], {})),
         ("no runs in", "empty", "pass the <output_dir>/<experiment> folder"), tool="compare", tree="none"),
    Case("compare-throughput-image-size", lambda c: ([str(c.root / "out" / "tiny"), "--throughput-settings",
                                                      "image_size=64"], {}),
         ("'image_size' cannot be chosen", "its input size (model.input_size", "valid settings: batch_size"),
         tool="compare"),
    Case("compare-missing-folder", lambda c: ([str(c.root / "missing"), "--no-throughput"], {}),
         ("missing does not exist", "pass <output_dir>/<experiment>"), tool="compare", tree="none"),
    Case("compare-torn-history", _with(lambda c: c.cut(RUN / "history.json"),
                                       lambda c: ([str(c.root / "out" / "tiny"), "--no-throughput"], {})),
         ("history.json is unreadable or not JSON", "delete the run folder or rerun it with --force"), tool="compare"),
    Case("compare-corrupt-history", _with(_corrupt_fields,
                                          lambda c: ([str(c.root / "out" / "tiny"), "--no-throughput"], {})),
         ("history.json is corrupt: 'epochs' is not a list", "delete the run folder or rerun it with --force"),
         tool="compare"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path, templates, small_data):
    c = Ctx(root=tmp_path / "w", home=tmp_path / "home", data=small_data)
    c.root.mkdir()
    c.home.mkdir()
    if case.tree != "none":
        shutil.copytree(templates / case.tree / "out", c.root / "out")
    cfg = _config(c.root, small_data)  # output_dir: root/out; the templates' config
    c.cfg.write_text(yaml.safe_dump(cfg))
    args, env = case.args(c)
    before = tree_snapshot(c.root)

    r = forked_tool([f"tools/{case.tool}.py", *args], env_extra=env, timeout=300, fsize=case.fsize)

    output = r.stdout + r.stderr
    assert r.returncode == 2, f"exit {r.returncode}\n{output}"
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1, output
    print(f"\n[{case.id}] {errors[0]}")  # the list of cases and their messages, with pytest -s
    for text in case.expect:
        text = text(c) if callable(text) else text  # an expectation that depends on the case's folders
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    after = tree_snapshot(c.root)
    if case.may_create:
        after = {k: v for k, v in after.items() if not k.startswith(case.may_create)}
    changed = sorted(k for k in set(before) | set(after) if before.get(k, "?") != after.get(k, "?"))
    assert not changed, f"files changed, added or removed: {changed}"
    if case.check:
        case.check(c)


def _implies(a: Case, b: Case) -> bool:
    """An error line that meets ``a``'s expectations meets ``b``'s too (each of b's strings lies
    inside one of a's), so ``b`` could not tell a's failure from its own."""
    texts = [t for t in a.expect if isinstance(t, str)]  # a callable depends on the case's folders
    return all(any(tb in ta for ta in texts) for tb in b.expect if isinstance(tb, str))


def test_there_are_at_least_twenty_distinct_cases():
    """No two cases share an id, every case expects something, and at least twenty cases expect
    an error line that no other case's expectations imply: a copy of a case under a new id, or a
    case asking for a part of another's message, does not count."""
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.expect and all(c.expect) for c in CASES)
    distinct = [c.id for c in CASES if not any(_implies(o, c) for o in CASES if o is not c)]
    assert len(distinct) >= 20, f"only {len(distinct)} distinct cases: {distinct}"


# ------------------------------------------------------------------ disk full in mid-run

def test_disk_full_mid_run_is_one_line_and_keeps_the_previous_files(tmp_path, small_data, monkeypatch, capsys):
    cfg = _config(tmp_path, small_data, epochs=3, max_steps_per_epoch=1)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / RUN
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up while epoch 2's checkpoint is written
        if ".epoch0002.pdparams." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert tool_main("train", ["-c", str(config)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for text in ("cannot write", "epoch0002.pdparams", "No space left on device", "free disk space", "--resume"):
        assert text in errors[0], errors[0]
    # epoch 1 is intact: its state, checkpoint, best weights and history all load
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1
    for rel in (state["params"], state["opt"], "best.pdparams", "best.pdopt"):
        assert paddle.load(str(run / rel)), rel
    h = read_history(run)
    assert h["status"] == "running" and [e["epoch"] for e in h["epochs"]] == [1]
    assert not [p for p in run.rglob("*") if is_temp_file(p)]
    assert not (run / "checkpoint" / "epoch0002.pdparams").exists()
    # space freed: --resume finishes the run
    monkeypatch.undo()
    assert tool_main("train", ["-c", str(config), "--resume"]) == 0
    assert read_history(run)["status"] == "finished"


# -------------------------------------------------------------------------- security

def test_tar_members_are_read_in_memory_and_unsafe_paths_refused(tmp_path, small_data, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a relative '../evil' would land in tmp_path
    c = Ctx(root=work, home=tmp_path, data=small_data)
    before = tree_snapshot(tmp_path)
    with pytest.raises(DataError, match=r"unsafe path '(\.\./evil|/abs/data_batch_1)'"):
        D.read_cifar10(_unsafe_names(c), "train")
    after = tree_snapshot(tmp_path)
    assert set(after) - set(before) == {"work/unsafe.tar.gz"}  # the test's own tarball, nothing else
    assert not Path("/abs").exists()
    # the same layout with safe names reads fine, without writing anything either
    images, labels = D.read_cifar10(_tar(c, "safe.tar.gz", _valid_members(c)), "train")
    assert images.shape == (100, 32, 32, 3) and len(labels) == 100
    assert set(tree_snapshot(tmp_path)) - set(after) == {"work/safe.tar.gz"}


def test_restricted_unpickler_refuses_a_pickle_that_runs_a_command(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsACommand(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="forbidden object (posix|os).system"):
        _ArrayUnpickler(io.BytesIO(payload), encoding="bytes").load()
    assert not marker.exists()


def test_yaml_python_tag_is_refused_in_configs_and_overrides(tmp_path):
    from ba_net.config import ConfigError

    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"experiment: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="YAML tag that safe loading refuses"):
        load_config(bad)
    with pytest.raises(ConfigError, match="value is not valid YAML"):
        load_config(None, (f"experiment=!!python/object/apply:os.system ['touch {marker}']",))
    assert not marker.exists()
