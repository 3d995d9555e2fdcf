"""Image-classification data for searches: built-in digits, IDX, ``.npz`` and image folders.

Everything is held in memory as tensors (the data sets a 2-core search can use
are small), so batches are plain index slices and fully deterministic.

Sources (:func:`load_dataset`):

* ``"digits"`` (the default): scikit-learn's bundled handwritten digits, 1797
  grey 8x8 images of 10 classes, shipped with scikit-learn (no download). Their
  pixel values 0..16 are scaled to [0, 1].
* An MNIST-format IDX pair: a folder holding one ``*images*idx3*`` and one
  ``*labels*idx1*`` file (optionally ``.gz``), or the path of the images file
  (the labels file is found by replacing ``images``/``idx3`` with ``labels``/``idx1``).
* A ``.npz`` file with arrays ``x`` (or ``images``) ``[N, H, W]``, ``[N, H, W, C]``
  or ``[N, C, H, W]`` and ``y`` (or ``labels``) ``[N]`` of integer classes (how the
  channel axis of 4-D arrays is told apart and how pixel values are brought to [0, 1]:
  :func:`load_npz`).
* An image folder: one sub-folder per class (sorted names are the classes; hidden
  folders and files, whose names start with ``.``, are skipped), holding PNG/JPEG/BMP/GIF
  files, read with Pillow (grey unless some image is in colour, then all ``RGB``;
  8-bit images are divided by 255, 16-bit ones by 65535: :func:`load_image_folder`).

Every source must hold examples of at least 2 classes (a classifier search needs 2) and
only finite pixel values; anything else is refused with a ``ValueError`` that names the
file.

:func:`prepare_splits` then resizes every image to the search resolution
(bilinear, ``align_corners=False``; digits' 8x8 become e.g. 16x16 or 32x32 this
way), splits deterministically into train / validation / test from a seed, and
standardises with the mean and standard deviation of the training split.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hwnas._checks import as_integer

__all__ = [
    "ImageDataset",
    "DataSplits",
    "load_dataset",
    "load_digits",
    "load_idx_pair",
    "read_idx",
    "load_npz",
    "load_image_folder",
    "prepare_splits",
    "rest_split",
    "iterate_batches",
    "num_batches",
]

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass
class ImageDataset:
    """Images and labels in memory.

    Attributes:
        images: ``[N, C, H, W]`` float32 (values in [0, 1] when loaded, standardised after
            :func:`prepare_splits`). Other floating-point dtypes are converted to float32;
            integer images (e.g. uint8 pixels) are refused: scale them to [0, 1] first.
        labels: ``[N]`` int64 class indices in ``[0, num_classes)``. Other integer dtypes
            are converted to int64; float or bool labels are refused.
        num_classes: Number of classes, at least 2 (a classifier needs 2).
        name: Short description of the source (for configs and reports).
        class_names: Optional class names, index-aligned.

    Raises:
        TypeError: ``images`` or ``labels`` is not a tensor.
        ValueError: Wrong shapes or dtypes, no examples, fewer than 2 classes, or labels
            outside ``[0, num_classes)``.
    """

    images: Tensor
    labels: Tensor
    num_classes: int
    name: str = "dataset"
    class_names: Optional[list[str]] = None

    def __post_init__(self) -> None:
        for what, value in (("images", self.images), ("labels", self.labels)):
            if not isinstance(value, Tensor):
                raise TypeError(f"{self.name}: {what} must be a torch.Tensor, got {type(value).__name__}")
        if self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if not self.images.is_floating_point():
            raise ValueError(f"{self.name}: images must be floating point (float32, values in [0, 1] or standardised), "
                             f"got {self.images.dtype}; scale integer pixels first (e.g. uint8 / 255)")
        if self.images.dtype != torch.float32:
            self.images = self.images.float()
        if self.labels.dim() != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )
        if self.labels.is_floating_point() or self.labels.is_complex() or self.labels.dtype == torch.bool:
            raise ValueError(f"{self.name}: labels must be integer class indices (int64), got {self.labels.dtype}")
        if self.labels.dtype != torch.int64:
            self.labels = self.labels.long()
        if self.images.shape[0] == 0:
            raise ValueError(f"{self.name}: the data set is empty")
        self.num_classes = as_integer(f"{self.name}: num_classes", self.num_classes)
        if self.num_classes < 2:
            raise ValueError(f"{self.name}: num_classes={self.num_classes}, but a classifier needs at least 2 classes")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
            raise ValueError(
                f"{self.name}: labels must lie in [0, {self.num_classes}), got [{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: Tensor, name: Optional[str] = None) -> "ImageDataset":
        """The examples at ``indices`` (``[M]`` int64), same classes."""
        return ImageDataset(self.images[indices], self.labels[indices], self.num_classes,
                            name or self.name, self.class_names)


#: Channel counts a channel axis usually has: grey, RGB, RGBA.
_CHANNEL_COUNTS = (1, 3, 4)


def _channels_first(images: np.ndarray) -> np.ndarray:
    """``[N, a, b, c]`` images as ``[N, C, H, W]``: guesses whether ``a`` or ``c`` is the channel axis.

    The layout is chosen by these tests in order, each deciding only when the two
    readings (channels-first ``C, H, W = a, b, c``; channels-last ``H, W, C = a, b, c``)
    differ in it:

    1. the channel axis has 1, 3 or 4 entries (grey, RGB, RGBA);
    2. the image is square (``[N, 4, 4, 3]`` is a 4x4 RGB image, not a 4-channel 4x3 one;
       ``[N, 3, 3, 1]`` a grey 3x3 one; ``[N, 3, 8, 8]`` an RGB 8x8 one);
    3. fewer channels (``[N, 4, 6, 3]`` is a 4x6 RGB image);
    4. channels-last (NumPy, Pillow and Keras order), e.g. for ``[N, 3, 3, 3]``.
    """
    _, a, b, c = images.shape

    def plausibility(last: bool) -> tuple[bool, bool, int, bool]:
        channels, height, width = (c, a, b) if last else (a, b, c)
        return channels in _CHANNEL_COUNTS, height == width, -channels, last

    return images.transpose(0, 3, 1, 2) if max((False, True), key=plausibility) else images


def _from_arrays(images: np.ndarray, labels: np.ndarray, name: str, class_names: Optional[list[str]] = None,
                 origin: Optional[str] = None, channels_first: Optional[bool] = None) -> ImageDataset:
    """Builds a dataset from ``[N,H,W]``/``[N,H,W,C]``/``[N,C,H,W]`` images and ``[N]`` integer labels.

    Args:
        images: uint8 pixels (divided by 255), or other integer or float values (see
            :func:`load_npz` for how they are brought to [0, 1]). The channel axis of
            4-D arrays is guessed by :func:`_channels_first`.
        labels: Class indices, at least 0, of at least 2 different classes.
        name: Name of the data set.
        class_names: Class names (their count is the number of classes); by default the
            number of classes is the largest label plus one.
        origin: The file (or folder) the arrays come from, named in error messages
            (default ``name``).
        channels_first: Whether 4-D images are ``[N, C, H, W]`` (``True``) or
            ``[N, H, W, C]`` (``False``); ``None`` guesses (:func:`_channels_first`).

    Raises:
        ValueError: Bad shapes or dtypes, no examples, fewer than 2 classes, negative
            labels or non-finite pixel values.
    """
    where = origin or name
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if channels_first is None:
            images = _channels_first(images)
        elif not channels_first:
            images = images.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{where}: images must have 3 or 4 dimensions, got shape {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError(f"{where}: the data set is empty (0 examples)")
    if 0 in images.shape[1:]:
        raise ValueError(f"{where}: the images hold no pixels (shape {images.shape} as [N, C, H, W])")
    if int(labels.min()) < 0:
        raise ValueError(f"{where}: labels must be class indices of at least 0, got {int(labels.min())}")
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError(f"{where}: all {labels.shape[0]} examples have label {int(present[0])}; "
                         "a classifier search needs at least 2 classes")
    if images.dtype == np.uint8:
        data = torch.from_numpy(images.astype(np.float32) / 255.0)
    elif np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer):
        with np.errstate(over="ignore"):  # values beyond float32's range become inf and are counted below
            data = torch.from_numpy(images.astype(np.float32))
        bad = int((~torch.isfinite(data)).sum())
        if bad:
            raise ValueError(f"{where}: {bad} of {data.numel()} pixel values are not finite (NaN or infinite"
                             f"{'' if images.dtype == np.float32 else ' as float32'}); remove or repair those images")
        low, top = float(data.min()), float(data.max())
        if low < 0.0:  # e.g. standardised data: map [min, max] linearly onto [0, 1]
            data = (data - low) / (top - low) if top > low else torch.zeros_like(data)
        elif top > 1.0:  # e.g. 0..255 stored as int32/float: bring to [0, 1]
            data = data / top
    else:
        raise ValueError(f"{where}: unsupported image dtype {images.dtype}")
    labels_t = torch.from_numpy(labels.astype(np.int64))
    num_classes = int(labels_t.max()) + 1 if class_names is None else len(class_names)
    return ImageDataset(data.contiguous(), labels_t, num_classes, name, class_names)


def load_digits() -> ImageDataset:
    """scikit-learn's bundled digits: 1797 grey 8x8 images, 10 classes, values scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # pixel values are 0..16
    return ImageDataset(torch.from_numpy(images[:, None]).contiguous(), torch.from_numpy(bunch.target.astype(np.int64)),
                        10, "digits", [str(i) for i in range(10)])


