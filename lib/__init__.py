"""Intriguing Properties, Executed: the library behind the book.

Flow: data -> models/train -> zoo -> attack -> experiments (transfer, units, spectral) -> chapters.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"

__all__ = ["ROOT", "DATA_DIR", "setup_torch"]


def setup_torch(seed: int = 0) -> None:
    """One thread, flushed denormals, a fixed seed: the same numbers on any machine, and fast on a busy one.

    With one thread the floating-point reductions run in one order everywhere, so tables reproduce
    exactly; on a loaded 2-core machine two threads were also measured 3-50x slower, not faster.
    """
    import torch

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
