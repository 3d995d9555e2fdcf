import gzip

import numpy as np
import pytest
import torch

from hwnas.data import iterate_batches, load_dataset, num_batches, prepare_splits, read_idx, rest_split


def test_digits_are_builtin_8x8_and_resized_deterministically():
    digits = load_dataset("digits")
    assert tuple(digits.images.shape) == (1797, 1, 8, 8) and digits.num_classes == 10
    assert float(digits.images.min()) == 0.0 and float(digits.images.max()) == 1.0
    a = prepare_splits(digits, 16, seed=1)
    b = prepare_splits(digits, 16, seed=1)
    c = prepare_splits(digits, 16, seed=2)
    assert tuple(a.train.images.shape[1:]) == (1, 16, 16)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert torch.equal(a.test.labels, b.test.labels) and torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.test.labels, c.test.labels)
    assert abs(float(a.train.images.mean())) < 1e-4  # standardised with training statistics


def test_splits_are_disjoint():
    data = load_dataset("digits")
    data.images = torch.arange(len(data), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 8, 8).contiguous()
    s = prepare_splits(data, 8, seed=0)
    ids = [set(torch.unique(part.images[:, 0, 0, 0]).tolist()) for part in (s.train, s.val, s.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])


def test_rest_split_is_every_example_the_limited_splits_left_out_standardised_alike():
    data = load_dataset("digits")
    # Each image holds its own index, so the examples can be told apart after standardising.
    data.images = torch.arange(len(data), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 8, 8).contiguous()
    s = prepare_splits(data, 8, seed=3, limit=500)
    rest = rest_split(data, s, 500)
    mean, std = s.mean[0], s.std[0]

    def ids(part):
        return [round(v) for v in (part.images[:, 0, 0, 0] * std + mean).tolist()]

    used = ids(s.train) + ids(s.val) + ids(s.test)
    left = ids(rest)
    assert len(used) == 500 and len(left) == len(data) - 500
    assert sorted(used + left) == list(range(len(data)))
    assert rest.labels.tolist() == data.labels[left].tolist()
    assert rest_split(data, prepare_splits(data, 8, seed=3, limit=len(data)), len(data)) is None
    # At another resolution the rest is resized like the splits: the same images, the same values.
    bigger = prepare_splits(data, 12, seed=3, limit=500)
    rest12 = rest_split(data, bigger, 500)
    assert tuple(rest12.images.shape[1:]) == (1, 12, 12)
    assert sorted(round(v) for v in (rest12.images[:, 0, 5, 5] * bigger.std[0] + bigger.mean[0]).tolist()) == sorted(left)
    with pytest.raises(ValueError, match="limit=400"):
        rest_split(data, s, 400)


def _write_idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_idx_folder_npz_and_image_folder(tmp_path):
    images = (np.arange(6 * 5 * 5) % 256).astype(np.uint8).reshape(6, 5, 5)
    labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8)
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images, 0x08)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels, 0x08)
    assert np.array_equal(read_idx(folder / "t10k-images-idx3-ubyte.gz"), images)
    idx = load_dataset(str(folder))
    assert tuple(idx.images.shape) == (6, 1, 5, 5) and idx.labels.tolist() == labels.tolist()
    assert torch.allclose(idx.images[0, 0], torch.from_numpy(images[0] / 255.0).float())
    same = load_dataset(str(folder / "t10k-images-idx3-ubyte.gz"))
    assert torch.equal(same.images, idx.images)

    np.savez(tmp_path / "d.npz", x=np.random.rand(4, 6, 6, 3).astype(np.float32), y=np.array([0, 1, 1, 0]))
    npz = load_dataset(str(tmp_path / "d.npz"))
    assert tuple(npz.images.shape) == (4, 3, 6, 6) and npz.num_classes == 2

    from PIL import Image

    for name, value in (("cat", 30), ("dog", 200)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((7, 7), value + k, dtype=np.uint8)).save(tmp_path / "img" / name / f"{k}.png")
    pictures = load_dataset(str(tmp_path / "img"))
    assert pictures.class_names == ["cat", "dog"] and pictures.labels.tolist() == [0, 0, 1, 1]
    assert float(pictures.images[2, 0, 0, 0]) == pytest.approx(200 / 255)


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="'nowhere' is neither 'digits' nor an existing path"):
        load_dataset("nowhere")
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported data file"):
        load_dataset(str(tmp_path / "x.txt"))
    np.savez(tmp_path / "wrong.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="expected arrays 'x'"):
        load_dataset(str(tmp_path / "wrong.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="one sub-folder per class"):
        load_dataset(str(tmp_path / "empty"))


def test_iterate_batches_covers_every_example_once():
    data = load_dataset("digits").subset(torch.arange(50))
    seen = torch.cat([y for _, y in iterate_batches(data, 16, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == sorted(data.labels.tolist()) and len(seen) == 50


@pytest.mark.parametrize("n, batch, sizes", [(50, 16, [16, 16, 16, 2]), (49, 16, [16, 16, 17]), (48, 16, [16, 16, 16]),
                                             (1, 16, [1]), (17, 16, [17]), (5, 1, [1, 1, 1, 1, 1])])
def test_a_left_over_single_example_joins_the_batch_before(n, batch, sizes):
    # Hand-counted sizes: a trailing batch of one would break BatchNorm in training mode.
    data = load_dataset("digits").subset(torch.arange(n))
    got = [len(y) for _, y in iterate_batches(data, batch, torch.Generator().manual_seed(0))]
    assert got == sizes and num_batches(n, batch) == len(sizes)
