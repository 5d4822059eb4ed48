import os
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


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(1234)
    np.random.seed(1234)
    yield
