import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import ba_net  # noqa: F401  (configures threads before paddle loads)
import paddle

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("BA_NET_TEST_CIFAR10", REPO / "data" / "cifar-10-sample.tar.gz"))


@pytest.fixture(scope="session")
def cifar_subset() -> Path:
    """The real CIFAR-10 sample embedded in the repository (2,000 train / 500 test images, see
    data/README.md), or the tarball named by $BA_NET_TEST_CIFAR10."""
    assert SAMPLE.is_file(), f"CIFAR-10 sample missing at {SAMPLE}; it is tracked in git (data/)"
    return SAMPLE


@pytest.fixture(scope="session")
def small_cifar(tmp_path_factory, cifar_subset) -> Path:
    """A smaller copy of the sample (its first 200 training and 64 test images, real images) for
    runs whose test only needs a few steps and a short evaluation."""
    from helpers import small_cifar10

    return small_cifar10(cifar_subset, tmp_path_factory.mktemp("small_cifar") / "cifar-10-python.tar.gz",
                         n_train=200, n_test=64)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """``module_tmp(name)``: a temporary folder for a module's shared fixtures, removed when the
    module's tests are done (tmp_path_factory's folders would stay until the session ends: trained
    AlexNet runs take 173 MB each)."""
    made = []

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(1234)
    np.random.seed(1234)
    yield
