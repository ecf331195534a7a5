"""Standard image benchmarks through tensorflow-datasets, when it is installed and the data is prepared locally.

diffjax does not depend on tensorflow-datasets and never downloads: `tfds.load(..., download=False)` reads
data prepared beforehand under `data_dir` (`path`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). The
whole split is loaded into memory as uint8 (CelebA at 64x64 is about 2.4 GB); for larger sets convert to
sharded files and stream them (e.g. with grain) instead.
"""

from __future__ import annotations

import os

import numpy as np

from ._base import ArrayDataset, uint8_to_unit
from ._images import _square_resize, check_image_size

# name -> (tfds name, test split, default image_size, centre crop before resizing, image key, label key)
TFDS_SETS = {
    "cifar10": ("cifar10", "test", 32, None, "image", "label"),
    "mnist": ("mnist", "test", 28, None, "image", "label"),
    "celeb_a": ("celeb_a", "test", 64, 140, "image", None),  # celeba64: centre-crop 140, resize to 64
}


def _data_dir(path) -> str:
    if path is not None:
        return os.fspath(path)
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def _unavailable(name, data_dir) -> str:
    return (f"dataset {name!r} needs tensorflow-datasets and the prepared data under {data_dir}; install "
            f"tensorflow-datasets and run tfds.builder({TFDS_SETS[name][0]!r}, data_dir=...).download_and_prepare() "
            "once where there is network, or convert it to .npz and use data.name='npz'")


def _load_split(tfds, name, tfds_split, data_dir):
    tfds_name, _, _, _, image_key, label_key = TFDS_SETS[name]
    try:
        data = tfds.as_numpy(tfds.load(tfds_name, split=tfds_split, data_dir=data_dir, download=False,
                                       batch_size=-1))
    except Exception as err:  # tfds raises assorted errors for unprepared data
        raise FileNotFoundError(_unavailable(name, data_dir)) from err
    labels = None if label_key is None else np.asarray(data[label_key], dtype=np.int32)
    return np.asarray(data[image_key], dtype=np.uint8), labels


def load_tfds(name: str, *, split="train", path=None, image_size=None) -> ArrayDataset:
    """`cifar10` (32x32), `mnist` (28x28x1) or `celeb_a` (centre-crop 140, resize to 64) from local tfds data.

    `split` is `train`, `test` or `all` (train + test); `sample_reference` draws from the test split.
    `path` is the tfds `data_dir`.

    Raises:
        FileNotFoundError: in one line, when tensorflow-datasets is missing or the data is not prepared.
    """
    data_dir = _data_dir(path)
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise FileNotFoundError(_unavailable(name, data_dir)) from err
    _, test_split, default_size, crop, _, _ = TFDS_SETS[name]
    image_size = check_image_size(image_size) or default_size
    want = {"train": ["train"], "test": [test_split], "all": ["train", test_split]}[split]
    parts = {s: _load_split(tfds, name, s, data_dir) for s in dict.fromkeys([*want, test_split])}

    parts = {s: (_square_resize(x, image_size, crop), y) for s, (x, y) in parts.items()}
    x, y = zip(*(parts[s] for s in want), strict=True)
    ref_x, ref_y = parts[test_split]
    labels = None if y[0] is None else np.concatenate(y)
    return ArrayDataset(name, np.concatenate(x), labels, num_classes=0 if labels is None else 10,
                        reference=ref_x, reference_labels=ref_y, decode=uint8_to_unit)
