"""The data path against Paddle's own reader and transforms."""
import hashlib
import multiprocessing

import numpy as np
import paddle
import paddle.vision.transforms as T
import paddle.vision.transforms.functional as TF
import pytest

from ba_net import data as D
from ba_net.data import loading as L
from ba_net.data.presets import _resized_crop_box, _saturation_as_paddle_cv2
from helpers import REPO


@pytest.fixture(scope="module")
def train_split(cifar_subset):
    return D.read_cifar10(cifar_subset, "train")


def test_embedded_sample_is_the_one_its_readme_describes():
    """data/README.md states the sample's size, per-class counts and sha256: the file must match."""
    readme = (REPO / "data" / "README.md").read_text()
    blob = (REPO / "data" / "cifar-10-sample.tar.gz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() in readme
    assert f"size: {len(blob):,} bytes" in readme and len(blob) <= 8_000_000
    for split, per_class in (("train", 200), ("test", 50)):
        _, labels = D.read_cifar10(REPO / "data" / "cifar-10-sample.tar.gz", split)
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10


def test_reader_matches_paddle_cifar10(cifar_subset, train_split):
    images, labels = train_split
    n = len(labels)
    assert n >= 1000 and images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
    ref = paddle.vision.datasets.Cifar10(data_file=str(cifar_subset), mode="test", backend="cv2")
    test_images, test_labels = D.read_cifar10(cifar_subset, "test")
    assert len(ref) == len(test_images) >= 100
    for i in (0, 17, len(ref) - 1):
        img, lab = ref[i]
        np.testing.assert_array_equal(np.asarray(img), test_images[i])
        assert int(lab) == test_labels[i]


def test_eval_transform_equals_paddle_pipeline(train_split):
    img = train_split[0][11]
    ref = T.Compose([T.Resize((128, 128)), T.ToTensor(), T.Normalize(list(D.MEAN), list(D.STD))])
    np.testing.assert_allclose(D.eval_transform(img), ref(img).numpy(), atol=1e-5)


def test_saturation_is_paddles_cv2_arithmetic(train_split):
    img = train_split[0][3]
    np.random.seed(5)
    ref = TF.adjust_saturation(img, 1.2)  # draws its hidden factor from NumPy's global generator
    legacy = np.random.RandomState(5)

    class SameStream:
        def uniform(self, low, high):
            return legacy.uniform(low, high)

    np.testing.assert_array_equal(_saturation_as_paddle_cv2(img, 1.2, SameStream()), ref)


def test_notebook_transform_is_seeded_and_varied(train_split):
    img = train_split[0][7]
    a = D.notebook_transform(img, np.random.default_rng([0, 1, 7]))
    b = D.notebook_transform(img, np.random.default_rng([0, 1, 7]))
    c = D.notebook_transform(img, np.random.default_rng([0, 2, 7]))
    assert a.shape == (3, 128, 128) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05


def test_crop_box_stays_inside_and_covers_scale_range():
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(2000):
        top, left, h, w = _resized_crop_box(rng, 130, 130, (0.4, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 130 and 0 <= left and left + w <= 130
        areas.append(h * w / 130 ** 2)
    assert 0.38 < min(areas) < 0.45 and max(areas) > 0.95


def test_loader_batches_are_independent_of_worker_count(train_split):
    images, labels = train_split[0][:64], train_split[1][:64]

    def batches(workers):
        loader = L.build_loader(images, labels, D.notebook_transform, 16, seed=4, num_workers=workers)
        loader.batch_sampler.set_epoch(2)
        out = [(x.numpy(), y.numpy()) for x, y in loader]
        loader.close()
        return out

    before = multiprocessing.active_children()
    a, b = batches(0), batches(2)
    assert multiprocessing.active_children() == before  # close() ended the persistent workers
    assert len(a) == 4
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_mixup_mixes_images_and_targets_alike():
    rng = np.random.default_rng(3)
    x = paddle.to_tensor(np.arange(4 * 2, dtype="float32").reshape(4, 2))
    y = paddle.to_tensor(np.array([0, 1, 2, 3]))
    xm, soft, dominant = L.mixup(x, y, 0.4, np.random.default_rng(3), 10)
    lam = rng.beta(0.4, 0.4)
    perm = rng.permutation(4)
    np.testing.assert_allclose(xm.numpy(), lam * x.numpy() + (1 - lam) * x.numpy()[perm], rtol=1e-6)
    expected = lam * np.eye(10)[[0, 1, 2, 3]] + (1 - lam) * np.eye(10)[perm]
    np.testing.assert_allclose(soft.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(soft.numpy().sum(1), 1.0, rtol=1e-6)
    assert dominant.numpy().tolist() == ([0, 1, 2, 3] if lam >= 0.5 else perm.tolist())


# ------------------------------------------------------------------------ the cifar preset

def test_cifar_constants_are_cifar10s_own(train_split):
    """CIFAR_MEAN / CIFAR_STD are the per-channel mean and std of pixel / 255 over CIFAR-10's
    training images (every pixel pooled): the embedded 2,000-image sample lands within 0.003 of
    them, while the ImageNet constants and the often-quoted per-image std (0.2023, 0.1994,
    0.2010) do not."""
    pixels = train_split[0].astype(np.float64) / 255.0
    mean, std = pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2))
    np.testing.assert_allclose(mean, D.CIFAR_MEAN, atol=3e-3)
    np.testing.assert_allclose(std, D.CIFAR_STD, atol=3e-3)
    assert np.abs(std - np.array([0.2023, 0.1994, 0.2010])).max() > 0.03
    assert np.abs(mean - D.MEAN).max() > 0.03 and np.abs(std - D.STD).max() > 0.01


def test_cifar_eval_transform_equals_paddle_pipeline_without_resize(train_split):
    img = train_split[0][11]
    ref = T.Compose([T.ToTensor(), T.Normalize(D.CIFAR_MEAN.tolist(), D.CIFAR_STD.tolist())])
    got = D.preset("cifar").eval(img)
    assert got.shape == (3, 32, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref(img).numpy(), atol=1e-5)


def test_cifar_train_transform_is_zero_padded_random_crop_and_flip(train_split):
    """Against Paddle's own functions: Pad(4) with zeros, a 32 x 32 crop at the drawn offset, a
    flip when drawn, ToTensor and Normalize with CIFAR-10's statistics; offsets 0..8 on both axes
    and flips half the time; the padding is black (0 before normalization)."""
    img = train_split[0][5]
    normalize = T.Compose([T.ToTensor(), T.Normalize(D.CIFAR_MEAN.tolist(), D.CIFAR_STD.tolist())])
    offsets, flips = set(), []
    for seed in range(300):
        got = D.cifar_transform(img, np.random.default_rng(seed))
        replay = np.random.default_rng(seed)
        top, left = (int(v) for v in replay.integers(0, 9, size=2))
        flip = replay.random() < 0.5
        ref = TF.crop(TF.pad(img, 4, fill=0, padding_mode="constant"), top, left, 32, 32)
        ref = TF.hflip(ref) if flip else ref
        assert got.shape == (3, 32, 32) and got.dtype == np.float32
        np.testing.assert_allclose(got, normalize(np.ascontiguousarray(ref)).numpy(), atol=1e-5)
        offsets.add((top, left))
        flips.append(flip)
    assert {t for t, _ in offsets} == set(range(9)) and {l for _, l in offsets} == set(range(9))
    assert 0.4 < np.mean(flips) < 0.6
    # offset (0, 0), no flip: the top rows and left columns are the zero padding
    rng = next(np.random.default_rng(s) for s in range(10_000)
               if (lambda r: list(r.integers(0, 9, size=2)) == [0, 0] and r.random() >= 0.5)(np.random.default_rng(s)))
    out = D.cifar_transform(img, rng)
    black = ((0.0 - D.CIFAR_MEAN) / D.CIFAR_STD).astype(np.float32)
    np.testing.assert_allclose(out[:, :4, :], np.broadcast_to(black[:, None, None], (3, 4, 32)), atol=1e-6)
    np.testing.assert_allclose(out[:, 4:, 4:], D.cifar_eval_transform(img)[:, :28, :28], atol=1e-6)


def test_presets_own_their_transforms_size_and_normalization(train_split):
    """preset(name) is the one description of a preset; the notebook's two keep their transforms."""
    img = train_split[0][2]
    assert list(D.PRESETS) == ["notebook", "plain", "cifar", "imagenet", "imagenet240", "imagenet260", "imagenet300"]
    nb, plain, cifar = D.preset("notebook"), D.preset("plain"), D.preset("cifar")
    assert (nb.train, nb.eval, nb.image_size) == (D.notebook_transform, D.eval_transform, 128)
    assert (plain.train, plain.eval, plain.image_size) == (D.plain_transform, D.eval_transform, 128)
    assert (cifar.train, cifar.eval, cifar.image_size) == (D.cifar_transform, D.cifar_eval_transform, 32)
    assert nb.mean == plain.mean == tuple(D.MEAN.tolist()) and cifar.std == tuple(D.CIFAR_STD.tolist())
    for p in (nb, plain, cifar):
        size = (3, p.image_size, p.image_size)
        assert p.train(img, np.random.default_rng(0)).shape == size and p.eval(img).shape == size
    assert D.presets_of_size(128) == ["notebook", "plain"] and D.presets_of_size(32) == ["cifar"]
    from ba_net.config import SCHEMA
    from ba_net.errors import ConfigError

    assert SCHEMA["data"]["transforms"].choices() == list(D.PRESETS)
    with pytest.raises(ConfigError, match="unknown preset 'fancy'; choose from notebook, plain, cifar"):
        D.preset("fancy")


@pytest.mark.parametrize("model,transforms,fits", [
    ("alexnet", "notebook", True), ("alexnet_multihead", "plain", True), ("resnet20", "cifar", True),
    ("ba_resnet20", "cifar", True), ("alexnet", "cifar", False), ("alexnet_multihead", "cifar", False),
    ("resnet20", "plain", False), ("resnet18", "cifar", False)])
def test_models_must_fit_the_preset(model, transforms, fits):
    from ba_net.config import load_config
    from ba_net.errors import ConfigError

    cfg = load_config(None, (f"models=[{model}]", f"data.transforms={transforms}"))
    if fits:
        D.check_models_fit(cfg)
        return
    with pytest.raises(ConfigError, match=rf"models: {model} is built for \d+ px images, but data.transforms: "
                                          rf"{transforms} gives \d+ px"):
        D.check_models_fit(cfg)


def _opencv_threads(img, rng):
    import cv2

    return np.full((1,), cv2.getNumThreads(), dtype=np.float32)


def test_loader_workers_use_one_opencv_thread_and_fall_back_from_a_small_shm(monkeypatch, caplog):
    import cv2

    cv2.setNumThreads(4)
    big = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
    cv2.GaussianBlur(big, (7, 7), 0)  # the parent's pool is alive when the workers fork (a deadlock once)
    loader = L.build_loader(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64), _opencv_threads, 2,
                            train=False, num_workers=1, image_size=32)
    seen = {int(v) for x, _ in loader for v in x.numpy().ravel()}
    loader.close()
    assert seen == {1}  # each worker: one OpenCV thread
    # a /dev/shm with 64 MB free (Docker's default) cannot hold 4 workers' 128 x 3 x 128 x 128 batches
    monkeypatch.setattr(L.shutil, "disk_usage", lambda p: type("U", (), {"free": 64 << 20})())
    assert not L.shared_memory_fits(4, 128 * 3 * 128 * 128 * 4)
    assert L.shared_memory_fits(1, 32 * 3 * 32 * 32 * 4)
    loader = L.build_loader(np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int64), lambda im, rng: im, 128,
                            train=False, num_workers=4, image_size=128)
    assert loader.use_shared_memory is False
    assert "/dev/shm has too little free space for 4 loader workers" in caplog.text
