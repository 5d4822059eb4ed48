import os
from pathlib import Path

import numpy as np
import pytest

import ba_net  # noqa: F401  (configures threads before paddle loads)
import paddle

REPO = Path(__file__).resolve().parents[1]
SUBSET = Path(os.environ.get(
    "BA_NET_TEST_CIFAR10", REPO.parent / "shared" / "data" / "cifar10-subset" / "cifar-10-python.tar.gz"
))


@pytest.fixture(scope="session")
def cifar_subset() -> Path:
    """The real CIFAR-10 subset shipped beside the repository (4,660 train / 846 test)."""
    if not SUBSET.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CIFAR-10 subset missing at {SUBSET}; CI needs ../shared beside the clone")
        pytest.skip(f"CIFAR-10 subset not found at {SUBSET}; set BA_NET_TEST_CIFAR10")
    return SUBSET


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(1234)
    np.random.seed(1234)
    yield
