"""MNIST from the bundled IDX files (checksummed), the paper's P1/P2 halves, Gaussian noise."""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from . import DATA_DIR

BUNDLED_DIR = DATA_DIR / "mnist"
CACHE_DIR = DATA_DIR / "cache"  # decompressed copies for torchvision; git-ignored
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(RuntimeError):
    """A data file is missing or corrupted."""


def _expected_md5() -> dict[str, str]:
    sums = {}
    for line in (BUNDLED_DIR / "MD5SUMS.txt").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary shared data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prepare_raw(raw_dir: Path) -> None:
    """Decompress the bundled .gz files into torchvision's raw folder, checking each md5."""
    expected = _expected_md5()
    for name in FILES[True] + FILES[False]:
        target = raw_dir / name
        if target.exists() and _md5(target) == expected[name]:
            continue
        source = BUNDLED_DIR / f"{name}.gz"
        if not source.exists():
            raise DataError(f"MNIST file missing: {source}")
        try:
            payload = gzip.decompress(source.read_bytes())
        except (OSError, EOFError) as err:
            raise DataError(f"MNIST file corrupted (not a valid gzip): {source}: {err}") from err
        digest = hashlib.md5(payload).hexdigest()
        if digest != expected[name]:
            raise DataError(
                f"MNIST file corrupted: {source} decompresses to md5 {digest}, expected {expected[name]}"
            )
        atomic_write_bytes(target, payload)


def _torchvision_mnist(train: bool):
    from torchvision.datasets import MNIST

    if (BUNDLED_DIR / "MD5SUMS.txt").exists():
        _prepare_raw(CACHE_DIR / "MNIST" / "raw")
        return MNIST(str(CACHE_DIR), train=train, download=False)
    # No bundled copy (e.g. a reader's partial checkout in Colab): torchvision's own download.
    return MNIST(str(CACHE_DIR), train=train, download=True)


@lru_cache(maxsize=2)
def _load(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ds = _torchvision_mnist(train)
    images = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)
    labels = ds.targets.to(torch.int64)
    return images, labels


def load_mnist(train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images float32 [N,1,28,28] in [0,1] and labels int64 [N] (60,000 train / 10,000 test)."""
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}")
    images, labels = _load(train)
    return images.clone(), labels.clone()


def split_halves(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's P1 and P2: indices of two disjoint 30,000-image halves of the training set."""
    perm = torch.randperm(60_000, generator=torch.Generator().manual_seed(seed))
    return perm[:30_000].sort().values, perm[30_000:].sort().values


def subset_indices(n: int, train: bool = True, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded subset of `n` images of the training (60,000) or test (10,000) set."""
    total = 60_000 if train else 10_000
    if not isinstance(n, int) or not 0 < n <= total:
        raise ValueError(f"n must be in 1..{total}, got {n!r}")
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def fixed_subset(n: int, train: bool = True, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of `n` images (and labels) from the training or test set."""
    idx = subset_indices(n, train, seed)
    images, labels = load_mnist(train)
    return images[idx], labels[idx]


def gaussian_noise(
    x: torch.Tensor, stddev: float, seed: int = 0, clip: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x + noise, noise) with noise ~ N(0, stddev^2), seeded; clipped to [0,1] if `clip`."""
    if stddev < 0:
        raise ValueError(f"stddev must be non-negative, got {stddev}")
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype) * stddev
    noisy = x + noise
    return (noisy.clamp(0.0, 1.0) if clip else noisy), noise
