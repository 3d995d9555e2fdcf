"""Awkward inputs to the data loaders: each gives the right values or a clear error naming the file."""

import gzip
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from hwnas.data import ImageDataset, load_dataset, load_idx_pair, prepare_splits, read_idx


def _write_idx(path, array, code=0x08, compress=True):
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as handle:
        handle.write(header + array.tobytes())


def _two_classes(root, values=((30, 31), (200, 201)), size=(5, 5)):
    """``root/a`` and ``root/b`` with two 8-bit grey PNGs each."""
    for name, pair in zip("ab", values):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k, value in enumerate(pair):
            Image.fromarray(np.full(size, value, dtype=np.uint8)).save(root / name / f"{k}.png")


# ----------------------------------------------------------------------------- 1. 16-bit images


def test_16_bit_grey_pngs_are_scaled_by_65535_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {name: [rng.integers(0, 65536, (6, 6), dtype=np.uint16) for _ in range(2)] for name in "ab"}
    for name, pair in arrays.items():
        (tmp_path / name).mkdir()
        for k, array in enumerate(pair):
            image = Image.fromarray(array)
            assert image.mode == "I;16"
            image.save(tmp_path / name / f"{k}.png")
    data = load_dataset(str(tmp_path))
    expected = np.stack([a for name in "ab" for a in arrays[name]]).astype(np.float64) / 65535
    assert tuple(data.images.shape) == (4, 1, 6, 6) and data.labels.tolist() == [0, 0, 1, 1]
    assert np.allclose(data.images[:, 0].numpy(), expected, atol=1e-6)
    assert float(data.images.max()) < 1.0  # not clipped to white


def test_16_bit_and_8_bit_and_colour_images_mix_on_one_scale(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((4, 4), 13107, dtype=np.uint16)).save(tmp_path / "a" / "deep.png")  # 0.2
    Image.fromarray(np.full((4, 4), 51, dtype=np.uint8)).save(tmp_path / "a" / "grey.png")  # 0.2
    Image.fromarray(np.full((4, 4), 255, dtype=np.uint8)).save(tmp_path / "b" / "white.png")
    grey = load_dataset(str(tmp_path))
    assert torch.allclose(grey.images, torch.tensor([0.2, 0.2, 1.0])[:, None, None, None].expand(3, 1, 4, 4))
    colour = np.zeros((4, 4, 3), dtype=np.uint8)
    colour[..., 0] = 255
    Image.fromarray(colour).save(tmp_path / "b" / "red.png")
    mixed = load_dataset(str(tmp_path))
    assert tuple(mixed.images.shape) == (4, 3, 4, 4) and mixed.labels.tolist() == [0, 0, 1, 1]
    assert torch.allclose(mixed.images[0], torch.full((3, 4, 4), 0.2))  # 16-bit grey repeated to RGB
    assert torch.allclose(mixed.images[2, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_32_bit_integer_images_in_16_bit_range_are_scaled_others_and_float_images_refused(tmp_path):
    _two_classes(tmp_path)
    # Pillow opens files by their content: a TIFF named .png gives modes 'I' (int32) and 'F'.
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.int32)
    Image.fromarray(values).resize((5, 5), Image.NEAREST).save(tmp_path / "a" / "2.png", format="TIFF")
    data = load_dataset(str(tmp_path))
    corners = data.images[2, 0, [0, 0, 4, 4], [0, 4, 0, 4]]
    assert torch.allclose(corners, torch.tensor([0, 1000, 40000, 65535]) / 65535.0)
    Image.fromarray(np.full((5, 5), 70000, dtype=np.int32)).save(tmp_path / "a" / "2.png", format="TIFF")
    with pytest.raises(ValueError, match=r"2\.png: 32-bit integer pixels .*\[70000, 70000\].*0\.\.65535"):
        load_dataset(str(tmp_path))
    Image.fromarray(np.full((5, 5), 0.5, dtype=np.float32)).save(tmp_path / "a" / "2.png", format="TIFF")
    with pytest.raises(ValueError, match=r"2\.png: floating-point image \(Pillow mode 'F'\)"):
        load_dataset(str(tmp_path))


# ----------------------------------------------------------------------------- 2. non-finite values


def test_nan_and_inf_pixels_in_npz_are_refused_with_their_count(tmp_path):
    x = np.random.default_rng(0).random((4, 5, 5)).astype(np.float32)
    x[0, 0, 0] = np.nan
    x[1, 2, 2] = np.inf
    x[3, 4, 4] = -np.inf
    path = tmp_path / "bad.npz"
    np.savez(path, x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": 3 of 100 pixel values are not finite"):
        load_dataset(str(path))
    # float64 values beyond float32's range overflow to inf when converted, and are counted too
    np.savez(path, x=np.full((4, 5, 5), 1e300), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="100 of 100 pixel values are not finite"):
        load_dataset(str(path))


# ----------------------------------------------------------------------------- 3. folders and classes


def test_hidden_folders_and_files_are_skipped(tmp_path):
    _two_classes(tmp_path)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / ".ipynb_checkpoints" / "0.png")
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not a PNG")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"junk")
    data = load_dataset(str(tmp_path))
    assert data.class_names == ["a", "b"] and data.num_classes == 2 and len(data) == 4


