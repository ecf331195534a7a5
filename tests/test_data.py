"""Datasets: a pure data order, host slicing, epoch coverage, file round trips, clear errors, exact toy densities."""

import math
import re

import jax
import numpy as np
import pytest
import scipy.stats
from PIL import Image
from sklearn.datasets import load_digits as sklearn_digits

from diffjax.data import DATASETS, TOYS, load_dataset
from diffjax.data._base import epoch_indices
from diffjax.data._images import resize_images


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _ids_npz(tmp_path, n):
    """An npz of (n, 1) vectors whose value is the example index: batches then show the indices."""
    path = tmp_path / "ids.npz"
    np.savez(path, x=np.arange(n, dtype=np.float32)[:, None])
    return load_dataset("npz", path=path)


# ---- the data order ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, knobs", [("digits", {}), ("toy2d", {"toy": "mixture"}),
                                         ("toy2d", {"toy": "two_moons"})])
def test_batch_is_a_pure_function_of_seed_and_step(name, knobs):
    ds, fresh = load_dataset(name, **knobs), load_dataset(name, **knobs)
    b5 = ds.batch(5, 64, seed=3)
    ds.batch(6, 64, seed=3)  # no iterator state: other calls in between change nothing
    for again in (ds.batch(5, 64, seed=3), fresh.batch(5, 64, seed=3)):
        assert set(again) == set(b5)
        for k in b5:
            np.testing.assert_array_equal(again[k], b5[k])
    assert not np.array_equal(ds.batch(6, 64, seed=3)["x"], b5["x"])
    assert not np.array_equal(ds.batch(5, 64, seed=4)["x"], b5["x"])
    assert b5["x"].dtype == np.float32 and b5["x"].shape == (64, *ds.data_shape)
    if ds.num_classes:
        assert b5["label"].dtype == np.int32 and b5["label"].shape == (64,)
    else:
        assert "label" not in b5


