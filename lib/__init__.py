"""Intriguing Properties, Executed: the library behind the book.

Flow: data -> models/train -> zoo -> attack -> experiments (transfer, units, spectral) -> chapters.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"

__all__ = ["ROOT", "DATA_DIR", "setup_torch", "one_thread"]


def setup_torch(seed: int = 0) -> None:
    """One thread, flushed denormals, a fixed seed: the same numbers on any machine, and fast on a busy one.

    With one thread the floating-point reductions run in one order everywhere, so tables reproduce
    exactly; on a loaded 2-core machine two threads were also measured 3-50x slower, not faster.
    """
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)


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
