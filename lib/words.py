"""Section 3 on word vectors: top words of units vs random directions, scored from outside, against chance.

The vectors (`lib.word_vectors`, half A of the corpus) are inspected as `lib.units` inspects a layer: the
k words with the largest <x, v> for a unit v = e_i or a random unit-norm v, on raw or length-normalised
vectors. A word set's coherence comes from elsewhere: mean pairwise cosine in vectors trained on the other
half of the corpus (B), and how many of its pairs share a WordNet supersense. Chance is a uniformly drawn
word set, and a frequency-matched one (raw vector length tracks word frequency), tested as in `lib.units`.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats

from . import units
from .findings import Finding
from .word_vectors import WordVectors

KINDS = ("units", "directions")
VECTORS = ("raw", "normalised")
STATISTICS = ("cosine:B", "supersense")
PAIRS = [("units", "directions"), ("units", "random sets"), ("directions", "random sets"),
         ("units", "matched to units"), ("directions", "matched to directions")]


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean length (a zero row stays zero)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def top_k_words(vectors: np.ndarray, directions: torch.Tensor, k: int) -> np.ndarray:
    """For each direction v [M, D], the indices of the k words with the largest <x, v>, largest first: [M, k]."""
    return units.top_k_images(torch.as_tensor(vectors, dtype=torch.float64), directions, k).indices.numpy()


def supersense_agreement(labels: np.ndarray) -> np.ndarray:
    """Fraction of a set's word pairs with the same known supersense (label >= 0): [M, k] -> [M]."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] < 2:
        raise ValueError("labels must be [M, k] with k >= 2")
    same = (labels[:, :, None] == labels[:, None, :]) & (labels[:, :, None] >= 0)
    k = labels.shape[1]
    return (same.sum((1, 2)) - np.diagonal(same, axis1=1, axis2=2).sum(1)) / (k * (k - 1))


def coherence(index_sets: np.ndarray, wv: WordVectors) -> pd.DataFrame:
    """Per word set [M, k]: mean pairwise cosine in the centred half-B vectors, and supersense agreement."""
    index_sets = np.asarray(index_sets)
    if index_sets.ndim != 2 or index_sets.shape[1] < 2 or index_sets.min() < 0 or index_sets.max() >= len(wv.words):
        raise ValueError(f"index_sets must be [M, k >= 2] indices into the {len(wv.words)} words")
    reference = torch.as_tensor(wv.reference - wv.reference.mean(0))
    return pd.DataFrame({"cosine:B": units.mean_pairwise_cosine(reference[index_sets]).numpy(),
                         "supersense": supersense_agreement(wv.supersense[index_sets])})


def frequency_matched_sets(index_sets: np.ndarray, counts: np.ndarray, per_set: int, seed: int,
                           n_bins: int = 10) -> np.ndarray:
    """`per_set` random word sets per given set, each word swapped for a distinct one of the same count decile."""
    index_sets, counts = np.asarray(index_sets), np.asarray(counts)
    if index_sets.ndim != 2 or per_set < 1 or not 1 <= n_bins <= len(counts):
        raise ValueError("need index_sets [M, k], per_set >= 1 and 1 <= n_bins <= number of words")
    rank = np.empty(len(counts), dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(counts))
    bins = rank * n_bins // len(counts)
    members = [np.flatnonzero(bins == b) for b in range(n_bins)]
    rng = np.random.default_rng(seed)
    out = np.empty((len(index_sets) * per_set, index_sets.shape[1]), dtype=np.int64)
    for row, words in enumerate(np.repeat(index_sets, per_set, axis=0)):
        for b in np.unique(bins[words]):
            where = bins[words] == b
            out[row, where] = rng.choice(members[b], int(where.sum()), replace=False)
    return out


def norm_frequency(vectors: np.ndarray, counts: np.ndarray) -> dict:
    """Spearman and Pearson correlation of vector length with log count: the frequency confound."""
    norms, log_counts = np.linalg.norm(vectors, axis=1), np.log(np.asarray(counts, dtype=np.float64))
    rho, p = scipy_stats.spearmanr(norms, log_counts)
    return {"spearman_rho": float(rho), "spearman_p": float(p),
            "pearson_r": float(np.corrcoef(norms, log_counts)[0, 1]), "n": len(norms)}


@dataclass(frozen=True)
class Experiment:
    """Top-k word sets and their scores: sets[vectors][group] -> [M, k]; scores[vectors][group] -> DataFrame."""
    k: int
    directions: torch.Tensor  # [n_directions, D], the random unit-norm directions
    sets: dict[str, dict[str, np.ndarray]]
    scores: dict[str, dict[str, pd.DataFrame]]