@pytest.mark.parametrize("name, knobs", [("digits", {}), ("toy2d", {"toy": "checkerboard"})])
@pytest.mark.parametrize("process_count", [2, 4])
@pytest.mark.parametrize("step", [0, 11, 40])  # digits: step 11 of 128 straddles epochs 0 and 1
def test_host_slices_concatenate_to_the_single_process_batch(name, knobs, process_count, step):
    ds = load_dataset(name, **knobs)
    whole = ds.batch(step, 128, seed=1)
    slices = [ds.batch(step, 128, seed=1, process_index=i, process_count=process_count) for i in range(process_count)]
    for k in whole:
        assert all(s[k].shape[0] == 128 // process_count for s in slices)
        np.testing.assert_array_equal(np.concatenate([s[k] for s in slices]), whole[k])


def test_toy_rows_do_not_depend_on_the_batch_size():
    ds = load_dataset("toy2d", toy="swiss_roll")
    np.testing.assert_array_equal(ds.batch(7, 600)["x"][:300], ds.batch(7, 300)["x"])


def test_batch_arguments_are_validated(digits):
    with pytest.raises(ValueError, match="batch_size 100 must divide evenly by process_count 3"):
        digits.batch(0, 100, process_count=3)
    with pytest.raises(ValueError, match="process_index"):
        digits.batch(0, 100, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="step"):
        digits.batch(-1, 100)


def test_one_epoch_covers_every_example_once(tmp_path, digits):
    # Exact indices: epoch e is default_rng((seed, e)).permutation(N), and batches straddle epochs.
    n, batch_size, seed = 10, 4, 7
    ds = _ids_npz(tmp_path, n)
    stream = np.concatenate([ds.batch(s, batch_size, seed=seed)["x"][:, 0] for s in range(5)]).astype(int)
    truth = np.concatenate([np.random.default_rng((seed, e)).permutation(n) for e in range(2)])
    np.testing.assert_array_equal(stream, truth)
    np.testing.assert_array_equal(epoch_indices(seed, 2, batch_size, 1, 3, n), truth[9:11])
    # Digits: 15 batches of 100 are one epoch of the 1500 training images, each exactly once.
    rows = np.concatenate([digits.batch(s, 100)["x"].reshape(100, -1) for s in range(15)])
    labels = np.concatenate([digits.batch(s, 100)["label"] for s in range(15)])
    everything = digits.arrays()
    order = np.lexsort(np.c_[rows, labels].T)
    truth_order = np.lexsort(np.c_[everything["x"].reshape(1500, -1), everything["label"]].T)
    np.testing.assert_array_equal(rows[order], everything["x"].reshape(1500, -1)[truth_order])
    np.testing.assert_array_equal(labels[order], everything["label"][truth_order])


# ---- digits --------------------------------------------------------------------------------------------------
def test_digits_shapes_range_labels_and_splits():
    raw = sklearn_digits()
    full = load_dataset("digits", split="all")
    arrays = full.arrays()
    assert full.size == 1797 and full.data_shape == (8, 8, 1) and full.num_classes == 10
    assert arrays["x"].dtype == np.float32 and arrays["x"].min() == -1.0 and arrays["x"].max() == 1.0
    np.testing.assert_array_equal(arrays["x"][..., 0], raw.images / 8.0 - 1.0)
    np.testing.assert_array_equal(arrays["label"], raw.target)
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert (train.size, test.size) == (1500, 297)
    np.testing.assert_array_equal(test.arrays()["label"], raw.target[1500:])
    # References for metrics come from the test split, never from the training images.
    ref, ref_labels = train.sample_reference(0, 50, with_labels=True)
    test_rows = {r.tobytes() for r in test.arrays()["x"]}
    assert all(r.tobytes() in test_rows for r in ref) and ref_labels.shape == (50,)
    np.testing.assert_array_equal(train.sample_reference(jax.random.key(3), 20),
                                  train.sample_reference(jax.random.key(3), 20))


def _upsample_2x(a):
    """PIL's 2x bilinear upsampling along axis 0: taps (1/4, 3/4) with the edge pixel repeated."""
    p = np.concatenate([a[:1], a, a[-1:]])
    out = np.empty((2 * len(a), *a.shape[1:]))
    out[0::2], out[1::2] = 0.75 * a + 0.25 * p[:-2], 0.75 * a + 0.25 * p[2:]
    return out


def test_resize_is_bilinear():
    small = load_dataset("digits", split="test").arrays()["x"]
    big = load_dataset("digits", split="test", image_size=16)
    assert big.data_shape == (16, 16, 1) and big.size == 297
    x = big.arrays()["x"]
    truth = np.stack([_upsample_2x(_upsample_2x(im[..., 0]).T).T for im in small[:40]])
    np.testing.assert_allclose(x[:40, ..., 0], truth, atol=1e-5)
    assert x.min() >= -1.0 and x.max() <= 1.0
    const = np.full((2, 5, 7, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_images(const, 11), np.full((2, 11, 11, 3), 77, np.uint8))


# ---- files -----------------------------------------------------------------------------------------------------
def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 12)
    test_images = rng.integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images, labels=labels, images_test=test_images, labels_test=labels[:5])
    ds = load_dataset("npz", path=tmp_path / "a.npz")
    assert (ds.size, ds.data_shape, ds.num_classes) == (12, (6, 6, 3), int(labels.max()) + 1)
    np.testing.assert_allclose(ds.arrays()["x"], images / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(ds.arrays()["label"], labels)
    np.testing.assert_allclose(load_dataset("npz", path=tmp_path / "a.npz", split="test").arrays()["x"],
                               test_images / 127.5 - 1.0, atol=1e-6)
    assert load_dataset("npz", path=tmp_path / "a.npz", split="all").size == 17
    assert load_dataset("npz", path=tmp_path / "a.npz", image_size=4).data_shape == (4, 4, 3)
    # Floats in [0, 1], grayscale NHW, unlabelled.
    gray = rng.random((4, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=gray)
    ds = load_dataset("npz", path=tmp_path / "b.npz")
    assert ds.num_classes == 0 and "label" not in ds.batch(0, 2)
    np.testing.assert_allclose(ds.arrays()["x"][..., 0], 2 * gray - 1, atol=1e-6)
    with pytest.raises(ValueError, match="no test split"):
        load_dataset("npz", path=tmp_path / "b.npz", split="test")
    np.savez(tmp_path / "c.npz", x=5 * gray)
    with pytest.raises(ValueError, match="value_range"):
        load_dataset("npz", path=tmp_path / "c.npz")
    np.testing.assert_allclose(load_dataset("npz", path=tmp_path / "c.npz", value_range=(0, 5)).arrays()["x"][..., 0],
                               2 * gray - 1, atol=1e-5)


def test_image_folder_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    written = {}
    for cls in ("dog", "cat"):  # labels follow sorted names: cat = 0, dog = 1
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "set" / cls / f"{i}.png")
            written[(cls, i)] = img
    ds = load_dataset("image_folder", path=tmp_path / "set")
    assert (ds.size, ds.data_shape, ds.num_classes) == (6, (5, 7, 3), 2)
    arrays = ds.arrays()
    np.testing.assert_array_equal(arrays["label"], [0, 0, 0, 1, 1, 1])
    truth = np.stack([written[("cat", i)] for i in range(3)] + [written[("dog", i)] for i in range(3)])
    np.testing.assert_allclose(arrays["x"], truth / 127.5 - 1.0, atol=1e-6)
    # image_size: centre crop 5x5 from 5x7 (columns 1..5), then resize.
    cropped = load_dataset("image_folder", path=tmp_path / "set", image_size=5).arrays()["x"]
    np.testing.assert_allclose(cropped, truth[:, :, 1:6] / 127.5 - 1.0, atol=1e-6)
    assert load_dataset("image_folder", path=tmp_path / "set", image_size=3, channels=1).data_shape == (3, 3, 1)
    # Unlabelled: images straight in the folder; differing sizes need image_size.
    (tmp_path / "flat").mkdir()
    Image.fromarray(written[("cat", 0)]).save(tmp_path / "flat" / "a.png")
    Image.fromarray(written[("cat", 1)][:4]).save(tmp_path / "flat" / "b.png")
    with pytest.raises(ValueError, match="differ in size.*image_size"):
        load_dataset("image_folder", path=tmp_path / "flat")
    flat = load_dataset("image_folder", path=tmp_path / "flat", image_size=4)
    assert flat.num_classes == 0 and flat.data_shape == (4, 4, 3) and "label" not in flat.batch(0, 2)


def test_missing_files_raise_one_clear_line(tmp_path):
    for name in ("npz", "image_folder"):
        missing = tmp_path / f"nothing-{name}"
        with pytest.raises(FileNotFoundError, match=f"no .* at '{re.escape(str(missing))}'") as err:
            load_dataset(name, path=missing)
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match="needs path="):
            load_dataset(name)
    for name in ("cifar10", "mnist", "celeb_a"):  # tensorflow-datasets absent, or no prepared data here
        with pytest.raises(FileNotFoundError, match=f"dataset '{name}' needs tensorflow-datasets") as err:
            load_dataset(name, path=tmp_path)
        assert str(tmp_path) in str(err.value) and "data.name='npz'" in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_knobs_and_splits_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'digts'; valid datasets: .*digits.*toy2d"):
        load_dataset("digts")
    with pytest.raises(ValueError, match="unknown knob.*colour.*valid knobs: toy"):
        load_dataset("toy2d", colour="red")
    with pytest.raises(ValueError, match="unknown toy 'spiral'.*checkerboard"):
        load_dataset("toy2d", toy="spiral")
    with pytest.raises(ValueError, match="unknown split 'val'.*'train', 'test', 'all'"):
        load_dataset("digits", split="val")
    assert {"toy2d", "digits", "binary_digits", "npz", "image_folder", "cifar10", "mnist", "celeb_a"} == set(DATASETS)