# --------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file (MNIST format), gzip-compressed or not.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not IDX (bad magic number, unknown type code or size
            mismatch), or a damaged or truncated gzip file.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        head = handle.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        # gzip reports a truncated file as EOFError and damaged data as zlib.error.
        what = "the gzip file is corrupt or truncated" if opener is gzip.open else "cannot read it"
        raise ValueError(f"{path}: {what} ({type(exc).__name__}: {exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {raw[:4]!r})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    body = raw[4 + 4 * ndim:]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(f"{path}: IDX header promises shape {shape} ({expected} bytes) but the body has {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


_IDX_IMAGES = r"images?.*idx3|idx3.*images?"
_IDX_LABELS = r"labels?.*idx1|idx1.*labels?"


def _find_idx_pair(path: str) -> tuple[str, str]:
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
        images = [n for n in names if re.search(_IDX_IMAGES, n)]
        labels = [n for n in names if re.search(_IDX_LABELS, n)]
        if len(images) != 1 or len(labels) != 1:
            raise ValueError(
                f"{path}: expected exactly one '*images*idx3*' and one '*labels*idx1*' file, found images={images} labels={labels}"
            )
        return os.path.join(path, images[0]), os.path.join(path, labels[0])
    base = os.path.basename(path)
    if not re.search(_IDX_IMAGES, base) and ("idx1" in base or "labels" in base):
        guess = os.path.join(os.path.dirname(path), base.replace("labels", "images").replace("idx1", "idx3"))
        hint = f" ({guess})" if guess != path and os.path.isfile(guess) else ""
        raise ValueError(f"{path} is an IDX labels file; give the images file{hint} ('*images*idx3*') "
                         "or the folder holding both")
    label_name = base.replace("images", "labels").replace("idx3", "idx1")
    label_path = os.path.join(os.path.dirname(path), label_name)
    if label_name == base:
        raise ValueError(f"{path}: cannot find the matching labels file: the name holds neither 'images' nor 'idx3' "
                         "(replaced by 'labels'/'idx1' to name it); give the folder holding both files")
    if not os.path.isfile(label_path):
        raise ValueError(f"{path}: cannot find the matching labels file (looked for {label_path})")
    return path, label_path


def load_idx_pair(path: str | os.PathLike) -> ImageDataset:
    """An MNIST-format data set from a folder or an images file (see module docstring).

    Raises:
        ValueError: No matching images/labels pair (e.g. ``path`` is the labels file), an
            unreadable file, or contents that are not ``[N, H, W]`` images with ``[N]`` labels.
    """
    images_path, labels_path = _find_idx_pair(os.fspath(path))
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        hint = " (1-D: is it a labels file?)" if images.ndim == 1 else ""
        raise ValueError(f"{images_path}: IDX images must be [N, H, W], got shape {images.shape}{hint}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{labels_path}: {labels.shape} labels for {images.shape[0]} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{labels_path}: IDX labels must be integers, got {labels.dtype}")
    return _from_arrays(images, labels.astype(np.int64), f"idx:{os.path.basename(images_path)}", origin=images_path)


# --------------------------------------------------------------------------- npz / folders


def load_npz(path: str | os.PathLike) -> ImageDataset:
    """A data set from a ``.npz`` with ``x``/``images`` and ``y``/``labels`` arrays.

    Images are ``[N, H, W]`` (grey) or 4-D; a 4-D array's channel axis is axis 1 or the
    last one, whichever holds 1, 3 or 4 entries; when both or neither do, the reading
    that makes the image square wins, then the one with fewer channels, then
    channels-last (so ``[N, 4, 4, 3]`` is 4x4 RGB, ``[N, 3, 8, 8]`` 8x8 RGB and
    ``[N, 3, 3, 3]`` 3x3 RGB, channels-last).

    Pixel values are brought to [0, 1] as follows: uint8 is divided by 255; any other
    integer or float array is kept as it is when all values lie in [0, 1], divided by its
    largest value when none is negative (e.g. 0..255 stored as float or int32), and
    mapped linearly from [min, max] onto [0, 1] when some are negative (e.g. standardised
    data; a constant array becomes 0). Labels are integer class indices of at least 0;
    the number of classes is the largest label plus one.

    Raises:
        ValueError: The file is unreadable, lacks the arrays, holds no examples, fewer
            than 2 classes, or NaN/infinite pixel values (counted in the message).
    """
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc
    if not hasattr(archive, "files"):  # np.load also reads a plain .npy array
        raise ValueError(f"{path}: not a .npz archive (holds a single array); save one with np.savez(path, x=..., y=...)")
    with archive:
        keys = set(archive.files)
        x_key = next((k for k in ("x", "images", "x_train") if k in keys), None)
        y_key = next((k for k in ("y", "labels", "y_train") if k in keys), None)
        if x_key is None or y_key is None:
            raise ValueError(f"{path}: expected arrays 'x' (or 'images') and 'y' (or 'labels'), found {sorted(keys)}")
        try:
            images, labels = archive[x_key], archive[y_key]
        except (OSError, ValueError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: cannot read arrays {x_key!r}/{y_key!r} ({exc})") from exc
    return _from_arrays(images, labels, f"npz:{os.path.basename(path)}", origin=path)


#: Pillow modes of grey images; the 16-bit (and 32-bit integer) ones are scaled by 65535.
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def _high_depth_to_float(image: Any, file: str) -> Any:
    """A 16-bit grey Pillow image (modes ``I;16*``, or ``I`` as older Pillow opens 16-bit
    PNGs) as a mode ``F`` image of values in [0, 1] (divided by 65535)."""
    from PIL import Image

    pixels = np.asarray(image)
    if image.mode == "I":
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0 or high > 65535:
            raise ValueError(f"{file}: 32-bit integer pixels (Pillow mode 'I') range over [{low}, {high}], "
                             "outside the 16-bit range 0..65535 they are scaled by; save 8- or 16-bit images")
    return Image.fromarray(pixels.astype(np.float32) / np.float32(65535.0), mode="F")


def load_image_folder(path: str | os.PathLike) -> ImageDataset:
    """A data set from ``path/<class>/<image files>`` (classes in sorted order).

    Hidden sub-folders and files (names starting with ``.``, e.g. ``.ipynb_checkpoints``)
    and files without an image extension are skipped. Every class folder must hold an
    image and there must be at least 2 of them.

    Pixel values: 8-bit images (``L``, ``RGB``, palette...) are divided by 255; 16-bit
    grey images (Pillow modes ``I;16``, ``I;16B``..., and ``I``, as older Pillow versions
    open 16-bit PNGs, whose values must then lie in 0..65535) are divided by 65535.
    Floating-point images (mode ``F``) are refused, since their value range is unknown
    (put such data in a ``.npz``). All images are grey (one channel) unless some image is
    in colour; then grey ones are repeated to 3 ``RGB`` channels (colour images are read
    with 8 bits per channel). Images of different sizes are resized (bilinear) to the
    most common size.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: No class folders, an empty class folder, a single class, an
            unreadable or unsupported image.
    """
    from PIL import Image

    path = os.fspath(path)
    classes = sorted(d for d in os.listdir(path) if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ValueError(f"{path}: an image folder needs one sub-folder per class; found none")
    files: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        folder = os.path.join(path, name)
        found = [(os.path.join(folder, f), index) for f in sorted(os.listdir(folder))
                 if not f.startswith(".") and f.lower().endswith(_IMAGE_EXTENSIONS)
                 and os.path.isfile(os.path.join(folder, f))]
        if not found:
            raise ValueError(f"{folder}: class folder {name!r} holds no image files ({', '.join(_IMAGE_EXTENSIONS)}); "
                             "remove it (or give it a name starting with '.') or add images")
        files += found
    if len(classes) < 2:
        raise ValueError(f"{path}: found only one class folder ({classes[0]!r}); a classifier search needs at least "
                         "2 classes (one sub-folder per class)")
    loaded = []
    for file, _ in files:
        try:
            with Image.open(file) as image:
                image.load()
                image = image.copy()
        except OSError as exc:
            raise ValueError(f"{file}: cannot read image ({exc})") from exc
        if image.mode == "F":
            raise ValueError(f"{file}: floating-point image (Pillow mode 'F') of unknown value range; save it with "
                             "8 or 16 bits per pixel, or put the data in a .npz")
        if image.mode in _HIGH_DEPTH_MODES:
            image = _high_depth_to_float(image, file)
        loaded.append(image)
    colour = any(im.mode not in _GREY_MODES for im in loaded)
    sizes = {im.size for im in loaded}
    if len(sizes) != 1:
        # Different sizes: bring all to the most common one now; prepare_splits resizes again later.
        target = max(sizes, key=lambda s: sum(im.size == s for im in loaded))
        loaded = [im if im.size == target else im.resize(target, Image.BILINEAR) for im in loaded]

    def pixels(image: Any) -> np.ndarray:
        """``[H, W, C]`` float32 in [0, 1]."""
        if image.mode == "F":  # 16-bit grey, already scaled
            grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[:, :, None]
            return np.repeat(grey, 3, axis=2) if colour else grey
        eight_bit = np.asarray(image.convert("RGB" if colour else "L"), dtype=np.uint8)
        return (eight_bit.reshape(eight_bit.shape[0], eight_bit.shape[1], -1).astype(np.float32) / 255.0)

    arrays = np.stack([pixels(im) for im in loaded])
    labels = np.array([label for _, label in files], dtype=np.int64)
    return _from_arrays(arrays, labels, f"folder:{os.path.basename(os.path.normpath(path))}", classes, origin=path,
                        channels_first=False)


def load_dataset(source: str) -> ImageDataset:
    """Loads ``"digits"`` or a path (IDX folder/file, ``.npz``, image folder).

    Raises:
        FileNotFoundError: ``source`` is not ``digits`` and no such path exists.
        ValueError: The path exists but is no supported format.
    """
    if source == "digits":
        return load_digits()
    path = os.path.expanduser(source)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"data source {source!r} is neither 'digits' nor an existing path (IDX folder/file, .npz, image folder)"
        )
    if os.path.isfile(path):
        if path.lower().endswith(".npz"):
            return load_npz(path)
        if "idx" in os.path.basename(path).lower():
            return load_idx_pair(path)
        raise ValueError(f"{path}: unsupported data file; give a .npz, an IDX images file, or a folder")
    names = [n for n in os.listdir(path) if not n.startswith(".")]
    if any("idx3" in n for n in names):
        return load_idx_pair(path)
    return load_image_folder(path)


# --------------------------------------------------------------------------- splits


@dataclass
class DataSplits:
    """Deterministic train / validation / test splits at one resolution, standardised.

    Attributes:
        train, val, test: The three splits.
        mean, std: Per-channel statistics of the training split (``[C]`` lists) used to
            standardise every split (the exported model expects inputs standardised the same way).
        info: Source, sizes, seed and resize description, for configs.
    """

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    mean: list[float]
    std: list[float]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


def _resize(images: Tensor, resolution: int) -> Tensor:
    if images.shape[-2:] == (resolution, resolution):
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


def _split_order(n: int, seed: int) -> Tensor:
    """The seeded permutation of ``n`` examples that the splits are cut from."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))


def prepare_splits(
    dataset: ImageDataset,
    resolution: int,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    limit: Optional[int] = None,
) -> DataSplits:
    """Resizes, splits (seeded permutation) and standardises a data set.

    Args:
        dataset: Loaded images in [0, 1].
        resolution: Side length every image is resized to (bilinear); an integer (also a
            NumPy integer) of at least 4.
        seed: Seed of the split permutation (same seed, same split).
        val_fraction, test_fraction: Shares of the validation and test splits.
        limit: Use only the first ``limit`` examples of the permutation (quick runs, tests);
            an integer of at least 3.

    Returns:
        The splits; ``train`` gets what validation and test leave.
    """
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum below 1")
    resolution = as_integer("resolution", resolution)
    if resolution < 4:
        raise ValueError(f"resolution must be an integer of at least 4, got {resolution!r}")
    order = _split_order(len(dataset), seed)
    if limit is not None:
        limit = as_integer("limit", limit)
        if limit < 3:
            raise ValueError(f"limit must be at least 3 examples, got {limit}")
        order = order[:limit]
    n = len(order)
    n_val = max(1, int(round(n * val_fraction)))
    n_test = max(1, int(round(n * test_fraction)))
    n_train = n - n_val - n_test
    if n_train < 2:
        # Two at least: BatchNorm cannot train on a batch of one.
        raise ValueError(f"{n} examples are too few to split into train/validation/test "
                         f"(it leaves {n_train} for training, and training needs 2)")
    images = _resize(dataset.images[order], resolution)
    labels = dataset.labels[order]
    train_images = images[:n_train]
    # Standardise with training statistics only, so validation/test leak nothing into the model.
    mean = train_images.mean(dim=(0, 2, 3))
    std = train_images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    images = ((images - mean[None, :, None, None]) / std[None, :, None, None]).contiguous()

    def part(lo: int, hi: int, tag: str) -> ImageDataset:
        return ImageDataset(images[lo:hi], labels[lo:hi], dataset.num_classes, f"{dataset.name}/{tag}", dataset.class_names)

    info = {
        "source": dataset.name,
        "original_size": list(dataset.resolution),
        "resolution": resolution,
        "resize": "bilinear (align_corners=False)" if dataset.resolution != (resolution, resolution) else "none",
        "in_channels": dataset.in_channels,
        "num_classes": dataset.num_classes,
        # Output index -> class (an image folder's sub-folder names); None: the labels themselves.
        "class_names": None if dataset.class_names is None else list(dataset.class_names),
        "seed": int(seed),
        "sizes": {"train": n_train, "val": n_val, "test": n_test},
        "mean": mean.tolist(),
        "std": std.tolist(),
    }
    return DataSplits(part(0, n_train, "train"), part(n_train, n_train + n_val, "val"),
                      part(n_train + n_val, n, "test"), mean.tolist(), std.tolist(), info)


def rest_split(dataset: ImageDataset, splits: DataSplits, limit: int) -> Optional[ImageDataset]:
    """The examples that ``prepare_splits(dataset, ..., limit=limit)`` left out, as one more test set.

    A run on the first ``limit`` examples of the permutation never sees the rest, so the
    rest measures accuracy on many more images than the ``test`` split (e.g. 8203 instead
    of 270 for MNIST's 10000 test images at ``limit=1797``).

    Args:
        dataset: The data set ``splits`` was prepared from (only its name and size are
            checked against ``splits``).
        splits: The result of :func:`prepare_splits` with ``limit``; its seed, resolution
            and training statistics are used, so the rest is resized and standardised alike.
        limit: The ``limit`` given to :func:`prepare_splits`.

    Returns:
        ``[N - limit, C, R, R]`` images with their labels, or ``None`` when nothing is left.
    """
    info = splits.info
    if info.get("source") != dataset.name or sum(info["sizes"].values()) != min(limit, len(dataset)):
        raise ValueError(f"the splits ({info.get('source')}, {sum(info['sizes'].values())} examples) were not "
                         f"prepared from {dataset.name} with limit={limit}")
    order = _split_order(len(dataset), info["seed"])[limit:]
    if len(order) == 0:
        return None
    mean, std = torch.tensor(splits.mean), torch.tensor(splits.std)
    images = (_resize(dataset.images[order], info["resolution"]) - mean[None, :, None, None]) / std[None, :, None, None]
    return ImageDataset(images.contiguous(), dataset.labels[order], dataset.num_classes, f"{dataset.name}/rest",
                        dataset.class_names)


def num_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`iterate_batches` yields for ``n`` examples: a last batch of
    one example joins the one before (BatchNorm cannot train on a batch of one)."""
    count = -(-n // batch_size)
    return count - 1 if batch_size > 1 and count > 1 and n % batch_size == 1 else count


def iterate_batches(
    dataset: ImageDataset, batch_size: int, generator: Optional[torch.Generator] = None, shuffle: bool = True
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yields ``(images [B, C, H, W], labels [B])`` batches; shuffled with ``generator`` if asked.

    The last batch may be smaller, or one larger: a single example left over joins the
    batch before it (BatchNorm cannot train on a batch of one); :func:`num_batches` counts
    them. Shuffling draws from ``generator`` only (not the global RNG), so a checkpointed
    generator state reproduces the order exactly.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    count = num_batches(n, batch_size)
    for k in range(count):
        # The last batch runs to the end: it takes a single left-over example (see num_batches).
        index = order[k * batch_size:n if k == count - 1 else (k + 1) * batch_size]
        yield dataset.images[index], dataset.labels[index]
