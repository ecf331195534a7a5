"""Finite image sets held in memory: scikit-learn's digits (the embedded default), `.npz` files and image folders.

Images are NHWC float32 in [-1, 1]. Resizing is bilinear (PIL, antialiased when shrinking), after an
optional centre crop to a square.
"""

from __future__ import annotations

import os

import numpy as np

from ._base import ArrayDataset, uint8_to_unit

DIGITS_TEST_SIZE = 297  # the last 297 of scikit-learn's 1797 digits form the test split; the first 1500 train
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def check_image_size(image_size) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    return int(image_size)


def _no_path(name, path):
    if path is not None:
        raise ValueError(f"dataset {name!r} is built in and takes no path (got path={path!r})")


def centre_crop(images: np.ndarray, crop: int | None = None) -> np.ndarray:
    """The central `crop x crop` window of NHWC `images` (default: the largest square)."""
    h, w = images.shape[1:3]
    crop = min(h, w) if crop is None else crop
    if crop > min(h, w):
        raise ValueError(f"cannot centre-crop {crop}x{crop} from {h}x{w} images")
    top, left = (h - crop) // 2, (w - crop) // 2
    return images[:, top:top + crop, left:left + crop]


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of NHWC `images` (uint8 or float) to `size x size`, keeping the dtype."""
    from PIL import Image

    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    out = np.empty((n, size, size, c), dtype=np.float32)
    for i in range(n):
        for ch in range(c):
            plane = Image.fromarray(np.ascontiguousarray(images[i, :, :, ch], dtype=np.float32))  # mode "F"
            out[i, :, :, ch] = np.asarray(plane.resize((size, size), Image.Resampling.BILINEAR))
    if images.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(images.dtype)


def _square_resize(images, image_size, crop=None):
    if image_size is None:
        return images if crop is None else centre_crop(images, crop)
    return resize_images(centre_crop(images, crop), image_size)


# ---- digits -------------------------------------------------------------------------------------------------
def load_digits(*, split="train", path=None, image_size=None) -> ArrayDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16), scaled by `v / 8 - 1` to [-1, 1], labelled 0..9.

    Splits: `train` (the first 1500), `test` (the last 297), `all`. `image_size` upsamples bilinearly
    (multiples of 8 keep the pixel grid); default 8. `sample_reference` draws from the test split (from all
    1797 for `split="all"`). Nothing is downloaded: the data ships with scikit-learn.
    """
    from sklearn import datasets

    _no_path("digits", path)
    raw = datasets.load_digits()
    images = (raw.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    images = _square_resize(images, check_image_size(image_size))
    labels = raw.target.astype(np.int32)
    cut = len(images) - DIGITS_TEST_SIZE
    parts = {"train": (images[:cut], labels[:cut]), "test": (images[cut:], labels[cut:]), "all": (images, labels)}
    x, y = parts[split]
    ref_x, ref_y = parts["all" if split == "all" else "test"]
    return ArrayDataset("digits", x, y, num_classes=10, reference=ref_x, reference_labels=ref_y)


# ---- arrays from .npz ---------------------------------------------------------------------------------------
def _to_images(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what} must be NHW or NHWC images with 1, 3 or 4 channels (or (N, d) vectors), "
                         f"got shape {x.shape}")
    return x


def _float_scaler(x: np.ndarray, value_range, what: str):
    """A decoder from stored floats to [-1, 1]: `value_range` given, or inferred as [0, 1] or [-1, 1]."""
    if value_range is None:
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0.0 and hi <= 1.0:
            value_range = (0.0, 1.0)
        elif lo >= -1.0 and hi <= 1.0:
            value_range = (-1.0, 1.0)
        else:
            raise ValueError(f"{what} holds floats in [{lo:.3g}, {hi:.3g}]; pass value_range=(low, high) so they "
                             "can be scaled to [-1, 1]")
    lo, hi = (float(v) for v in value_range)
    scale, shift = np.float32(2.0 / (hi - lo)), np.float32(-1.0 - 2.0 * lo / (hi - lo))
    return lambda rows: np.asarray(rows, dtype=np.float32) * scale + shift


def _npz_arrays(npz, suffix: str):
    keys = [k for k in (f"x{suffix}", f"images{suffix}") if k in npz]
    if not keys:
        return None, None
    labels = npz[f"labels{suffix}"] if f"labels{suffix}" in npz else None
    return np.asarray(npz[keys[0]]), labels


