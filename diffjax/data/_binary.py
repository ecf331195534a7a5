"""Binarised digits: scikit-learn's 8x8 digits as 64-token sequences over the vocabulary {0, 1}.

A token set for the discrete processes of article (十一): pixel `v` in 0..16 becomes `1` when `v >= 8`
(at least half intensity) and `0` otherwise; the 8x8 image is read row by row into 64 tokens.
"""

from __future__ import annotations

import numpy as np

from ._base import ArrayDataset
from ._images import DIGITS_TEST_SIZE

BINARY_THRESHOLD = 8  # half of the digits' maximum intensity 16


def _to_tokens(rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.int32)


class TokenDataset(ArrayDataset):
    """An `ArrayDataset` of integer token sequences: batches hold `x` as int32 `(B, L)` ids in `0..vocab_size-1`.

    Attributes:
        vocab_size: the number of distinct tokens.
    """

    def __init__(self, name, x, labels=None, *, vocab_size: int, **kwargs):
        super().__init__(name, x, labels, decode=_to_tokens, **kwargs)
        self.vocab_size = int(vocab_size)


def load_binary_digits(*, split="train", path=None, image_size=None) -> TokenDataset:
    """scikit-learn's digits thresholded at half intensity, as `(64,)` int32 tokens in {0, 1}, labelled 0..9.

    Splits as for `digits`: `train` (the first 1500), `test` (the last 297) and `all`; `sample_reference` draws
    from the test split (from all 1797 for `split="all"`). Nothing is downloaded.
    """
    from sklearn import datasets

    if path is not None:
        raise ValueError(f"dataset 'binary_digits' is built in and takes no path (got path={path!r})")
    if image_size is not None:
        raise ValueError("dataset 'binary_digits' is fixed at 64 tokens (8x8); leave image_size unset")
    raw = datasets.load_digits()
    tokens = (raw.images.reshape(len(raw.images), -1) >= BINARY_THRESHOLD).astype(np.uint8)
    labels = raw.target.astype(np.int32)
    cut = len(tokens) - DIGITS_TEST_SIZE
    parts = {"train": (tokens[:cut], labels[:cut]), "test": (tokens[cut:], labels[cut:]), "all": (tokens, labels)}
    x, y = parts[split]
    ref_x, ref_y = parts["all" if split == "all" else "test"]
    return TokenDataset("binary_digits", x, y, vocab_size=2, num_classes=10, reference=ref_x, reference_labels=ref_y)