def experiment(wv: WordVectors, k: int = 10, n_directions: int = 200, n_random: int = 1000, per_set: int = 5,
               seed: int = 0) -> Experiment:
    """Units (every coordinate) and seeded random directions on raw and normalised vectors, with both baselines."""
    dim = wv.vectors.shape[1]
    directions = units.random_directions(dim, n_directions, seed=seed + 1)
    random_sets = units.random_image_sets(len(wv.words), n_random, k, seed=seed + 2).numpy()
    sets, scores = {}, {}
    for name, vectors in (("raw", wv.vectors), ("normalised", normalise(wv.vectors))):
        tops = {"units": top_k_words(vectors, units.basis_directions(dim, list(range(dim))), k),
                "directions": top_k_words(vectors, directions, k)}
        sets[name] = {**tops, "random sets": random_sets,
                      **{f"matched to {g}": frequency_matched_sets(s, wv.counts, per_set, seed + 3 + i)
                         for i, (g, s) in enumerate(tops.items())}}
        scores[name] = {group: coherence(s, wv) for group, s in sets[name].items()}
    return Experiment(k, directions, sets, scores)


def tests(exp: Experiment, n_permutations: int = 10_000, n_boot: int = 10_000, seed: int = 0,
          alpha: float = 0.05) -> pd.DataFrame:
    """`units.compare` for every pair in PAIRS, score and kind of vectors, with Bonferroni verdicts."""
    table = pd.concat([units.coherence_comparisons(groups, PAIRS, STATISTICS, n_permutations, n_boot, seed)
                       .assign(vectors=name) for name, groups in exp.scores.items()], ignore_index=True)
    return units.verdicts(table, alpha=alpha)


def frequency_table(exp: Experiment, wv: WordVectors) -> pd.DataFrame:
    """Per kind of vectors, group and score: the group's mean beside its frequency-matched sets and random sets.

    'explained by frequency' = (matched - random) / (group - random): the share of the group's lead over
    uniform chance that word sets of the same frequencies reach without any direction.
    """
    rows = []
    for name, groups in exp.scores.items():
        for kind in KINDS:
            log_count = np.log10(wv.counts[exp.sets[name][kind]]).mean()
            for stat in STATISTICS:
                own, matched = groups[kind][stat].mean(), groups[f"matched to {kind}"][stat].mean()
                chance = groups["random sets"][stat].mean()
                rows.append({"vectors": name, "group": kind, "mean log10 count": log_count, "score": stat,
                             "group mean": own, "frequency-matched": matched, "random sets": chance,
                             "explained by frequency": (matched - chance) / (own - chance)})
    return pd.DataFrame(rows)


def p_text(p: float) -> str:
    """A p-value as text, '< 1e-300' where it underflows to 0."""
    return "< 1e-300" if p == 0 else f"= {p:.1g}"


def listing(exp: Experiment, wv: WordVectors, vectors: str, kind: str, rows: int = 5) -> pd.DataFrame:
    """The first `rows` top-k sets of a group as a table: index, the words, and both scores."""
    sets, scores = exp.sets[vectors][kind], exp.scores[vectors][kind]
    label = "unit" if kind == "units" else "direction"
    return pd.DataFrame({label: np.arange(rows), "top words": [" ".join(wv.words[s]) for s in sets[:rows]],
                         **{stat: scores[stat].to_numpy()[:rows] for stat in STATISTICS}})


def panel(exp: Experiment, wv: WordVectors, vectors: str, kind: str, index: int) -> plt.Figure:
    """One top-k set as a small text figure: each word with its projection and count, the set's scores vs chance."""
    group = "units" if kind in ("unit", "units") else "directions"
    words = exp.sets[vectors][group][index]
    x = wv.vectors if vectors == "raw" else normalise(wv.vectors)
    v = (units.basis_directions(x.shape[1], [index]) if group == "units" else exp.directions[index : index + 1])
    projections = x[words] @ v.numpy()[0]
    score, chance = exp.scores[vectors][group].iloc[index], exp.scores[vectors]["random sets"].mean()
    lines = len(words) + 4
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * lines + 0.4))  # drawn at 72 dpi: text of 12-13 px
    ax.axis("off")
    ax.set_title(f"{'unit' if group == 'units' else 'random direction'} {index}, {vectors} vectors: "
                 f"top {len(words)} words", fontsize=13)
    rows = [("word", "<x, v>", "count in A")] + [(wv.words[w], f"{p:.3f}", f"{wv.counts[w]}")
                                                 for w, p in zip(words, projections)]
    for r, (word, projection, count) in enumerate(rows):
        y = 1 - (r + 0.5) / lines
        style = {"fontsize": 12, "va": "center", "family": "monospace", "weight": "bold" if r == 0 else "normal"}
        ax.text(0.02, y, word, **style)
        ax.text(0.62, y, projection, ha="right", **style)
        ax.text(0.95, y, count, ha="right", **style)
    for r, (label, values) in enumerate((("this set", score), ("random sets (mean)", chance))):
        ax.text(0.02, 1 - (len(rows) + 0.9 + r) / lines, f"{label:19s} cosine in B {values['cosine:B']:+.3f}   "
                f"supersense agreement {values['supersense']:.3f}", fontsize=11, va="center", family="monospace")
    return fig


