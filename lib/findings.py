"""'What we found': each claim of the paper, the book's number beside it, and a verdict computed in code.

Every chapter (and the intro and the paper-vs-book page) ends with `findings.table(...)` of the list that
its lib module's `findings(...)` function computes from the chapter's results.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from pandas.io.formats.style import Styler

from .tables import show

VERDICTS = {True: "holds", False: "does not hold", None: "not tested"}


@dataclass(frozen=True)
class Finding:
    """One claim of the paper, its number or statement there, ours, and whether the claim holds here."""
    claim: str
    paper: str
    ours: str
    holds: bool | None  # None: the book cannot test it (say why in `note`)
    note: str = ""

    def __post_init__(self) -> None:
        if self.holds is None and not self.note:
            raise ValueError(f"a claim left untested needs a note saying why: {self.claim!r}")


def verdict(finding: Finding) -> str:
    """'holds', 'does not hold' or 'not tested', with the note after a colon where there is one."""
    word = VERDICTS[finding.holds]
    return f"{word}: {finding.note}" if finding.note else word


def table(findings: Sequence[Finding]) -> Styler:
    """The findings as a table (claim, paper, book, verdict) without an index column, for a chapter's end."""
    if not findings:
        raise ValueError("no findings to show")
    frame = pd.DataFrame([{"claim": f.claim, "paper": f.paper, "book": f.ours, "verdict": verdict(f)}
                          for f in findings])
    return show(frame).set_properties(**{"text-align": "left"})


def count(findings: Sequence[Finding]) -> dict[str, int]:
    """How many claims hold, do not hold, and are not tested."""
    return {word: sum(f.holds is value for f in findings) for value, word in VERDICTS.items()}
