"""The `Dataset` interface: a batch is a pure function of `(seed, step)`, and each host builds only its rows.

A data order with no iterator state makes a resumed run see exactly the batches it would have seen, and
lets every process compute its own slice of the global batch without reading the others' rows
(DESIGN.md §5, big_vision's `input_pipeline.py`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable

import jax
import numpy as np

SPLITS = ("train", "test", "all")


def _check_int(what: str, value, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def local_batch_size(batch_size: int, process_index: int, process_count: int) -> int:
    """This host's share `batch_size // process_count` of a global batch, after checking the arguments."""
    batch_size = _check_int("batch_size", batch_size, 1)
    process_count = _check_int("process_count", process_count, 1)
    process_index = _check_int("process_index", process_index, 0)
    if process_index >= process_count:
        raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
    if batch_size % process_count:
        raise ValueError(f"the global batch_size {batch_size} must divide evenly by process_count {process_count}")
    return batch_size // process_count


def reference_rng(key_or_seed, tag: int) -> np.random.Generator:
    """A NumPy generator from an int seed or a JAX key (typed or raw uint32), on a stream apart from `batch`."""
    if isinstance(key_or_seed, (int, np.integer)) and not isinstance(key_or_seed, bool):
        if key_or_seed < 0:
            raise ValueError(f"a seed must be non-negative, got {key_or_seed}")
        words = [int(key_or_seed)]
    else:
        key = key_or_seed
        if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        words = [int(w) for w in np.asarray(jax.device_get(key), dtype=np.uint32).ravel()]
    return np.random.default_rng([tag, *words])


class Dataset(abc.ABC):
    """A dataset as the training runner and the metrics see it.

    Attributes:
        name: the name it was loaded under.
        data_shape: the per-example shape, e.g. `(2,)` or `(8, 8, 1)` (images are NHWC, float32 in [-1, 1]).
        num_classes: the number of label classes; 0 when unlabelled.
        size: the number of examples of a finite split; None for an infinite (toy) set.
        log_prob: `x (n, *data_shape) -> (n,)` exact data log-density where it is known in closed form, else None.
    """

    name: str
    data_shape: tuple[int, ...]
    num_classes: int = 0
    size: int | None = None
    log_prob: Callable | None = None

    def batch(self, step: int, batch_size: int, *, seed: int = 0, process_index: int = 0,
              process_count: int = 1) -> dict:
        """This process's slice of the global batch number `step`.

        Returns `dict(x=float32 (batch_size // process_count, *data_shape))`, plus `label` (int32) for a
        labelled set. The slice is rows `[process_index * b, (process_index + 1) * b)` of the global batch,
        so concatenating the slices of all processes in order gives the single-process batch.

        Raises:
            ValueError: for a negative step or seed, or a batch_size that does not divide by process_count.
        """
        b = local_batch_size(batch_size, process_index, process_count)
        step = _check_int("step", step, 0)
        seed = _check_int("seed", seed, 0)
        lo = process_index * b
        return self._rows(seed, step, int(batch_size), lo, lo + b)

    @abc.abstractmethod
    def _rows(self, seed: int, step: int, batch_size: int, lo: int, hi: int) -> dict:
        """Rows `[lo, hi)` of global batch `step`."""

    @abc.abstractmethod
    def sample_reference(self, key_or_seed, n: int, *, with_labels: bool = False):
        """`n` fresh examples `(n, *data_shape)` float32 for metrics, independent of the training batches.

        Toy sets draw new points; finite sets draw from their evaluation split. With `with_labels`, returns
        `(x, labels)` (labels None when unlabelled).
        """

    def __repr__(self):
        size = "infinite" if self.size is None else self.size
        return (f"{type(self).__name__}(name={self.name!r}, data_shape={self.data_shape}, "
                f"num_classes={self.num_classes}, size={size})")


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    perm = np.random.default_rng((seed, epoch)).permutation(n)
    perm.flags.writeable = False
    return perm


