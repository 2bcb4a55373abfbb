"""Section 3: do single units mean more than random directions? Top-k images, coherence, statistics.

The paper inspects a layer phi by the images x' that maximise <phi(x), e_i> for a unit e_i, and finds
that a random unit-norm direction v gives images just as "semantically" alike (Figures 1-4). Here:

- `layer_activations`, `random_directions`, `basis_directions`, `top_k_images`: the inspection itself;
- `label_purity`, `mean_pairwise_cosine`, `coherence`, `random_image_sets`: a coherence statistic of a
  top-k set measured *outside* the inspected layer (labels, and another model's features);
- `permutation_test`, `cohens_d`, `bootstrap_mean_diff_ci`, `compare`: units vs directions vs chance;
- `feature_extractor`, `train_binary_probe`, `compose`: Figure 6's analog, a binary classifier on
  frozen features, to be attacked with `lib.attack.lbfgs_attack`;
- `findings`: the paper's claims beside the chapter's results, each with a verdict computed here.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import paper, visibility
from .findings import Finding
from .train import classification_loss, fit


class TopK(NamedTuple):
    """The k images with the largest projections: indices into the image set, and the projections."""

    indices: Tensor  # [M, k] (or [k] for one direction), int64, largest first
    scores: Tensor  # same shape, <phi(x), v> of those images


# ----------------------------------------------------------------------------------------------
# Inspecting a layer
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def layer_activations(model: nn.Sequential, layer_index: int, images: Tensor, batch_size: int = 1000,
                      dtype: torch.dtype = torch.float64) -> Tensor:
    """phi(x) = output of model[: layer_index + 1], flattened to [N, D], computed in `dtype` (eval mode).

    float64 by default: a float32 sigmoid rounds to exactly 1.0 for pre-activations above ~17, which
    ties many images at a saturated unit's maximum and leaves its top-k arbitrary.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential, got {type(model).__name__}")
    if isinstance(layer_index, bool) or not isinstance(layer_index, int) or not 0 <= layer_index < len(model):
        raise ValueError(f"layer_index must be an int in [0, {len(model) - 1}], got {layer_index!r}")
    if not isinstance(images, Tensor) or images.dim() < 2 or len(images) == 0:
        raise ValueError("images must be a non-empty tensor [N, ...]")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    trunk = copy.deepcopy(model[: layer_index + 1]).to(dtype).eval()
    return torch.cat([trunk(images[i : i + batch_size].to(dtype)).flatten(1)
                      for i in range(0, len(images), batch_size)])


