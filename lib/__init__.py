"""Intriguing Properties, Executed: the library behind the book.

Flow: data -> models/train -> zoo -> attack -> experiments (transfer, units, spectral) -> chapters.
"""
import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"

__all__ = ["ROOT", "DATA_DIR", "setup_torch", "keep_freed_memory", "one_thread"]


def setup_torch(seed: int = 0) -> None:
    """One thread, flushed denormals, a fixed seed: the same numbers on any machine, and fast on a busy one.

    With one thread the floating-point reductions run in one order everywhere, so tables reproduce
    exactly; on a loaded 2-core machine two threads were also measured 3-50x slower, not faster.
    """
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    keep_freed_memory()


def keep_freed_memory(limit: int = 32 << 20) -> None:
    """With glibc, serve blocks up to `limit` bytes from the heap and keep freed memory there (else no-op).

    The batched attack allocates and frees 0.3-3 MB tensors thousands of times. By default glibc maps
    such blocks fresh from the OS, page-faulting on first use, until its adaptive threshold catches
    up; that made the same attack 10-40% slower and its timings erratic from run to run.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters, from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, limit)
    libc.mallopt(m_trim_threshold, 4 * limit)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch, and numpy's/scipy's BLAS where threadpoolctl is installed, on one thread; restore after.

    Small alternating torch and BLAS calls (per-image L-BFGS-B, batched small SVDs) were measured
    several to 60 times slower with two threads on a busy 2-core machine: idle pool threads spin.
    """
    import torch

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it only torch is limited
        threadpool_limits = None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=1):
                yield
    finally:
        torch.set_num_threads(threads)
