import gzip
import hashlib
import shutil

import pytest
import torch

from lib import data


def test_shapes_ranges_and_labels():
    for train, n in ((True, 60_000), (False, 10_000)):
        images, labels = data.load_mnist(train)
        assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert images.min() == 0.0 and images.max() == 1.0
        assert set(labels.unique().tolist()) == set(range(10))


def test_matches_published_statistics():
    images, labels = data.load_mnist(True)
    # Provenance README: class counts and mean pixel value of the training set.
    assert torch.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(images.mean().item() - 0.1307) < 5e-5


def test_decompressed_files_have_published_md5():
    expected = {}
    for line in (data.BUNDLED_DIR / "MD5SUMS.txt").read_text().split("\n"):
        if line.strip():
            digest, name = line.split()
            expected[name] = digest
    assert len(expected) == 4
    for name, digest in expected.items():
        payload = gzip.decompress((data.BUNDLED_DIR / f"{name}.gz").read_bytes())
        assert hashlib.md5(payload).hexdigest() == digest


def test_halves_are_disjoint_and_cover_training_set():
    p1, p2 = data.split_halves()
    assert len(p1) == len(p2) == 30_000
    assert len(set(p1.tolist()) & set(p2.tolist())) == 0
    assert torch.equal(torch.cat([p1, p2]).sort().values, torch.arange(60_000))
    q1, _ = data.split_halves()
    assert torch.equal(p1, q1)
    r1, _ = data.split_halves(seed=1)
    assert not torch.equal(p1, r1)


def test_fixed_subset_is_seeded():
    a, la = data.fixed_subset(100, train=False, seed=3)
    b, lb = data.fixed_subset(100, train=False, seed=3)
    assert torch.equal(a, b) and torch.equal(la, lb) and a.shape == (100, 1, 28, 28)
    with pytest.raises(ValueError, match="n must be"):
        data.fixed_subset(0)


def test_gaussian_noise_has_stated_stddev():
    x = torch.full((200, 1, 28, 28), 0.5)
    noisy, noise = data.gaussian_noise(x, 0.1, seed=0, clip=False)
    assert abs(noise.std().item() - 0.1) < 0.002
    assert torch.allclose(noisy - x, noise, atol=1e-6)
    with pytest.raises(ValueError, match="stddev"):
        data.gaussian_noise(x, -1.0)


@pytest.fixture
def corrupted_copy(tmp_path, monkeypatch):
    bundled = tmp_path / "mnist"
    shutil.copytree(data.BUNDLED_DIR, bundled)
    monkeypatch.setattr(data, "BUNDLED_DIR", bundled)
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    data._load.cache_clear()
    yield bundled
    data._load.cache_clear()


def test_corrupted_file_is_named(corrupted_copy):
    target = corrupted_copy / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(target.read_bytes()))
    payload[100] ^= 0xFF
    target.chmod(0o644)
    target.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz"):
        data.load_mnist(False)
    assert not list((corrupted_copy.parent / "cache").rglob("*.tmp")), "no half-written file left behind"


def test_truncated_gzip_is_named(corrupted_copy):
    target = corrupted_copy / "t10k-images-idx3-ubyte.gz"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz"):
        data.load_mnist(False)


def test_missing_file_is_named(corrupted_copy):
    (corrupted_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="missing.*train-labels-idx1-ubyte.gz"):
        data.load_mnist(True)