def random_directions(dim: int, count: int, seed: int) -> Tensor:
    """`count` unit-norm directions in R^dim, uniform on the sphere (normalised seeded Gaussians), [count, dim]."""
    for name, value in (("dim", dim), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(count, dim, generator=g, dtype=torch.float64)
    return v / v.norm(dim=1, keepdim=True)


def basis_directions(dim: int, units: Tensor | list[int]) -> Tensor:
    """The natural basis vectors e_i for the given unit indices, [len(units), dim]."""
    units = torch.as_tensor(units, dtype=torch.long).flatten()
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    if len(units) == 0 or units.min() < 0 or units.max() >= dim:
        raise ValueError(f"units must be a non-empty list of indices in [0, {dim - 1}]")
    return torch.eye(dim, dtype=torch.float64)[units]


def top_k_images(activations: Tensor, directions: Tensor, k: int) -> TopK:
    """For each direction v, the k images x' with the largest <phi(x'), v> (largest first).

    activations [N, D]; directions [D] or [M, D]. A natural basis vector e_i gives unit i's top images.
    """
    if not isinstance(activations, Tensor) or activations.dim() != 2 or len(activations) == 0:
        raise ValueError("activations must be a non-empty [N, D] tensor")
    if not isinstance(directions, Tensor) or directions.dim() not in (1, 2):
        raise ValueError("directions must be a [D] or [M, D] tensor")
    single = directions.dim() == 1
    directions = directions[None] if single else directions
    if directions.shape[1] != activations.shape[1]:
        raise ValueError(f"directions have dimension {directions.shape[1]}, activations {activations.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(activations):
        raise ValueError(f"k must be an int in [1, {len(activations)}], got {k!r}")
    if not torch.isfinite(activations).all() or not torch.isfinite(directions).all():
        raise ValueError("activations and directions must be finite")
    scores = activations @ directions.to(activations.dtype).T  # [N, M]
    values, indices = scores.topk(k, dim=0)  # [k, M]
    values, indices = values.T.contiguous(), indices.T.contiguous()
    return TopK(indices[0], values[0]) if single else TopK(indices, values)


def usable_units(activations: Tensor, k: int) -> Tensor:
    """Units whose k-th largest activation exceeds their minimum: the rest (dead units) have no top-k."""
    if not isinstance(activations, Tensor) or activations.dim() != 2:
        raise ValueError("activations must be a [N, D] tensor")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(activations):
        raise ValueError(f"k must be an int in [1, {len(activations)}], got {k!r}")
    return activations.topk(k, dim=0).values[-1] > activations.min(0).values


def select_units(activations: Tensor, k: int, max_units: int, seed: int = 0) -> Tensor:
    """The usable units (see `usable_units`), or a seeded random `max_units` of them, sorted."""
    if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
        raise ValueError(f"max_units must be a positive int, got {max_units!r}")
    ok = usable_units(activations, k).nonzero().squeeze(1)
    if len(ok) > max_units:
        ok = ok[torch.randperm(len(ok), generator=torch.Generator().manual_seed(seed))[:max_units]].sort().values
    return ok


# ----------------------------------------------------------------------------------------------
# Coherence of a set of images, measured outside the inspected layer
# ----------------------------------------------------------------------------------------------


def random_image_sets(n_images: int, count: int, k: int, seed: int) -> Tensor:
    """`count` sets of k distinct image indices drawn uniformly from range(n_images), [count, k] (the baseline)."""
    for name, value in (("n_images", n_images), ("count", count), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if k > n_images:
        raise ValueError(f"cannot draw {k} distinct images from {n_images}")
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n_images, generator=g)[:k] for _ in range(count)])


def _check_sets(index_sets: Tensor, n: int) -> Tensor:
    index_sets = torch.as_tensor(index_sets)
    if index_sets.dim() == 1:
        index_sets = index_sets[None]
    if index_sets.dim() != 2 or index_sets.shape[1] < 2 or index_sets.dtype.is_floating_point:
        raise ValueError("index_sets must be integer indices [M, k] with k >= 2")
    if index_sets.min() < 0 or index_sets.max() >= n:
        raise ValueError(f"index_sets must index images in [0, {n - 1}]")
    return index_sets.long()


def label_purity(set_labels: Tensor) -> Tensor:
    """Fraction of each set sharing its most common label: [M, k] integer labels -> [M] in [1/k, 1]."""
    set_labels = torch.as_tensor(set_labels)
    if set_labels.dim() == 1:
        set_labels = set_labels[None]
    if set_labels.dim() != 2 or set_labels.shape[1] == 0 or set_labels.dtype.is_floating_point:
        raise ValueError("set_labels must be a non-empty integer tensor [M, k]")
    if set_labels.min() < 0:
        raise ValueError("labels must be non-negative")
    counts = torch.zeros(len(set_labels), int(set_labels.max()) + 1, dtype=torch.long)
    counts.scatter_add_(1, set_labels.long(), torch.ones_like(set_labels, dtype=torch.long))
    return counts.amax(1).double() / set_labels.shape[1]


