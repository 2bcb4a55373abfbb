"""What "imperceptible" means in this book: a perturbation measured in the grey levels of an 8-bit image.

The paper calls its perturbations imperceptible without a measure. The book uses one, stated here and used
wherever a page calls a perturbation visible or not: per image, the largest change of any pixel and the
RMS change (the paper's distortion), both in grey levels, 1/255 of the pixel range being one level, the
quantisation step of the 8-bit images people look at. The words:

- "invisible": the RMS change is below one grey level (single pixels may change by more; the largest
  change is reported beside it);
- "visible": the RMS change is one grey level or more.

The threshold is a convention, not a measurement of human vision: one grey level is the smallest step an
8-bit image holds, and the book's MNIST figures show RMS changes of many levels as visible blotches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

GREY_LEVELS = 255  # an 8-bit image: one grey level is 1/255 of the pixel range
INVISIBLE_RMS = 1.0  # grey levels: an RMS change below this is called invisible
WORDS = ("invisible", "visible")
RULE = (f"invisible: an RMS change below {INVISIBLE_RMS:g} grey level (1/255 of the range, the step between two "
        "values of an 8-bit image); visible: otherwise")


@dataclass(frozen=True)
class Visibility:
    """Per image: the largest and the RMS pixel change in grey levels, and the word the rule gives."""

    largest: np.ndarray  # [N] max_i |r_i| x 255
    rms: np.ndarray  # [N] sqrt(mean r_i^2) x 255 (the paper's distortion in grey levels)
    words: tuple[str, ...]  # [N] one of WORDS

    def count(self, word: str) -> int:
        """How many images the rule calls `word`."""
        if word not in WORDS:
            raise ValueError(f"word must be one of {WORDS}, got {word!r}")
        return sum(w == word for w in self.words)

    def sentence(self) -> str:
        """'largest change: median X grey levels; RMS: median Y; the rule calls a of N visible, ...'."""
        counts = ", ".join(f"{self.count(w)} {w}" for w in WORDS if self.count(w))
        return (f"largest pixel change: median {np.median(self.largest):.1f} grey levels (of 255); RMS change: "
                f"median {np.median(self.rms):.2f} grey levels; by the book's rule, of {len(self.words)} images: "
                f"{counts}")


def word(largest: float, rms: float) -> str:
    """The rule's word for one perturbation, given its largest and RMS change in grey levels."""
    if not (np.isfinite(largest) and np.isfinite(rms) and 0 <= rms <= largest + 1e-9):
        raise ValueError(f"need finite changes with 0 <= rms <= largest, got largest={largest!r}, rms={rms!r}")
    return "invisible" if rms < INVISIBLE_RMS else "visible"


def visibility(x: Tensor, x_adv: Tensor) -> Visibility:
    """The book's measure of how visible x_adv - x is, per image (x, x_adv: [N,...] in [0,1])."""
    if not isinstance(x, Tensor) or not isinstance(x_adv, Tensor) or x.shape != x_adv.shape or x.dim() < 2:
        raise ValueError(f"x and x_adv must be batches of the same shape, got {tuple(getattr(x, 'shape', ()))} "
                         f"and {tuple(getattr(x_adv, 'shape', ()))}")
    r = (x_adv.detach().double() - x.detach().double()).flatten(1) * GREY_LEVELS
    if not torch.isfinite(r).all():
        raise ValueError("x and x_adv must be finite")
    largest = r.abs().amax(1).cpu().numpy()
    rms = r.pow(2).mean(1).sqrt().cpu().numpy()
    return Visibility(largest, rms, tuple(word(float(a), float(b)) for a, b in zip(largest, rms)))
