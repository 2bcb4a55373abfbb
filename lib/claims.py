"""The register of claims: each claim the book judges, once, with where the paper makes it and how it is judged.

A `findings.Finding` names its claim by `key`: a register key, optionally followed by ":" and the case it
covers (a model, a noise row: "min-distortion:N100-100-10"). Every page shows its verdicts with
`findings.table`, which refuses a finding whose key is not registered and writes each (key, verdict) into the
table's HTML, so that the book's test reads every page's verdicts and fails where two pages state different
verdicts for one claim (`disagreements`). Tolerances come from `lib.findings`, one per kind of number.
"""
from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .findings import BOUND_FACTOR, DISTORTION_FACTOR, ERROR_PP, SUBSET_ERROR_PP

# How each kind of claim is judged; the numbers are lib.findings' tolerances.
KINDS = {
    "error": f"an error rate within {ERROR_PP:g} pp of the paper's",
    "subset error": f"an error rate on 1,000 images within {SUBSET_ERROR_PP:g} pp of the paper's",
    "distortion": f"a distortion within a factor of {DISTORTION_FACTOR:g} of the paper's",
    "bound": f"an upper bound within a factor of {BOUND_FACTOR:g} of the paper's",
    "comparison": "an order or a comparison, tested on the book's numbers (and on the paper's where it has them)",
    "statement": "a statement, tested by the measurement the finding names",
    "book target": "not the paper's: a target the book sets itself, stated in the finding",
}


CASE_SECTION = "the case's table"  # a claim made in every table: its section is the case's table ("Table 3/errors")


@dataclass(frozen=True)
class Claim:
    """One claim: where it is made, its words, and how the book judges it (a key of KINDS)."""

    key: str
    section: str
    words: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} for claim {self.key!r}; valid: {', '.join(KINDS)}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", self.key):
            raise ValueError(f"a claim key is lower case, digits, '.' and '-', got {self.key!r}")


