"""Datasets: toy 2-D sets with exact densities, scikit-learn's digits, `.npz` files, image folders, and tfds sets.

    from diffjax.data import load_dataset
    ds = load_dataset("digits", split="train")           # or "toy2d" (toy="checkerboard"), "npz", ...
    ds.data_shape, ds.num_classes                        # (8, 8, 1), 10
    batch = ds.batch(step, 128, seed=0, process_index=jax.process_index(), process_count=jax.process_count())
    batch["x"], batch["label"]                           # this host's (128 // process_count, 8, 8, 1) float32 rows
    ref = ds.sample_reference(key, 1000)                 # fresh examples for metrics

A batch is a pure function of `(seed, step)`: a resumed run sees the same batches, and every process builds
only its own rows of the global batch (DESIGN.md §5). Finite sets are held in host memory with NumPy, which
suits the small sets here; stream large sets from sharded files (e.g. with grain) instead.
"""

from __future__ import annotations

import functools

from .._checks import check_choice, check_knobs, lookup
from ._base import SPLITS as SPLITS
from ._base import ArrayDataset as ArrayDataset
from ._base import Dataset as Dataset
from ._binary import load_binary_digits
from ._images import DIGITS_TEST_SIZE as DIGITS_TEST_SIZE
from ._images import load_digits, load_image_folder, load_npz
from ._tfds import TFDS_SETS, load_tfds
from ._toy import TOYS as TOYS
from ._toy import Toy2D as Toy2D
from ._toy import checkerboard_log_prob as checkerboard_log_prob


def _load_toy2d(*, split="train", path=None, image_size=None, toy="mixture"):
    """Infinite 2-D toy sets (every split is a fresh draw); see `diffjax.data._toy` for the laws."""
    if path is not None or image_size is not None:
        raise ValueError("dataset 'toy2d' takes neither path nor image_size")
    return Toy2D(toy)


# name -> (loader, its extra knobs)
DATASETS = {
    "toy2d": (_load_toy2d, ("toy",)),
    "digits": (load_digits, ()),
    "binary_digits": (load_binary_digits, ()),
    "npz": (load_npz, ("value_range",)),
    "image_folder": (load_image_folder, ("channels",)),
    **{name: (functools.partial(load_tfds, name), ()) for name in TFDS_SETS},
}


def load_dataset(name: str, *, split: str = "train", path=None, image_size: int | None = None, **knobs) -> Dataset:
    """Loads dataset `name`.

    Names and knobs: `toy2d` (`toy` in mixture | swiss_roll | checkerboard | two_moons, default mixture),
    `digits` (scikit-learn's 8x8 digits, embedded; first 1500 train, last 297 test), `npz` (`path` to a .npz
    file; `value_range` for float images outside [0, 1] and [-1, 1]), `image_folder` (`path` to a directory,
    class = sub-folder; `channels` 3 or 1), and `cifar10`, `mnist`, `celeb_a` (local tensorflow-datasets data
    under `path` or `$TFDS_DATA_DIR`; nothing is downloaded).

    Args:
        name: a key of `DATASETS`.
        split: `train`, `test` or `all`.
        path: the file or directory for `npz`, `image_folder` and the tfds sets.
        image_size: square side to centre-crop and resize images to (default: native size).
        **knobs: dataset-specific options listed above.

    Raises:
        ValueError: for an unknown name, split or knob (naming the valid ones) or a malformed file.
        FileNotFoundError: in one line naming what to provide, when the data is not there.
    """
    loader, allowed = lookup("dataset", DATASETS, name)
    check_knobs(f"dataset {name!r}", knobs, allowed)
    check_choice("split", split, SPLITS)
    return loader(split=split, path=path, image_size=image_size, **knobs)