def mean_pairwise_cosine(set_features: Tensor) -> Tensor:
    """Mean cosine similarity over the k(k-1)/2 distinct pairs of each set: [M, k, F] -> [M].

    A zero feature vector has cosine 0 with everything.
    """
    if not isinstance(set_features, Tensor) or set_features.dim() != 3 or set_features.shape[1] < 2:
        raise ValueError("set_features must be a [M, k, F] tensor with k >= 2")
    f = set_features.double()
    unit = f / f.norm(dim=2, keepdim=True).clamp_min(1e-12)
    gram = unit @ unit.transpose(1, 2)  # [M, k, k]
    k = f.shape[1]
    off_diagonal = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)
    return off_diagonal / (k * (k - 1))


def coherence(index_sets: Tensor, labels: Tensor, reference_features: Tensor | dict[str, Tensor],
              center: bool = True) -> pd.DataFrame:
    """Per set: label purity, and mean pairwise cosine of the images' features in a reference model.

    The reference features [N, F] come from a different model than the inspected layer; with `center`
    their mean over all N images is subtracted first (otherwise all-positive sigmoid or ReLU features
    make every pair look alike). Give a dict {name: [N, F]} for several references: columns "cosine:name".
    """
    labels = torch.as_tensor(labels)
    references = reference_features if isinstance(reference_features, dict) else {None: reference_features}
    if labels.dim() != 1 or not references:
        raise ValueError("labels must be [N] and at least one reference given")
    index_sets = _check_sets(index_sets, len(labels))
    table = {"purity": label_purity(labels[index_sets]).numpy()}
    for name, features in references.items():
        if not isinstance(features, Tensor) or features.dim() != 2:
            raise ValueError("reference features must be [N, F] tensors")
        if len(labels) != len(features):
            raise ValueError(f"labels ({len(labels)}) and reference features ({len(features)}) differ in length")
        features = features.double()
        if center:
            features = features - features.mean(0)
        table["cosine" if name is None else f"cosine:{name}"] = mean_pairwise_cosine(features[index_sets]).numpy()
    return pd.DataFrame(table)


# ----------------------------------------------------------------------------------------------
# Statistics: are two samples of a coherence statistic different?
# ----------------------------------------------------------------------------------------------