_CLAIMS = (
    # Section 4.2 / Tables 1 and 3: the models (chapter 1) and the paper-vs-book page
    Claim("errors", "4.2, Tables 1 and 3", "each model's training and test error", "error"),
    Claim("paper-numbers", CASE_SECTION, "each group of the numbers in the paper's tables (errors, distortions, "
                                          "bounds), within its tolerance for at least 75% of them", "comparison"),
    # Table 1's distortion column and Figure 7 (chapter 2)
    Claim("zero-accuracy", "4.2, Table 1", "\"the minimum average pixel level distortion necessary to reach 0% "
                                           "accuracy on the whole training set\"", "statement"),
    Claim("min-distortion", "4.2, Table 1", "each model's average minimal distortion", "distortion"),
    Claim("decay-distortion", "4.2, Table 1", "the softmax models' distortion grows with the weight decay",
          "comparison"),
    Claim("noise-half", "4.2, Figure 7", "noise of stddev 1: \"classified correctly in half of the cases\"",
          "subset error"),
    # the attack against today's (chapters 2 and 7)
    Claim("attack-vs-peers", "the book's target", "the 2013 attack as close as today's minimum-norm attacks",
          "book target"),
    Claim("attack-vs-exact", "the book's target", "the 2013 attack near the exact minimum of a linear model",
          "book target"),
    Claim("attack-speed", "the book's target", "the 2013 attack as fast as DDN at the same distortion",
          "book target"),
    Claim("fast-speed", "the book's target", "the fast attack twice as fast as DDN at the same distortion",
          "book target"),
    Claim("imagenet-vs-peers", "the book's target", "on ImageNet, as close as today's minimum-norm attacks",
          "book target"),
    Claim("imagenet-gradients", "the book's target", "on ImageNet, no more gradient evaluations than DDN",
          "book target"),
    # transfer (chapter 3)
    Claim("t2-above-noise", "4.2, Table 2", "adversarial examples of other models fool each model more than noise",
          "comparison"),
    Claim("t2-autoencoder", "4.2, Table 2", "the autoencoder-based model is the most resilient, yet not immune",
          "comparison"),
    Claim("t4-weaker-than-width", "4.2, Table 4", "transfer across training sets is weaker than across widths",
          "comparison"),
    Claim("t4-weaker-than-t2", "4.2, Table 4", "transfer across training sets is weaker than Table 2's",
          "comparison"),
    Claim("t4-above-noise", "4.2, Table 4", "cross-training-set transfer is above noise", "comparison"),
    Claim("t4-magnified-raises", "4.2, Table 4", "magnified examples transfer more", "comparison"),
    Claim("t4-magnified-above-noise", "4.2, Table 4", "magnified examples transfer more than magnified noise",
          "comparison"),
    Claim("equal-size-sweep", "not in the paper", "at equal size, transfer beats Gaussian noise", "comparison"),
    # adversarial training (chapter 4): the validation split, then the finals' test errors
    Claim("val-lbfgs-baseline", "4.2 (validation split)", "\"trained with L-BFGS until convergence\": the "
                                                           "better baseline", "comparison"),
    Claim("val-higher-layers", "4.2 (validation split)", "pools of higher layers are more useful", "comparison"),
    Claim("val-lighter-pool", "not in the paper (validation split)", "a lighter pool is better", "comparison"),
    Claim("val-pool-vs-decay", "4.2 (validation split)", "the pool beats weight decay", "comparison"),
    Claim("val-fgsm-vs-decay", "after the paper (validation split)", "FGSM training beats weight decay",
          "comparison"),
    Claim("val-dropout-vs-decay", "4.2 (validation split)", "dropout beats weight decay", "comparison"),
    Claim("val-pool-vs-decay-lbfgs", "4.2 (validation split)", "the pool beats weight decay under L-BFGS",
          "comparison"),
    Claim("pool-order", "4.2", "test error: adversarial pool < dropout < weight decay", "comparison"),
    Claim("pool-below", "4.2", "the pool brings the test error below 1.2%", "comparison"),
    Claim("pool-vs-decay", "4.2", "the pool beats weight decay alone", "comparison"),
    Claim("pool-vs-decay-same-recipe", "4.2", "the pool beats weight decay trained the same way", "comparison"),
    Claim("higher-layers", "4.2", "\"more useful than those on the input or lower layers\"", "comparison"),
    Claim("pool-vs-fgsm", "after the paper", "the pool beats FGSM training", "comparison"),
    # units vs directions (chapter 5)
    Claim("unit-rows-coherent", "3, Figures 1 and 3", "\"Images within each row share semantic properties\"",
          "statement"),
    Claim("direction-rows-coherent", "3, Figures 2 and 4", "random directions' images are also semantically "
                                                           "related", "statement"),
    Claim("units-no-better", "3", "\"the natural basis is not better than a random basis\"", "statement"),
    Claim("units-no-better-any-score", "abstract", "\"no distinction between individual high level units and "
                                                   "random linear combinations\"", "statement"),
    Claim("alexnet-units", "3, Figures 3 and 4", "the same on AlexNet", "statement"),
    Claim("figure6-small", "4.2, Figure 6", "a binary classifier on frozen features has small adversarial examples",
          "statement"),
    Claim("figure6-imperceptible", "4.2, Figure 6", "\"imperceptible\" changes", "statement"),
    Claim("words-unit-rows", "3 (on word vectors)", "a unit's top words share semantic properties", "statement"),
    Claim("words-direction-rows", "3 (on word vectors)", "a direction's top words do too", "statement"),
    Claim("words-units-no-better", "3 (on word vectors)", "\"the natural basis is not better than a random "
                                                           "basis\"", "statement"),
    Claim("words-units-better", "not in the paper", "the seed document's impression: units more coherent",
          "statement"),
    Claim("words-not-frequency", "not in the paper", "word vectors' coherence is not frequency alone", "statement"),
    Claim("words-length-frequency", "not in the paper", "raw word-vector length tracks frequency", "statement"),
    # Lipschitz bounds (chapters 6 and 7)
    Claim("layer-bound-valid", "4.3", "each layer's upper frame bound bounds its Lipschitz constant", "statement"),
    Claim("strided-formula", "4.3", "the strided convolution's formula", "statement"),
    Claim("max-pool-contractive", "4.3", "\"The max-pooling layers are contractive\"", "statement"),
    Claim("table5-alexnet", "4.3, Table 5", "AlexNet's per-layer upper bounds", "bound"),
    Claim("first-layer-unstable", "4.3, Table 5", "\"instabilities can appear as soon as in the first "
                                                  "convolutional layer\"", "statement"),
    Claim("product-bound", "4.3", "the product of the layer bounds bounds the network", "statement"),
    Claim("imagenet-bound-valid", "4.3, Table 5", "each bound is at least the layer's norm (ImageNet network)",
          "statement"),
    # natural images (chapter 7)
    Claim("imagenet-every-sample", "4.2, Figure 5", "\"for each sample, we always manage to generate very "
                                                    "close ... adversarial examples\"", "statement"),
    Claim("imagenet-distortion", "4.2, Figure 5", "average distortion 0.006508 (AlexNet)", "comparison"),
    Claim("imagenet-indistinguishable", "4.2, Figure 5", "\"visually indistinguishable\"", "statement"),
    Claim("imagenet-transfer", "4.2", "adversarial examples transfer more than noise of the same size",
          "comparison"),
    Claim("imagenet-8bit", "not in the paper", "an 8-bit example still fools the network", "book target"),
)
REGISTER: dict[str, Claim] = {}
for _claim in _CLAIMS:
    if _claim.key in REGISTER:
        raise ValueError(f"claim {_claim.key!r} registered twice")
    REGISTER[_claim.key] = _claim