# ---- toy sets ---------------------------------------------------------------------------------------------------
def test_checkerboard_density_integrates_to_one_and_is_minus_inf_off_support():
    ds = load_dataset("toy2d", toy="checkerboard")
    h = 0.01  # midpoint rule: cell edges on the square edges, so the piecewise-constant integral is exact
    grid = np.arange(-3 + h / 2, 3, h, dtype=np.float32)
    pts = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    density = np.exp(np.asarray(ds.log_prob(pts), dtype=np.float64))
    np.testing.assert_allclose(density.sum() * h * h, 1.0, rtol=1e-6)  # exp of float32 -log 8
    white_and_outside = np.array([[0.5, -0.5], [-1.5, -0.5], [1.5, 0.5], [2.5, 0.0], [0.0, -2.01]], np.float32)
    assert np.all(np.asarray(ds.log_prob(white_and_outside)) == -np.inf)
    x = ds.batch(0, 4096)["x"]
    np.testing.assert_array_equal(np.asarray(ds.log_prob(x)), np.full(4096, -math.log(8.0), np.float32))
    # Each of the 8 black squares gets 1/8 of the mass (binomial sd 0.005; 4 sd).
    square = (np.floor(x[:, 0]) + 2) * 4 + np.floor(x[:, 1]) + 2
    np.testing.assert_allclose(np.bincount(square.astype(int), minlength=16)[[0, 2, 5, 7, 8, 10, 13, 15]] / 4096,
                               np.full(8, 1 / 8), atol=0.021)


def test_mixture_log_prob_is_the_ring_of_gaussians(key):
    ds = load_dataset("toy2d", toy="mixture")
    pts = np.asarray(jax.random.normal(key, (200, 2)) * 2.0, np.float64)
    angles = 2 * np.pi * np.arange(8) / 8
    means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    truth = np.log(np.mean([scipy.stats.multivariate_normal(m, 0.15**2).pdf(pts) for m in means], 0))
    np.testing.assert_allclose(np.asarray(ds.log_prob(pts.astype(np.float32))), truth, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ds.oracle.log_prob(pts)), truth, rtol=1e-4, atol=1e-4)
    # Sample moments: mean 0, per-coordinate variance R^2 / 2 + s^2 = 2.0225 (n = 8192: sd of the mean 0.016,
    # of the variance about 0.02; 4 sd).
    x = ds.batch(0, 8192)["x"]
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.064)
    np.testing.assert_allclose(x.var(0), 2.0225, atol=0.08)