def test_an_empty_class_folder_is_refused_by_name(tmp_path):
    _two_classes(tmp_path)
    (tmp_path / "aa").mkdir()
    (tmp_path / "aa" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "aa")) + r": class folder 'aa' holds no image files"):
        load_dataset(str(tmp_path))


def test_a_single_class_is_refused_in_every_format(tmp_path):
    (tmp_path / "img" / "only").mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((5, 5), k, dtype=np.uint8)).save(tmp_path / "img" / "only" / f"{k}.png")
    with pytest.raises(ValueError, match=r"found only one class folder \('only'\); a classifier search needs at least 2"):
        load_dataset(str(tmp_path / "img"))
    path = tmp_path / "one.npz"
    np.savez(path, x=np.zeros((5, 4, 4), dtype=np.uint8), y=np.full(5, 3))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": all 5 examples have label 3; .*at least 2 classes"):
        load_dataset(str(path))
    (tmp_path / "idx").mkdir()
    _write_idx(tmp_path / "idx" / "x-images-idx3-ubyte.gz", np.zeros((4, 3, 3), dtype=np.uint8))
    _write_idx(tmp_path / "idx" / "x-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"x-images-idx3-ubyte\.gz: all 4 examples have label 0"):
        load_dataset(str(tmp_path / "idx"))
    with pytest.raises(ValueError, match="a classifier needs at least 2 classes"):
        ImageDataset(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.int64), 1)


# ----------------------------------------------------------------------------- 4. channel layout


@pytest.mark.parametrize("shape, channels_last", [
    ((5, 4, 4, 3), True),    # 4x4 RGB, not 4 channels of 4x3
    ((5, 3, 3, 1), True),    # 3x3 grey, not 3 channels of 3x1
    ((5, 6, 6, 3), True),
    ((5, 28, 28, 1), True),
    ((5, 4, 6, 3), True),    # 4x6 RGB: neither square, fewer channels
    ((5, 3, 3, 3), True),    # fully ambiguous: channels-last
    ((5, 3, 8, 8), False),
    ((5, 1, 4, 4), False),
    ((5, 3, 4, 4), False),   # 4x4 RGB, channels-first
    ((5, 1, 3, 3), False),
    ((5, 3, 6, 4), False),   # 6x4 RGB, channels-first
])
def test_channel_axis_guess(tmp_path, shape, channels_last):
    x = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) % 256
    x = x.astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(shape[0]) % 2)
    data = load_dataset(str(tmp_path / "d.npz"))
    expected = x.transpose(0, 3, 1, 2) if channels_last else x
    assert tuple(data.images.shape) == expected.shape
    assert torch.equal(data.images, torch.from_numpy(expected.astype(np.float32) / 255.0))


# ----------------------------------------------------------------------------- 5. empty, corrupt, wrong files


def test_an_empty_npz_says_it_is_empty(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 8, 8), dtype=np.uint8), y=np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r": the data set is empty \(0 examples\)"):
        load_dataset(str(path))
    np.savez(path, x=np.zeros((3, 8, 8), dtype=np.uint8), y=np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=r"3 images but 0 labels"):
        load_dataset(str(path))


def test_a_corrupt_or_truncated_gzip_idx_file_is_named(tmp_path):
    good = tmp_path / "good-images-idx3-ubyte.gz"
    _write_idx(good, (np.arange(4 * 6 * 6) % 256).astype(np.uint8).reshape(4, 6, 6))
    raw = good.read_bytes()
    truncated = tmp_path / "cut-images-idx3-ubyte.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=re.escape(str(truncated)) + ": the gzip file is corrupt or truncated"):
        read_idx(truncated)
    damaged = tmp_path / "bad-images-idx3-ubyte.gz"
    flipped = bytearray(raw)
    flipped[-6] ^= 0xFF  # inside the CRC-32 trailer
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=re.escape(str(damaged)) + ": the gzip file is corrupt or truncated"):
        read_idx(damaged)