def load_npz(*, split="train", path=None, image_size=None, value_range=None) -> ArrayDataset:
    """Examples from a `.npz` file at `path`.

    Keys: `x` (or `images`) holding NHW/NHWC images (uint8 in [0, 255], or floats in [0, 1] or [-1, 1]; other
    float ranges need `value_range=(low, high)`) or `(N, d)` vectors (used as they are), and optional
    `labels`. Optional `x_test`/`images_test` and `labels_test` form the test split and the reference pool of
    `sample_reference`; without them `split="test"` fails and references are drawn from the file's `x`.
    `split="all"` joins both. `image_size` centre-crops to a square and resizes.
    """
    if path is None:
        raise ValueError("dataset 'npz' needs path=<file.npz> (set data.path)")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset 'npz': no file at {path!r}; write one with np.savez(path, x=images, "
                                "labels=labels)")
    with np.load(path) as npz:
        x, labels = _npz_arrays(npz, "")
        if x is None:
            raise ValueError(f"{path!r} has no 'x' or 'images' array (keys: {', '.join(npz.files)})")
        x_test, labels_test = _npz_arrays(npz, "_test")
    if split == "test" and x_test is None:
        raise ValueError(f"{path!r} has no 'x_test' array, so it has no test split; use split='train'")
    if split == "test":
        x, labels = x_test, labels_test
    elif split == "all" and x_test is not None:
        x = np.concatenate([x, x_test])
        labels = None if labels is None or labels_test is None else np.concatenate([labels, labels_test])
    ref_x, ref_labels = (x_test, labels_test) if x_test is not None and split != "all" else (x, labels)

    image_size = check_image_size(image_size)
    if x.ndim == 2:
        if image_size is not None:
            raise ValueError(f"{path!r} holds (N, d) vectors; image_size applies to images only")
        return ArrayDataset("npz", x.astype(np.float32), labels, reference=ref_x.astype(np.float32),
                            reference_labels=ref_labels)
    x, ref_x = _to_images(x, f"{path!r}['x']"), _to_images(ref_x, f"{path!r}['x_test']")
    x, ref_x = _square_resize(x, image_size), _square_resize(ref_x, image_size)
    if x.dtype == np.uint8:
        decode = uint8_to_unit
    else:
        decode = _float_scaler(x, value_range, repr(path))
    num_classes = None
    if labels is not None:
        num_classes = int(max(labels.max(), -1 if ref_labels is None else ref_labels.max())) + 1
    return ArrayDataset("npz", x, labels, num_classes=num_classes, reference=ref_x, reference_labels=ref_labels,
                        decode=decode)


# ---- a folder of image files --------------------------------------------------------------------------------
def _image_files(folder):
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f)))


def load_image_folder(*, split="train", path=None, image_size=None, channels=3) -> ArrayDataset:
    """Images under the directory `path`: labelled by sub-folder (classes = sorted sub-folder names holding
    images), or unlabelled when the images sit directly in `path`.

    `channels` is 3 (RGB) or 1 (grayscale). `image_size` centre-crops each image to a square and resizes it;
    without it all images must share one size. The folder is a single split: `split` must be `train` or
    `all`, and `sample_reference` draws from the same images.
    """
    from PIL import Image

    if path is None:
        raise ValueError("dataset 'image_folder' needs path=<directory> (set data.path)")
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"dataset 'image_folder': no directory at {path!r}")
    if split == "test":
        raise ValueError("dataset 'image_folder' has a single split; use split='train' (or 'all')")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    image_size = check_image_size(image_size)

    classes = sorted(d for d in os.listdir(path)
                     if os.path.isdir(os.path.join(path, d)) and _image_files(os.path.join(path, d)))
    if classes:
        files = [(os.path.join(path, c, f), k) for k, c in enumerate(classes)
                 for f in _image_files(os.path.join(path, c))]
    else:
        files = [(os.path.join(path, f), -1) for f in _image_files(path)]
    if not files:
        raise FileNotFoundError(f"dataset 'image_folder': no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path!r} "
                                "or its sub-folders")

    images = []
    for file, _ in files:
        with Image.open(file) as im:
            arr = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
        arr = arr.reshape(1, *arr.shape[:2], channels)
        images.append(_square_resize(arr, image_size) if image_size is not None else arr)
    shapes = sorted({a.shape[1:3] for a in images})
    if len(shapes) > 1:
        raise ValueError(f"images under {path!r} differ in size ({shapes[0]}, {shapes[-1]}, ...); set image_size")
    x = np.concatenate(images)
    labels = np.array([k for _, k in files], dtype=np.int32) if classes else None
    return ArrayDataset("image_folder", x, labels, num_classes=len(classes), decode=uint8_to_unit)