def _samples(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each sample needs at least 2 values, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("samples must be finite")
    return a, b


def permutation_test(a, b, n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of mean(a) - mean(b) under random relabelling, (1 + #{|perm| >= |obs|}) / (1 + n)."""
    a, b = _samples(a, b)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, n_permutations, 1000):
        m = min(1000, n_permutations - start)
        perms = rng.permuted(np.broadcast_to(pooled, (m, len(pooled))), axis=1)
        diffs = perms[:, : len(a)].mean(1) - perms[:, len(a):].mean(1)
        extreme += int((np.abs(diffs) >= observed - 1e-12).sum())
    return (1 + extreme) / (1 + n_permutations)


def cohens_d(a, b) -> float:
    """(mean(a) - mean(b)) / pooled standard deviation (ddof 1); 0 when both samples are constant and equal."""
    a, b = _samples(a, b)
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    diff = a.mean() - b.mean()
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / pooled


def bootstrap_mean_diff_ci(a, b, n_boot: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for mean(a) - mean(b), resampling each sample independently."""
    a, b = _samples(a, b)
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(a, (n_boot, len(a))).mean(1) - rng.choice(b, (n_boot, len(b))).mean(1))
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compare(a, b, n_permutations: int = 10_000, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Means, their difference with a 95% bootstrap interval, Cohen's d and a permutation p-value."""
    a, b = _samples(a, b)
    lo, hi = bootstrap_mean_diff_ci(a, b, n_boot=n_boot, seed=seed)
    return {"mean_a": a.mean(), "mean_b": b.mean(), "diff": a.mean() - b.mean(), "ci_low": lo, "ci_high": hi,
            "cohens_d": cohens_d(a, b), "p_value": permutation_test(a, b, n_permutations, seed=seed),
            "n_a": len(a), "n_b": len(b)}


def coherence_comparisons(groups: dict[str, pd.DataFrame], pairs: list[tuple[str, str]],
                          stats: tuple[str, ...] | None = None, n_permutations: int = 10_000,
                          n_boot: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """`compare` for each (group a, group b) pair and each statistic column (default: all): one row per test."""
    if not groups or not pairs:
        raise ValueError("need at least one group and one pair")
    stats = tuple(next(iter(groups.values())).columns) if stats is None else stats
    rows = []
    for a, b in pairs:
        if a not in groups or b not in groups:
            raise ValueError(f"unknown group in pair {(a, b)}; groups are {list(groups)}")
        for stat in stats:
            if stat not in groups[a] or stat not in groups[b]:
                raise ValueError(f"statistic {stat!r} missing from group {a!r} or {b!r}")
            result = compare(groups[a][stat], groups[b][stat], n_permutations, n_boot, seed)
            rows.append({"a": a, "b": b, "statistic": stat, **result})
    return pd.DataFrame(rows)


def verdicts(table: pd.DataFrame, alpha: float = 0.05, negligible: float = 0.2) -> pd.DataFrame:
    """Per test: 'a > b', 'a < b' or 'no detectable difference' at Bonferroni level alpha / #tests.

    `table` has columns a, b, diff, p_value, cohens_d (as from `coherence_comparisons`); a significant
    difference with |d| < `negligible` is also marked as a negligible effect.
    """
    if not 0 < alpha < 1 or len(table) == 0:
        raise ValueError("need 0 < alpha < 1 and a non-empty table")
    level = alpha / len(table)
    out = table.copy()
    significant = out["p_value"] < level
    out["verdict"] = np.where(~significant, "no detectable difference",
                              np.where(out["diff"] > 0, "a > b", "a < b"))
    out["negligible_effect"] = out["cohens_d"].abs() < negligible
    out.attrs["bonferroni_level"] = level
    return out


def top_k_gallery(images: Tensor, rows: list[Tensor], row_labels: list[str], suptitle: str = "",
                  size: float = 0.55, fontsize: float = 9) -> plt.Figure:
    """Figures 1-2's layout: one row of top-k images [k] (indices into images [N,1,28,28]) per label.

    The defaults keep ten images and their labels within a 7-inch page column at a legible font size.
    """
    if len(rows) != len(row_labels) or not rows:
        raise ValueError("give one label per row, and at least one row")
    k = max(len(r) for r in rows)
    title_height = 0.06 + 0.18 * (suptitle.count("\n") + 1) if suptitle else 0.0  # inches above the images
    height = len(rows) * size + title_height
    fig, axes = plt.subplots(len(rows), k, figsize=(k * size + 1.6, height), squeeze=False)
    for r, (indices, label) in enumerate(zip(rows, row_labels)):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(indices):
                ax.imshow(images[int(indices[c])].squeeze(0).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=fontsize + 1)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2, rect=(0, 0, 1, 1 - title_height / height))
    return fig


STATISTIC_LABELS = {"purity": "label purity", "cosine": "reference cosine"}


def coherence_distributions(groups_by_layer: dict[str, dict[str, pd.DataFrame]],
                            stats: tuple[str, ...] | None = None, width: float = 6.9) -> plt.Figure:
    """Histograms of each statistic (columns; default all) for each layer (rows), one colour per group.

    Every panel has its axis labels; one legend for all panels sits above them, off the bars. `width`
    (inches) is the page column's: the figure is drawn at its final size, so 8-9 pt text stays 8-9 pt.
    """
    if not groups_by_layer:
        raise ValueError("no layers to plot")
    if stats is None:
        stats = tuple(next(iter(next(iter(groups_by_layer.values())).values())).columns)
    fig, axes = plt.subplots(len(groups_by_layer), len(stats), figsize=(width, 1.9 * len(groups_by_layer) + 0.5),
                             squeeze=False)
    colors = ["tab:blue", "tab:orange", "tab:gray", "tab:green"]
    for r, (layer, groups) in enumerate(groups_by_layer.items()):
        for c, stat in enumerate(stats):
            ax = axes[r, c]
            values = np.concatenate([g[stat].to_numpy() for g in groups.values()])
            bins = np.linspace(values.min(), values.max(), 25)
            for color, (name, g) in zip(colors, groups.items()):
                ax.hist(g[stat], bins=bins, density=True, alpha=0.5, color=color, label=name)
            ax.set_title(layer, fontsize=8)
            ax.set_xlabel(STATISTIC_LABELS.get(stat, stat.replace("cosine:", "cosine in ")), fontsize=8)
            ax.set_ylabel("density", fontsize=8)
            ax.tick_params(labelsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()), h_pad=0.6)
    return fig


# ----------------------------------------------------------------------------------------------
# Figure 6's analog: a binary classifier on frozen features
# ----------------------------------------------------------------------------------------------


def feature_extractor(model: nn.Sequential, layer_index: int) -> nn.Sequential:
    """A frozen copy of model[: layer_index + 1] (eval mode, no gradients to its parameters)."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential, got {type(model).__name__}")
    if isinstance(layer_index, bool) or not isinstance(layer_index, int) or not 0 <= layer_index < len(model):
        raise ValueError(f"layer_index must be an int in [0, {len(model) - 1}], got {layer_index!r}")
    trunk = copy.deepcopy(model[: layer_index + 1]).eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


def train_binary_probe(features: Tensor, positive: Tensor, epochs: int = 10, lr: float = 1e-2, seed: int = 0,
                       progress: bool = True) -> nn.Linear:
    """Logistic regression on frozen features as a 2-logit nn.Linear (logit 1 - logit 0 = the log-odds)."""
    positive = torch.as_tensor(positive)
    if not isinstance(features, Tensor) or features.dim() != 2 or positive.dim() != 1:
        raise ValueError("features must be [N, F] and positive [N]")
    if len(features) != len(positive):
        raise ValueError(f"features ({len(features)}) and positive ({len(positive)}) differ in length")
    if positive.dtype != torch.bool:
        raise ValueError("positive must be a bool tensor")
    if positive.all() or not positive.any():
        raise ValueError("need both positive and negative examples")
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], 2)
    fit(head, features.float(), positive.long(), classification_loss(), epochs=epochs, lr=lr, seed=seed,
        batch_size=256, desc="binary probe", progress=progress)
    return head.eval()


def compose(extractor: nn.Sequential, head: nn.Module) -> nn.Sequential:
    """extractor followed by head, as one eval-mode nn.Sequential (what `lib.attack` attacks)."""
    if not isinstance(extractor, nn.Sequential) or not isinstance(head, nn.Module):
        raise ValueError("extractor must be an nn.Sequential and head an nn.Module")
    return nn.Sequential(*extractor, head).eval()


# ----------------------------------------------------------------------------------------------
# What we found: the paper's claims of Section 3 (and Figure 6), each with a computed verdict
# ----------------------------------------------------------------------------------------------

SEMANTIC_STATISTICS = ("purity", "cosine:N200")  # the label, and a supervised network's features
TEST_COLUMNS = ("layer", "statistic", "a", "b", "diff", "ci_high", "cohens_d", "verdict")
VERDICT_WORDS = ("a > b", "a < b", "no detectable difference")


@dataclass(frozen=True)
class ProbeAttack:
    """Figure 6's analog in numbers: a box-constrained attack on a binary probe over frozen features.

    Distortions are the paper's sqrt(sum r^2 / n). `mean_distortion` is over the successful attacks (NaN
    when none succeeded); `reference_distortion` is the mean minimum distortion the end-to-end 10-class
    model needs on the same images, the yardstick the chapter compares with.
    """
    attacked: int
    succeeded: int
    mean_distortion: float
    reference_distortion: float
    invisible: int | None = None  # successes that `lib.visibility` calls invisible (None: not measured)

    def __post_init__(self) -> None:
        if self.invisible is not None and (isinstance(self.invisible, bool) or not isinstance(
                self.invisible, (int, np.integer)) or not 0 <= self.invisible <= self.succeeded):
            raise ValueError(f"invisible must be an int in 0..succeeded, got {self.invisible!r}")
        for name in ("attacked", "succeeded"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.attacked < 1 or not 0 <= self.succeeded <= self.attacked:
            raise ValueError(f"need 0 <= succeeded <= attacked and attacked >= 1, got {self.succeeded} "
                             f"of {self.attacked}")
        if self.succeeded and not (math.isfinite(self.mean_distortion) and self.mean_distortion >= 0):
            raise ValueError(f"mean_distortion must be finite and >= 0, got {self.mean_distortion}")
        if not (math.isfinite(self.reference_distortion) and self.reference_distortion > 0):
            raise ValueError(f"reference_distortion must be finite and positive, got {self.reference_distortion}")


def _check_tests(tests: pd.DataFrame, names: Sequence[str]) -> None:
    """`tests` as `verdicts` returns it, with the groups `names` compared; else ValueError."""
    if not isinstance(tests, pd.DataFrame):
        raise ValueError(f"tests must be the DataFrame `verdicts` returns, got {type(tests).__name__}")
    missing = [c for c in TEST_COLUMNS if c not in tests.columns]
    if missing:
        raise ValueError(f"tests lack the columns {missing} (pass the output of units.verdicts)")
    unknown = set(tests["verdict"]) - set(VERDICT_WORDS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; expected {VERDICT_WORDS}")
    units_, directions, chance = names
    for a, b in ((units_, directions), (units_, chance), (directions, chance)):
        if not ((tests["a"] == a) & (tests["b"] == b)).any():
            raise ValueError(f"tests have no comparison of {a!r} with {b!r}")


def _above_chance(tests: pd.DataFrame, group: str, chance: str, claim: str, paper_text: str, key: str) -> Finding:
    rows = tests[(tests["a"] == group) & (tests["b"] == chance)]
    wins = int((rows["verdict"] == "a > b").sum())
    ours = (f"more coherent than {chance} in {wins} of {len(rows)} tests "
            f"(Cohen's d {rows['cohens_d'].min():.1f} to {rows['cohens_d'].max():.1f})")
    losses = rows[rows["verdict"] != "a > b"]
    note = "" if losses.empty else "not in: " + "; ".join(f"{r.layer} by {r.statistic}" for r in losses.itertuples())
    return Finding(claim, paper_text, ours, wins == len(rows), note, key=key)


def _units_vs_directions(rows: pd.DataFrame, claim: str, paper_text: str, key: str, extra: str = "") -> Finding:
    better, worse = rows[rows["verdict"] == "a > b"], rows[rows["verdict"] == "a < b"]
    same = len(rows) - len(better) - len(worse)
    ours = (f"of {len(rows)} tests: units more coherent in {len(better)}, directions in {len(worse)}, "
            f"no detectable difference in {same}{extra}")
    note = ("" if better.empty else "units ahead in " +
            "; ".join(f"{r.layer} by {r.statistic} (d = {r.cohens_d:+.2f})" for r in better.itertuples()))
    return Finding(claim, paper_text, ours, better.empty, note, key=key)


def findings(tests: pd.DataFrame, probe: ProbeAttack, semantic: Sequence[str] = SEMANTIC_STATISTICS,
             names: Sequence[str] = ("units", "directions", "random sets"),
             max_distortion: float | None = None) -> list[Finding]:
    """The claims of the paper's Section 3 (and its Figure 6) that the chapter tests, each with a verdict.

    tests: the table of `verdicts(coherence_comparisons(...))` over all layers (columns layer, statistic,
    a, b, diff, ci_high, cohens_d, verdict), comparing the groups `names` = (units, random directions,
    chance). semantic: the statistics that measure *semantic* likeness (label purity, a supervised
    network's features); the others (e.g. an autoencoder's features) measure low-level likeness.
    probe: the Figure 6 analog; its attack "holds" when it succeeds on every image with a mean distortion
    at most `max_distortion` (default: the largest average distortion of the paper's Table 1, the scale
    the paper shows as imperceptible on MNIST).
    """
    if len(names) != 3 or len(set(names)) != 3:
        raise ValueError(f"names must be three distinct group names (units, directions, chance), got {names!r}")
    _check_tests(tests, names)
    if not isinstance(probe, ProbeAttack):
        raise ValueError(f"probe must be a units.ProbeAttack, got {type(probe).__name__}")
    semantic = tuple(semantic)
    statistics = set(tests["statistic"])
    if not semantic or not set(semantic) <= statistics:
        raise ValueError(f"semantic statistics {semantic} must be among the tested ones {sorted(statistics)}")
    if max_distortion is None:
        max_distortion = max(row["distortion"] for row in paper.TABLE1.values())
    units_, directions, chance = names
    main = tests[(tests["a"] == units_) & (tests["b"] == directions)]
    by_meaning = main[main["statistic"].isin(semantic)]
    edge = by_meaning.loc[by_meaning["statistic"] == semantic[0], "ci_high"].max()

    found = [
        _above_chance(tests, units_, chance, "The top images of a single unit share semantic properties",
                      "\"Images within each row share semantic properties\" (Figures 1 and 3, judged by eye)",
                      "unit-rows-coherent"),
        _above_chance(tests, directions, chance, "The top images of a random direction do too",
                      "\"images that maximize the activations in a random direction are also semantically "
                      "related\" (Figures 2 and 4)", "direction-rows-coherent"),
        _units_vs_directions(
            by_meaning, f"Units are no more semantically coherent than random directions "
                        f"(scores: {', '.join(semantic)})",
            "\"the natural basis is not better than a random basis for inspecting the properties of phi(x)\"",
            "units-no-better", extra=f"; the largest edge of units in {semantic[0]} any 95% interval allows: {edge:+.3f}"),
    ]
    low_level = main[~main["statistic"].isin(semantic)]
    if len(low_level):
        found.append(_units_vs_directions(
            main, f"Units are no more coherent than random directions by any score, low-level ones included "
                  f"({', '.join(dict.fromkeys(main['statistic']))})",
            "\"no distinction between individual high level units and random linear combinations of high "
            "level units\" (abstract)", "units-no-better-any-score"))
    found.append(Finding(
        "The same holds for AlexNet on ImageNet", "Figures 3 and 4: rows of single units and of random "
        "directions both look semantically alike", "–", None,
        "needs pretrained AlexNet weights and ImageNet validation images, which the book does not ship",
        key="alexnet-units"))
    share = f"{probe.succeeded} of {probe.attacked}"
    if probe.succeeded:
        ours = (f"{share} attacks succeed, mean distortion {probe.mean_distortion:.3f} (the 10-class "
                f"network's own minimum: {probe.reference_distortion:.3f})")
        small = probe.mean_distortion <= max_distortion
    else:
        ours, small = f"{share} attacks succeed", False
    found.append(Finding(
        "A binary classifier on frozen features has adversarial examples as small as Table 1's",
        "Figure 6 (QuocNet, car vs not car): every shown car is no longer recognised after an "
        "imperceptible change", ours, probe.succeeded == probe.attacked and small,
        f"our MNIST analog: 'is it a 3?' on Conv's frozen features; small taken as a mean distortion "
        f"<= {max_distortion:g}, the largest in the paper's Table 1", key="figure6-small"))
    if probe.invisible is not None:
        found.append(Finding(
            "Those adversarial examples are imperceptible",
            "Figure 6: \"imperceptible\" changes", f"{probe.invisible} of {probe.succeeded} invisible by the book's "
            "measure", probe.succeeded > 0 and probe.invisible == probe.succeeded,
            f"the measure of lib.visibility ({visibility.RULE})", key="figure6-imperceptible"))
    return found
