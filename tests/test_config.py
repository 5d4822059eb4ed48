"""Config loading: defaults, YAML sections, dotted overrides, strict rejection."""
import re
from pathlib import Path

import pytest

from ba_net.config import SCHEMA, ConfigError, defaults, load_config, parse_override

REPO = Path(__file__).resolve().parents[1]


def test_overrides_parse_as_yaml_into_the_right_section(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("models: [alexnet]\ntrain:\n  epochs: 7\noptimizer:\n  lr: 1e-4\n")
    cfg = load_config(path, ("train.epochs=3", "seeds=[1, 2]", "train.max_steps_per_epoch=null",
                             "data.mixup_alpha=0.2", "optimizer.lr=3e-4"))
    assert cfg["experiment"] == "exp"  # the file's stem
    assert cfg["train"]["epochs"] == 3 and cfg["seeds"] == [1, 2]
    assert cfg["train"]["max_steps_per_epoch"] is None
    assert cfg["data"]["mixup_alpha"] == 0.2
    assert cfg["optimizer"]["lr"] == pytest.approx(3e-4)  # PyYAML reads 3e-4 as a string; coerced
    assert cfg["train"]["batch_size"] == defaults()["train"]["batch_size"]
    assert parse_override("a.b.c=[1, x]") == {"a": {"b": {"c": [1, "x"]}}}


def _schema_keys(schema=SCHEMA, prefix=""):
    for key, value in schema.items():
        if isinstance(value, dict):
            yield from _schema_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def _lookup(cfg, key):
    for part in key.split("."):
        assert part in cfg, f"{key} is missing"
        cfg = cfg[part]
    return cfg


def test_required_keys_exist(tmp_path):
    """Every key ba_net reads as cfg["section"]["key"] is declared in the schema, and a config
    file that sets only some keys of a section still has all the others, at their defaults."""
    path = tmp_path / "partial.yaml"
    path.write_text("models: [alexnet]\ntrain:\n  epochs: 3\ndata:\n  num_workers: 0\n")
    cfg, d = load_config(path), defaults()
    given = {"experiment": "partial", "models": ["alexnet"], "train.epochs": 3, "data.num_workers": 0}
    for key in _schema_keys():
        assert _lookup(cfg, key) == given.get(key, _lookup(d, key)), key
    for key in ("models", "seeds", "output_dir", "data.data_file", "data.num_workers", "train.epochs",
                "train.batch_size", "train.max_steps_per_epoch"):  # what the engine reads first
        assert key in set(_schema_keys()), key
    read = set()
    for source in (REPO / "ba_net").rglob("*.py"):
        read |= {f"{a}.{b}" if b else a for a, b in re.findall(r'cfg\["(\w+)"\](?:\["(\w+)"\])?', source.read_text())}
    assert {"train.epochs", "optimizer.lr"} <= read  # the scan finds what it should
    assert read <= set(_schema_keys()) | set(SCHEMA), sorted(read - set(_schema_keys()) - set(SCHEMA))


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", r"unknown key 'train.epoch'; valid keys here: .*epochs"),
    ("trian.epochs=3", r"unknown key 'trian'; valid keys here: .*train"),
    ("train.epochs=three", r"train.epochs: expected an integer, got 'three'"),
    ("train.epochs=2.5", r"train.epochs: expected an integer"),
    ("train.epochs=0", r"train.epochs: must be >= 1"),
    ("train.batch_size=0", r"train.batch_size: must be >= 1"),
    ("train.amp=yes please", r"train.amp: expected true or false"),
    ("loss.label_smoothing=1.0", r"loss.label_smoothing: must be < 1.0"),
    ("loss.label_smoothing=-0.1", r"loss.label_smoothing: must be >= 0.0"),
    ("models=[alexnet, resnet]", r"models: unknown value 'resnet'; choose from alexnet, .*ba_alexnet"),
    ("models=alexnet", r"models: expected a non-empty list of names"),
    ("seeds=[0, 0]", r"seeds: expected a list without repeats"),
    ("seeds=[a]", r"seeds: expected a list of integers"),
    ("device=tpu", r"device: unknown value 'tpu'; choose from auto, cpu, gpu"),
    ("data.transforms=fancy", r"choose from notebook, plain"),
    ("train=5", r"train: expected a mapping of keys"),
    ("train.epochs", r"is not key=value"),
    ("output_dir=null", r"output_dir: must not be null"),
])
def test_bad_values_name_the_key_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, (override,))


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(scalar)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epochs: 3\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'train.lr'"):
        load_config(unknown)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.yaml")))