@pytest.mark.parametrize("toy", TOYS)
def test_toy_sets_are_scaled_and_log_prob_exists_only_where_exact(toy):
    ds = load_dataset("toy2d", toy=toy)
    x = ds.batch(0, 4096)["x"]
    assert ds.data_shape == (2,) and ds.size is None and ds.num_classes == (8 if toy == "mixture" else 0)
    assert np.abs(x).max() < 3.5 and np.all((x.std(0) > 0.5) & (x.std(0) < 1.6))
    assert (ds.log_prob is None) == (toy in ("swiss_roll", "two_moons"))
    ref = ds.sample_reference(0, 4096)
    assert ref.shape == (4096, 2) and not np.array_equal(ref, x)


class _FakeTFDS:
    """A stand-in for `tensorflow_datasets` (not a dependency): `load(..., batch_size=-1)` returns whole splits
    as dicts of arrays, and records what it was asked for."""

    def __init__(self, splits, missing=()):
        self.splits, self.missing, self.calls = splits, set(missing), []

    def load(self, name, *, split, data_dir, download, batch_size):
        self.calls.append((name, split, data_dir, download, batch_size))
        if (name, split) in self.missing:
            raise AssertionError(f"Dataset {name} not found in {data_dir}")  # tfds raises assorted types
        return self.splits[(name, split)]

    @staticmethod
    def as_numpy(tree):
        return tree


def _fake_split(n, size, channels, labels, seed):
    rng = np.random.default_rng(seed)
    data = {"image": rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)}
    if labels:
        data["label"] = rng.integers(0, 10, n).astype(np.int64)
    return data


def test_tfds_sets_are_read_locally_scaled_and_split(monkeypatch, tmp_path):
    fake = _FakeTFDS({("cifar10", "train"): _fake_split(6, 32, 3, True, 0),
                      ("cifar10", "test"): _fake_split(4, 32, 3, True, 1),
                      ("celeb_a", "train"): _fake_split(3, 218, 3, False, 2),
                      ("celeb_a", "test"): _fake_split(2, 218, 3, False, 3)})
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", fake)
    cifar = load_dataset("cifar10", path=tmp_path, split="all")
    assert fake.calls[0] == ("cifar10", "train", str(tmp_path), False, -1)  # never downloads
    images = fake.splits[("cifar10", "train")]["image"]
    assert cifar.size == 10 and cifar.num_classes == 10 and cifar.data_shape == (32, 32, 3)
    arrays = cifar.arrays()
    np.testing.assert_allclose(arrays["x"][:6], images / 127.5 - 1.0, atol=1e-6)  # uint8 -> [-1, 1], no resize
    np.testing.assert_array_equal(arrays["label"][6:], fake.splits[("cifar10", "test")]["label"])
    np.testing.assert_array_equal(cifar.reference_arrays()["label"], fake.splits[("cifar10", "test")]["label"])
    face = fake.splits[("celeb_a", "train")]["image"]
    face[:] = 255
    face[:, 39:179, 39:179] = 0  # the centre 140x140 crop of a 218x218 stand-in (CelebA is 218x178)
    celeba = load_dataset("celeb_a", path=tmp_path, split="train")
    np.testing.assert_allclose(celeba.arrays()["x"], -1.0, atol=1e-6)  # only the centre crop survives
    assert celeba.size == 3 and celeba.data_shape == (64, 64, 3) and not celeba.labelled
    assert celeba.num_classes == 0


def test_tfds_missing_data_or_package_is_one_clear_line(monkeypatch, tmp_path):
    fake = _FakeTFDS({}, missing={("mnist", "train"), ("mnist", "test")})
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", fake)
    with pytest.raises(FileNotFoundError, match=r"prepared data under .*download_and_prepare"):
        load_dataset("mnist", path=tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)  # not installed
    with pytest.raises(FileNotFoundError, match="needs tensorflow-datasets"):
        load_dataset("mnist", path=tmp_path)


def test_mixture_rows_are_labelled_by_their_component():
    ds = load_dataset("toy2d", toy="mixture")
    rows = ds.batch(3, 2048)
    angles = np.arctan2(rows["x"][:, 1], rows["x"][:, 0])
    nearest = np.round(angles / (2 * np.pi / 8)).astype(int) % 8  # components sit at angles 2 pi k / 8
    np.testing.assert_array_equal(rows["label"], nearest)
    assert np.bincount(rows["label"], minlength=8).min() > 2048 / 8 * 0.7
    x, labels = ds.sample_reference(0, 512, with_labels=True)
    assert labels.shape == (512,) and labels.dtype == np.int32