def epoch_indices(seed: int, step: int, batch_size: int, lo: int, hi: int, n: int) -> np.ndarray:
    """Example indices of rows `[lo, hi)` of global batch `step` over a finite set of `n` examples.

    Position `p = step * batch_size + row` of the endless stream lies in epoch `e = p // n` at offset
    `p % n` of the permutation `default_rng((seed, e)).permutation(n)`; a batch may straddle epochs.
    """
    pos = step * batch_size + np.arange(lo, hi, dtype=np.int64)
    epoch, offset = np.divmod(pos, n)
    out = np.empty(hi - lo, dtype=np.int64)
    for e in np.unique(epoch):
        sel = epoch == e
        out[sel] = _permutation(seed, int(e), n)[offset[sel]]
    return out


def _identity(x):
    return np.asarray(x, dtype=np.float32)


def uint8_to_unit(x) -> np.ndarray:
    """uint8 `[0, 255]` to float32 `[-1, 1]`."""
    return np.asarray(x, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


class ArrayDataset(Dataset):
    """A finite dataset held in host memory as NumPy arrays (fine for the small sets here; stream large sets
    from sharded files, e.g. with grain, instead of loading them whole).

    Rows are stored compactly (uint8 for 8-bit images) and decoded per batch by `decode` to float32.

    Args:
        name: the dataset name.
        x: `(N, *data_shape)` stored examples of this split.
        labels: `(N,)` integer labels, or None.
        num_classes: number of classes (inferred as `max(labels) + 1` when None).
        reference: stored examples of the evaluation split (default: `x`).
        reference_labels: its labels (default: `labels` when `reference` is None).
        decode: stored rows to float32 rows (default: cast to float32).
        columns: further `(N, ...)` arrays drawn row-aligned with `x` into every batch under their names
            (e.g. reflow's coupled noise `x1`, article (十七)).
    """

    def __init__(self, name, x, labels=None, *, num_classes=None, reference=None, reference_labels=None,
                 decode: Callable | None = None, columns: dict | None = None):
        if len(x) == 0:
            raise ValueError(f"dataset {name!r} holds no examples")
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int32)
            if labels.shape != (len(x),):
                raise ValueError(f"dataset {name!r}: labels must have shape ({len(x)},), got {labels.shape}")
        if reference is None:
            reference, reference_labels = x, labels
        elif reference_labels is not None:
            reference_labels = np.asarray(reference_labels, dtype=np.int32)
        self._columns = {k: np.asarray(v) for k, v in (columns or {}).items()}
        for key, column in self._columns.items():
            if key in ("x", "label") or len(column) != len(x):
                raise ValueError(f"dataset {name!r}: column {key!r} must be named other than x and label and have "
                                 f"{len(x)} rows, got {len(column)}")
        self.name = name
        self._x, self._labels = x, labels
        self._ref_x, self._ref_labels = reference, reference_labels
        self._decode = decode or _identity
        self.size = len(x)
        self.data_shape = tuple(int(d) for d in x.shape[1:])
        if num_classes is None:
            num_classes = 0 if labels is None else int(labels.max()) + 1
        self.num_classes = int(num_classes)

    @property
    def labelled(self) -> bool:
        return self._labels is not None

    def _take(self, x, labels, idx) -> dict:
        out = {"x": self._decode(x[idx])}
        if labels is not None:
            out["label"] = labels[idx]
        return out

    def _rows(self, seed, step, batch_size, lo, hi):
        idx = epoch_indices(seed, step, batch_size, lo, hi, self.size)
        rows = self._take(self._x, self._labels, idx)
        rows.update({k: v[idx] for k, v in self._columns.items()})
        return rows

    def arrays(self) -> dict:
        """The whole split, decoded: `dict(x=float32 (N, *data_shape))` plus `label` when labelled."""
        return self._take(self._x, self._labels, slice(None))

    def reference_arrays(self) -> dict:
        """The whole evaluation split, decoded (the pool `sample_reference` draws from)."""
        return self._take(self._ref_x, self._ref_labels, slice(None))

    def sample_reference(self, key_or_seed, n, *, with_labels=False):
        """`n` examples of the evaluation split: without replacement when `n` fits, else with replacement."""
        n = _check_int("n", n, 1)
        rng = reference_rng(key_or_seed, tag=0x5EF)
        pool = len(self._ref_x)
        idx = rng.choice(pool, n, replace=n > pool)
        out = self._take(self._ref_x, self._ref_labels, idx)
        return (out["x"], out.get("label")) if with_labels else out["x"]
