import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# pytest-xdist workers share the machine's cores: each takes its share of math threads (ba_net
# would give every process all of them, and N workers would then run N x cores threads); tools run
# by the tests inherit it. A value the user set is kept.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

import ba_net  # noqa: E402,F401  (configures threads before paddle loads)
import paddle  # noqa: E402

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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (a minute or so each) start first: pytest-xdist hands tests out in
    this order, so the long ones overlap the many short ones instead of ending the suite alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise as collected