def test_shipped_experiments_load(name):
    cfg = load_config(REPO / "experiments" / name)
    assert cfg["experiment"] == Path(name).stem


def test_notebook_config_is_the_notebook_recipe():
    cfg = load_config(REPO / "experiments" / "cifar10_notebook.yaml")
    assert cfg["models"] == ["alexnet", "ba_alexnet_notebook"] and cfg["seeds"] == [42]
    assert cfg["train"]["epochs"] == 100 and cfg["train"]["batch_size"] == 128
    assert cfg["train"]["max_steps_per_epoch"] is None
    assert cfg["optimizer"] == {**cfg["optimizer"], "name": "adam", "lr": 1e-4, "weight_decay": 1e-5}
    assert cfg["schedule"] == {"name": "cosine", "warmup_epochs": 0.0, "eta_min": 0.0}
    assert cfg["loss"]["label_smoothing"] == 0.1
    assert cfg["data"]["transforms"] == "notebook" and cfg["data"]["mixup_alpha"] == 0.0
    ablation = load_config(REPO / "experiments" / "cifar10_ablation.yaml")
    assert ablation["models"] == ["alexnet", "ba_alexnet", "ba_alexnet_notebook"] and ablation["seeds"] == [0, 1, 2]
    for section in ("train", "optimizer", "schedule", "loss", "data"):
        assert ablation[section] == cfg[section]


def test_relative_data_file_is_anchored_at_the_config_file_or_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "elsewhere").mkdir()
    cfg_file = tmp_path / "exp" / "c.yaml"
    cfg_file.write_text("data:\n  data_file: ../data/sample.tar.gz\n")
    for cwd in (tmp_path, tmp_path / "elsewhere"):  # the same file whatever the working directory
        monkeypatch.chdir(cwd)
        assert load_config(cfg_file)["data"]["data_file"] == str(tmp_path / "data" / "sample.tar.gz")
        assert load_config(cfg_file.relative_to(tmp_path) if cwd == tmp_path else cfg_file)["data"]["data_file"] \
            == str(tmp_path / "data" / "sample.tar.gz")
    # given on the command line, a relative path means what the shell means: from the working directory
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config(cfg_file, ("data.data_file=x.tar.gz",))["data"]["data_file"] == \
        str(tmp_path / "elsewhere" / "x.tar.gz")
    assert load_config(cfg_file, ("data.data_file=/abs/x.tar.gz",))["data"]["data_file"] == "/abs/x.tar.gz"
    assert load_config(cfg_file, ("data.data_file=null",))["data"]["data_file"] is None