def test_a_labels_file_given_as_the_data_says_so(tmp_path):
    images = (np.arange(4 * 3 * 3) % 256).astype(np.uint8).reshape(4, 3, 3)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 0, 1], dtype=np.uint8), compress=False)
    labels_path = tmp_path / "t10k-labels-idx1-ubyte"
    with pytest.raises(ValueError, match=re.escape(str(labels_path)) + r" is an IDX labels file; give the images "
                       r"file \(" + re.escape(str(tmp_path / "t10k-images-idx3-ubyte")) + r"\)"):
        load_dataset(str(labels_path))
    assert load_idx_pair(tmp_path / "t10k-images-idx3-ubyte").labels.tolist() == [0, 1, 0, 1]


# ----------------------------------------------------------------------------- 6. minor


def test_prepare_splits_takes_numpy_integers_but_not_bools_or_floats(tmp_path):
    data = load_dataset("digits")
    splits = prepare_splits(data, np.int64(8), seed=np.int64(1), limit=np.int64(100))
    assert tuple(splits.train.images.shape[1:]) == (1, 8, 8) and sum(splits.info["sizes"].values()) == 100
    assert type(splits.info["resolution"]) is int
    json.dumps(splits.info)
    for bad in (True, 8.0, np.float64(8), np.bool_(True)):
        with pytest.raises(ValueError, match="resolution must be an integer"):
            prepare_splits(data, bad)
    with pytest.raises(ValueError, match="limit must be an integer"):
        prepare_splits(data, 8, limit=100.0)


def test_image_dataset_checks_dtypes():
    images = torch.rand(4, 1, 4, 4)
    with pytest.raises(ValueError, match="labels must be integer class indices.*float32"):
        ImageDataset(images, torch.tensor([0.0, 1.0, 0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="labels must be integer class indices.*bool"):
        ImageDataset(images, torch.tensor([False, True, False, True]), 2)
    with pytest.raises(ValueError, match=r"images must be floating point .*uint8.*uint8 / 255"):
        ImageDataset((images * 255).to(torch.uint8), torch.tensor([0, 1, 0, 1]), 2)
    converted = ImageDataset(images.double(), torch.tensor([0, 1, 0, 1], dtype=torch.int32), 2)
    assert converted.images.dtype == torch.float32 and converted.labels.dtype == torch.int64
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        ImageDataset(images.numpy(), torch.tensor([0, 1, 0, 1]), 2)


def test_float_pixels_end_in_0_1_by_a_documented_rule(tmp_path):
    labels = np.array([0, 1, 0, 1])
    path = tmp_path / "d.npz"
    normal = np.random.default_rng(0).standard_normal((4, 5, 5)).astype(np.float32)
    np.savez(path, x=normal, y=labels)
    data = load_dataset(str(path)).images[:, 0].numpy()
    expected = (normal.astype(np.float64) - normal.min()) / (normal.max() - normal.min())
    assert np.allclose(data, expected, atol=1e-6) and data.min() == 0.0 and data.max() == 1.0
    unit = np.random.default_rng(1).random((4, 5, 5)).astype(np.float32)  # already in [0, 1]: unchanged
    np.savez(path, x=unit, y=labels)
    assert np.array_equal(load_dataset(str(path)).images[:, 0].numpy(), unit)
    counts = np.random.default_rng(2).integers(0, 251, (4, 5, 5)).astype(np.float32)  # non-negative: / max
    np.savez(path, x=counts, y=labels)
    assert np.allclose(load_dataset(str(path)).images[:, 0].numpy(), counts / counts.max())
    pixels = np.random.default_rng(3).integers(0, 256, (4, 5, 5), dtype=np.uint8)  # uint8: / 255
    np.savez(path, x=pixels, y=labels)
    assert np.array_equal(load_dataset(str(path)).images[:, 0].numpy(), pixels.astype(np.float32) / 255.0)
    np.savez(path, x=np.full((4, 5, 5), -2.0), y=labels)  # constant and negative: 0
    assert float(load_dataset(str(path)).images.abs().max()) == 0.0