def findings(table: pd.DataFrame, confound: dict, min_rho: float = 0.3) -> list[Finding]:
    """The paper's Section 3 claims on word vectors, and the frequency confound, each with a computed verdict.

    table: `tests(...)` (columns vectors, statistic, a, b, cohens_d, verdict); confound: `norm_frequency` of
    the raw vectors, whose length "tracks" frequency when Spearman's |rho| >= min_rho at p < 0.05.
    """
    missing = {"vectors", "statistic", "a", "b", "cohens_d", "verdict"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)} (pass the output of words.tests)")

    def rows(a: str, b: str) -> pd.DataFrame:
        found = table[(table["a"] == a) & (table["b"] == b)]
        if found.empty:
            raise ValueError(f"table has no comparison of {a!r} with {b!r}")
        return found

    def where(frame: pd.DataFrame) -> str:
        return "; ".join(f"{r.vectors} by {r.statistic} (d = {r.cohens_d:+.2f})" for r in frame.itertuples())

    def above(a: str, b: str, claim: str, paper: str, key: str) -> Finding:
        found = rows(a, b)
        wins = found[found["verdict"] == "a > b"]
        ours = (f"more coherent than {b} in {len(wins)} of {len(found)} tests "
                f"(Cohen's d {found['cohens_d'].min():.2f} to {found['cohens_d'].max():.2f})")
        rest = found[found["verdict"] != "a > b"]
        return Finding(claim, paper, ours, rest.empty, "" if rest.empty else "not in: " + where(rest), key=key)

    main = rows("units", "directions")
    ahead, behind = main[main["verdict"] == "a > b"], main[main["verdict"] == "a < b"]
    note = "; ".join(s for s in (("units ahead in " + where(ahead)) if len(ahead) else "",
                                 ("directions ahead in " + where(behind)) if len(behind) else "") if s)
    rho, p = confound["spearman_rho"], confound["spearman_p"]
    matched = pd.concat([rows("units", "matched to units"), rows("directions", "matched to directions")])
    wins = matched[matched["verdict"] == "a > b"]
    return [
        above("units", "random sets", "The top words of a single unit share semantic properties",
              "\"Images within each row share semantic properties\" (Figures 1 and 3; here on words)",
              "words-unit-rows"),
        above("directions", "random sets", "The top words of a random direction do too",
              "\"images that maximize the activations in a random direction are also semantically related\"",
              "words-direction-rows"),
        Finding("Units are no more coherent than random directions (word vectors)",
                "\"the natural basis is not better than a random basis for inspecting the properties of phi(x)\"",
                f"of {len(main)} tests: units more coherent in {len(ahead)}, directions in {len(behind)}, "
                f"no detectable difference in {len(main) - len(ahead) - len(behind)}", ahead.empty, note,
                key="words-units-no-better"),
        Finding("Single units are more coherent than random directions",
                "not in the paper: the seed document's impression, judged by eye on text8 vectors",
                f"units ahead in {len(ahead)} of {len(main)} tests, directions ahead in {len(behind)}",
                len(ahead) > 0 and behind.empty, "on WordNet-gloss vectors, not text8", key="words-units-better"),
        Finding("Their coherence is not word frequency alone",
                "not in the paper: a caveat for word vectors, whose length tracks frequency",
                f"above frequency-matched word sets in {len(wins)} of {len(matched)} tests",
                len(wins) == len(matched),
                "" if len(wins) == len(matched) else "not in: " + where(matched[matched["verdict"] != "a > b"]),
                key="words-not-frequency"),
        Finding("Raw word-vector length tracks word frequency", "not in the paper (the seed document's caution)",
                f"Spearman rho {rho:+.2f} (p {p_text(p)}) between length and log count over {confound['n']} words",
                abs(rho) >= min_rho and p < 0.05, f"'tracks' taken as |rho| >= {min_rho:g} at p < 0.05",
                key="words-length-frequency"),
    ]