def test_shipped_quick_configs_use_the_embedded_sample(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("quick", "quick_attention_ablation", "quick_resnet", "resnet20_study"):
        path = Path(load_config(REPO / "experiments" / f"{name}.yaml")["data"]["data_file"])
        assert path == REPO / "data" / "cifar-10-sample.tar.gz" and path.is_file()


def test_a_key_added_later_at_its_default_is_no_config_difference():
    """A run folder written before a key existed (its config.yaml lacks optimizer.nesterov) is the
    same run as the current config with the key at its default, and a different one otherwise."""
    from ba_net.runs.folder import config_differences

    current = load_config(None)
    saved = load_config(None)
    del saved["optimizer"]["nesterov"]
    assert config_differences(saved, current) == []
    changed = load_config(None, ("optimizer.nesterov=true", "optimizer.lr=0.1"))
    assert config_differences(saved, changed) == ["optimizer.lr: 0.0001 -> 0.1", "optimizer.nesterov: False -> True"]
    del saved["optimizer"]
    assert config_differences(saved, current) == []  # a whole section missing: its defaults


def test_where_the_data_lives_is_no_config_difference():
    """A run resumes after its tarball or image folder moved (data.data_file / data.data_dir) or
    its loader changed; a different data set or preset is a different run."""
    from ba_net.runs.folder import config_differences

    saved = load_config(None, ("data.dataset=imagefolder", "data.data_dir=/old/root", "data.transforms=imagenet"))
    moved = load_config(None, ("data.dataset=imagefolder", "data.data_dir=/new/root", "data.transforms=imagenet",
                               "data.num_workers=8", "data.data_file=/x.tar.gz"))
    assert config_differences(saved, moved) == []
    other = load_config(None, ("data.dataset=imagefolder", "data.data_dir=/new/root", "data.transforms=cifar"))
    assert config_differences(saved, other) == ["data.transforms: 'imagenet' -> 'cifar'"]


def test_resnet_configs_are_the_cifar_recipe():
    """cifar10_resnet_ablation.yaml: ResNet-20 and -56, plain / BA / SE / ECA / CBAM, seeds 0-2, the
    cifar preset on the full data, SGD 0.1 with momentum 0.9 and weight decay 5e-4, batch 128,
    5 warmup epochs then cosine over 200, plain cross entropy; quick_resnet.yaml: the same recipe
    for the ResNet-20 variants on the embedded sample, shorter. Every model fits the preset."""
    from ba_net.data import check_models_fit

    full = load_config(REPO / "experiments" / "cifar10_resnet_ablation.yaml")
    variants = ["", "ba_", "_se", "_eca", "_cbam"]
    names = [f"ba_resnet{d}" if v == "ba_" else f"resnet{d}{v}" for d in (20, 56) for v in variants]
    assert full["models"] == names and full["seeds"] == [0, 1, 2]
    assert full["data"]["data_file"] is None and full["data"]["transforms"] == "cifar"
    assert full["data"]["mixup_alpha"] == 0.0 and full["model_kwargs"] == {}
    assert full["train"]["epochs"] == 200 and full["train"]["batch_size"] == 128
    assert full["optimizer"] == {"name": "momentum", "lr": 0.1, "momentum": 0.9, "nesterov": False,
                                 "weight_decay": 5e-4}
    assert full["schedule"] == {"name": "cosine", "warmup_epochs": 5.0, "eta_min": 0.0}
    assert full["loss"]["label_smoothing"] == 0.0
    quick = load_config(REPO / "experiments" / "quick_resnet.yaml")
    assert quick["models"] == names[:5] and quick["seeds"] == [0, 1]
    for section in ("optimizer", "loss"):
        assert quick[section] == full[section]
    assert quick["data"]["transforms"] == "cifar" and quick["schedule"]["name"] == "cosine"
    assert 0 < quick["schedule"]["warmup_epochs"] < quick["train"]["epochs"] <= 10
    assert full["data"]["val_split"] == 5000 and quick["data"]["val_split"] == 200  # pick epochs off test
    study = load_config(REPO / "experiments" / "resnet20_study.yaml")
    assert study["models"] == ["resnet20", "ba_resnet20", "resnet20_se"] and study["seeds"] == [0, 1, 2, 3, 4]
    assert study["data"]["val_split"] == 200 and study["data"]["transforms"] == "cifar"
    for section in ("optimizer", "loss"):
        assert study[section] == full[section]
    for cfg in (full, quick, study):
        check_models_fit(cfg)
