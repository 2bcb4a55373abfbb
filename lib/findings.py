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

# How far the book's number may be from the paper's for the two to agree: one tolerance per kind of number,
# used by every page that compares with the paper (chapters 1 and 2, the paper-vs-book page, the intro).
ERROR_PP = 0.5  # a model's error on a whole data set (Tables 1 and 3; sampling error 0.3 pp or less), in pp
SUBSET_ERROR_PP = 5.0  # an error measured on 1,000 images (transfer, noise: one standard error up to 1.6 pp), in pp
DISTORTION_FACTOR = 1.15  # a distortion: book / paper within [1 / f, f]
BOUND_FACTOR = 1.10  # an upper bound on a Lipschitz constant: book / paper within [1 / f, f]


def within_factor(book: float, paper: float, factor: float) -> bool:
    """Whether book / paper lies in [1 / factor, factor] (both 0 counts as equal)."""
    if paper == 0:
        return book == 0
    return 1 / factor <= book / paper <= factor


@dataclass(frozen=True)
class Finding:
    """One claim of the paper, its number or statement there, ours, and whether the claim holds here."""
    claim: str
    paper: str
    ours: str
    holds: bool | None  # None: the book cannot test it (say why in `note`)
    note: str = ""
    key: str = ""  # the claim's key in lib.claims.REGISTER ("base" or "base:case")

    def __post_init__(self) -> None:
        if self.holds is None and not self.note:
            raise ValueError(f"a claim left untested needs a note saying why: {self.claim!r}")


def verdict(finding: Finding) -> str:
    """'holds', 'does not hold' or 'not tested', with the note after a colon where there is one."""
    word = VERDICTS[finding.holds]
    return f"{word}: {finding.note}" if finding.note else word


def table(findings: Sequence[Finding]) -> Styler:
    """The findings as a table (claim, where the paper makes it, paper, book, verdict), for a chapter's end.

    Every finding must name a registered claim (`lib.claims`); the table's HTML carries each (key, verdict)
    so that the book's test can check that no two pages judge one claim differently.
    """
    from . import claims

    if not findings:
        raise ValueError("no findings to show")
    keys = [f.key for f in findings]
    if len(set(keys)) < len(keys):
        raise ValueError(f"one claim judged twice in one table: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    sections = [claims.section(f.key) for f in findings]  # KeyError for an unregistered claim
    frame = pd.DataFrame([{"claim": f.claim, "section": s, "paper": f.paper, "book": f.ours, "verdict": verdict(f)}
                          for f, s in zip(findings, sections)])
    return (show(frame).set_properties(**{"text-align": "left"})
            .set_table_attributes(claims.attribute((f.key, VERDICTS[f.holds]) for f in findings)))


def count(findings: Sequence[Finding]) -> dict[str, int]:
    """How many claims hold, do not hold, and are not tested."""
    return {word: sum(f.holds is value for f in findings) for value, word in VERDICTS.items()}