def claim(key: str) -> Claim:
    """The registered claim of a finding's key ("base" or "base:case"); KeyError naming the key otherwise."""
    base = key.split(":", 1)[0]
    if base not in REGISTER:
        raise KeyError(f"claim {key!r} is not in the register (lib/claims.py); registered: {', '.join(REGISTER)}")
    return REGISTER[base]


def section(key: str) -> str:
    """Where the paper makes the claim of a finding's key: the register's section, or the case's table."""
    registered = claim(key)
    if registered.section != CASE_SECTION:
        return registered.section
    case = key.split(":", 1)[1] if ":" in key else ""
    return case.split("/", 1)[0] or "every table"


def attribute(pairs: Iterable[tuple[str, str]]) -> str:
    """The HTML attribute that carries a table's (key, verdict) pairs: data-claims='[[key, verdict], ...]'."""
    return f"data-claims=\"{html.escape(json.dumps([list(p) for p in pairs]), quote=True)}\""


def from_html(page: str) -> list[tuple[str, str]]:
    """Every (key, verdict) pair that the findings tables of one HTML page carry (`attribute`)."""
    return [tuple(p) for value in re.findall(r'data-claims="([^"]*)"', page) for p in json.loads(html.unescape(value))]


def disagreements(pages: Mapping[str, Iterable[tuple[str, str]]]) -> list[str]:
    """Each claim that two pages (or one page twice) judge differently, or that is not registered, in words."""
    seen: dict[str, dict[str, list[str]]] = {}
    problems = []
    for page, pairs in pages.items():
        for key, verdict in pairs:
            try:
                claim(key)
            except KeyError:
                problems.append(f"{page}: {key!r} is not in the register")
                continue
            seen.setdefault(key, {}).setdefault(verdict, []).append(page)
    for key, verdicts in seen.items():
        if len(verdicts) > 1:
            problems.append(f"{key!r}: " + "; ".join(f"{v} on {', '.join(p)}" for v, p in verdicts.items()))
    return problems
