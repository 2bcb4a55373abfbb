"""Section 4.2's transfer experiments: adversarial examples fed to other models (Table 2) and to models
trained on a disjoint half of the training set (Tables 3-4), against Gaussian noise, magnified, and swept.

An "examples" mapping is {source model name: adversarial set}, each set a dict of tensors like
`lib.experiments.adversarial_set` returns: x, y, x_adv, success, distortion (one entry per image).
Errors are in percent; an image counts as an error for a model when its prediction is not the true label.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from pandas.io.formats.style import Styler
from torch import Tensor, nn

from . import attack, data, experiments, paper, plots, zoo
from .findings import Finding
from .tables import show

Examples = Mapping[str, Mapping[str, Tensor]]

NOISE_STDDEVS = (0.1, 0.3)  # Table 2's two noise rows
MAGNIFIED_STDDEV = 0.1  # Table 4's magnified rows and its last noise row
SWEEP_STDDEVS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


# ----------------------------------------------------------------------------------------------
# Checks and evaluation
# ----------------------------------------------------------------------------------------------


def _check_models(models: Mapping[str, nn.Module]) -> None:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping {name: nn.Module}")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise ValueError(f"models[{name!r}] is a {type(model).__name__}, not an nn.Module")


def _check_images_labels(x: Tensor, y: Tensor, what: str = "x") -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"{what} must be a tensor of images [N,C,H,W], got {getattr(x, 'shape', type(x))}")
    if not isinstance(y, Tensor) or y.shape != (len(x),):
        raise ValueError(f"labels must be a tensor [N] matching {what} ({len(x)} images), got "
                         f"{getattr(y, 'shape', type(y))}")
    if len(x) == 0:
        raise ValueError(f"{what} holds no images")


def _check_stddev(stddev: float) -> float:
    if isinstance(stddev, bool) or not isinstance(stddev, (int, float, np.floating)) or not np.isfinite(stddev) \
            or stddev <= 0:
        raise ValueError(f"stddev must be a positive finite number, got {stddev!r}")
    return float(stddev)


def _check_examples(examples: Examples) -> None:
    if not isinstance(examples, Mapping) or not examples:
        raise ValueError("examples must be a non-empty mapping {source model: adversarial set}")
    for name, ex in examples.items():
        missing = {"x", "y", "x_adv", "success"} - set(ex)
        if missing:
            raise ValueError(f"examples[{name!r}] lacks {sorted(missing)}")
        _check_images_labels(ex["x"], ex["y"], f"examples[{name!r}]['x']")
        if ex["x_adv"].shape != ex["x"].shape or ex["success"].shape != ex["y"].shape:
            raise ValueError(f"examples[{name!r}]: x_adv {tuple(ex['x_adv'].shape)} / success "
                             f"{tuple(ex['success'].shape)} do not match x {tuple(ex['x'].shape)}")
        if not ex["success"].any():
            raise ValueError(f"examples[{name!r}] has no successful adversarial example")


def _common_images(examples: Examples) -> tuple[Tensor, Tensor]:
    """The clean images and labels shared by every adversarial set (ValueError if they differ)."""
    first = next(iter(examples.values()))
    for name, ex in examples.items():
        if not (torch.equal(ex["x"], first["x"]) and torch.equal(ex["y"], first["y"])):
            raise ValueError(f"examples[{name!r}] was made on other images than the first set: "
                             "transfer tables need one common subset")
    return first["x"], first["y"]


@torch.no_grad()
def error_rate(model: nn.Module, x: Tensor, y: Tensor, batch: int = 2000) -> float:
    """Error in percent of `model` on images x with true labels y."""
    _check_images_labels(x, y)
    wrong = sum(int((model(x[i : i + batch]).argmax(1) != y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    return 100.0 * wrong / len(x)


def load_models(names: Sequence[str]) -> dict[str, nn.Module]:
    """The named zoo models, in order, as a dict."""
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty sequence of zoo names, got {names!r}")
    return {name: zoo.load(name) for name in names}


# ----------------------------------------------------------------------------------------------
# The building blocks: transfer matrix, noise, magnification
# ----------------------------------------------------------------------------------------------


def cross_model_error(examples: Examples, models: Mapping[str, nn.Module]) -> pd.DataFrame:
    """Error % each column model makes on each row's successful adversarial examples (made on the row's model)."""
    _check_examples(examples)
    _check_models(models)
    rows = {}
    for source, ex in examples.items():
        ok = ex["success"].bool()
        rows[source] = {name: error_rate(model, ex["x_adv"][ok], ex["y"][ok]) for name, model in models.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass
class NoiseResult:
    """Error % of each model on Gaussian-noise copies of some images, and the size of the noise."""

    errors: pd.Series  # model name -> error %
    stddev: float  # the stated stddev
    drawn_stddev: float  # the standard deviation of the noise actually drawn (before clipping)
    distortion: float  # mean per-image distortion sqrt(sum r^2/784) of the clipped noisy images


def noise_error(x: Tensor, y: Tensor, models: Mapping[str, nn.Module], stddev: float, seed: int = 0,
                clip: bool = True) -> NoiseResult:
    """Each model's error % on x plus seeded Gaussian noise of the given stddev (clipped to [0,1] if `clip`)."""
    _check_images_labels(x, y)
    _check_models(models)
    stddev = _check_stddev(stddev)
    noisy, noise = data.gaussian_noise(x, stddev, seed=seed, clip=clip)
    errors = pd.Series({name: error_rate(model, noisy, y) for name, model in models.items()}, dtype=float)
    return NoiseResult(errors, stddev, noise.double().std().item(), attack.distortion(x, noisy).mean().item())


def magnify(x: Tensor, x_adv: Tensor, stddev: float, clip: bool = True) -> Tensor:
    """x + stddev * r / d(r), r = x_adv - x, d(r) = sqrt(sum r^2 / n): distortion exactly `stddev` before clipping.

    This is the paper's x + 0.1 (x'-x)/||x'-x|| with ||.|| read as the same root-mean-square norm it
    calls stddev (the plain L2 norm would give a distortion of 0.1/28 on MNIST). Images with r = 0
    (already misclassified, nothing to magnify) are returned unchanged. Clipped to [0,1] if `clip`.
    """
    if not isinstance(x, Tensor) or not isinstance(x_adv, Tensor) or x.shape != x_adv.shape or x.dim() < 2:
        raise ValueError(f"x and x_adv must be tensors of one shape [N,...], got "
                         f"{getattr(x, 'shape', type(x))} and {getattr(x_adv, 'shape', type(x_adv))}")
    stddev = _check_stddev(stddev)
    r = x_adv - x
    d = attack.distortion(x, x_adv)
    scale = torch.where(d > 0, stddev / d.clamp_min(torch.finfo(d.dtype).tiny), torch.ones_like(d))
    out = x + r * scale.view(-1, *([1] * (x.dim() - 1)))
    return out.clamp(0.0, 1.0) if clip else out


def magnified_error(examples: Examples, models: Mapping[str, nn.Module], stddev: float) -> pd.DataFrame:
    """Like `cross_model_error`, with each successful example's perturbation rescaled to `stddev` (then clipped)."""
    _check_examples(examples)
    stddev = _check_stddev(stddev)
    scaled = {}
    for source, ex in examples.items():
        ok = ex["success"].bool()
        scaled[source] = {"x": ex["x"][ok], "y": ex["y"][ok], "x_adv": magnify(ex["x"][ok], ex["x_adv"][ok], stddev),
                          "success": torch.ones(int(ok.sum()), dtype=torch.bool)}
    return cross_model_error(scaled, models)


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


@dataclass
class TransferTable:
    """One transfer table: ours beside the paper's (error % per row x column model, plus "distortion")."""

    ours: pd.DataFrame
    paper: pd.DataFrame
    details: pd.DataFrame  # per row: images, success %, stated stddev, clipping (`CLIPPED` or `NOT_CLIPPED`), drawn
    # noise stddev, measured distortion
    examples: dict = field(repr=False, default_factory=dict)  # the adversarial sets the rows were made from
    images: int = 0

    @property
    def difference(self) -> pd.DataFrame:
        """Ours minus the paper's, cell by cell (percentage points; distortion in its own units)."""
        return (self.ours - self.paper).round(4) + 0.0  # + 0.0: no "-0" where a gap rounds to zero


ROWS = "examples of, or noise"  # the heading of a transfer table's row names on the page
CLIPPED, NOT_CLIPPED = "clipped", "unclipped"  # a row's "clipping" in `TransferTable.details`: to [0, 1] or not


def shown(frame: pd.DataFrame, rows: str = ROWS, digits: int = 4) -> Styler:
    """A transfer-table frame for the page (`lib.tables.show`): row names as a first, left-aligned column headed
    `rows`; text cells (such as `lib.report.beside`'s "book (paper)") right-aligned like the numbers."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    return show(frame.rename_axis(rows), digits=digits, index=True).set_properties(
        subset=[rows], **{"text-align": "left"})


def adversarial_sets(names: Sequence[str], n: int, train: bool, seed: int = 0,
                     target: str = "runner-up") -> dict[str, dict]:
    """One cached adversarial set per named model, all on the same seeded subset."""
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return {name: experiments.adversarial_set(name, n=n, train=train, seed=seed, target=target) for name in names}


def _adversarial_details(examples: Examples, prefix: str = "") -> dict[str, dict]:
    out = {}
    for source, ex in examples.items():
        ok = ex["success"].bool()
        d = attack.distortion(ex["x"][ok], ex["x_adv"][ok])
        out[prefix + source] = {"images": int(ok.sum()), "success %": 100.0 * ok.double().mean().item(),
                                "stated stddev": np.nan, "clipping": CLIPPED, "drawn noise stddev": np.nan,
                                "measured distortion": d.mean().item()}
    return out


def _noise_rows(x: Tensor, y: Tensor, models: Mapping[str, nn.Module], stddev: float, label: str, seed: int,
                clips: Sequence[bool]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Rows of noise errors (one per clipping choice; the "distortion" column = the stated stddev) and details."""
    rows, details = {}, {}
    for clip in clips:
        result = noise_error(x, y, models, stddev, seed=seed, clip=clip)
        name = label if clip else f"{label}, unclipped"
        rows[name] = {**result.errors[list(models)].to_dict(), "distortion": result.stddev}
        details[name] = {"images": len(x), "success %": np.nan, "stated stddev": result.stddev,
                         "clipping": CLIPPED if clip else NOT_CLIPPED,
                         "drawn noise stddev": result.drawn_stddev, "measured distortion": result.distortion}
    return pd.DataFrame.from_dict(rows, orient="index"), details


def _reference(rows: Mapping[str, tuple[Sequence[float], float]], columns: Sequence[str], index: Sequence[str],
               like: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers as a frame shaped like ours: rows[label] = (errors per column, distortion)."""
    frame = pd.DataFrame.from_dict({label: dict(zip(columns, errors), distortion=d)
                                    for label, (errors, d) in rows.items()}, orient="index")
    return frame.reindex(index=index, columns=like.columns)


def table2(n: int = 1000, seed: int = 0, target: str = "runner-up", stddevs: Sequence[float] = NOISE_STDDEVS,
           noise_seed: int = 0, clips: Sequence[bool] = (True, False),
           names: Sequence[str] = paper.TABLE1_MODELS) -> TransferTable:
    """Table 2: minimal adversarial examples of n seeded training images made on each model, fed to every model.

    Rows: the source models (with their mean distortion) and Gaussian noise of each stddev on the same
    images, clipped to [0,1] and (row ", unclipped") not; a noise row's "distortion" is the stated stddev,
    as in the paper (`details` has the measured sizes). The paper does not say whether it clipped, so
    both noise variants are compared with its one noise row of that stddev.
    """
    models = load_models(names)
    examples = adversarial_sets(names, n, train=True, seed=seed, target=target)
    x, y = _common_images(examples)
    ours = cross_model_error(examples, models)
    details = _adversarial_details(examples)
    ours["distortion"] = [details[s]["measured distortion"] for s in ours.index]
    reference = {}
    for stddev in stddevs:
        label = f"noise stddev {stddev:g}"
        rows, more = _noise_rows(x, y, models, stddev, label, noise_seed, clips)
        ours = pd.concat([ours, rows])
        details.update(more)
        key = f"noise-{stddev:g}"
        if key in paper.TABLE2:
            reference.update({row: paper.TABLE2[key] for row in rows.index})
    reference.update({k: v for k, v in paper.TABLE2.items() if k in ours.index})
    paper_frame = _reference(reference, paper.TABLE2_COLUMNS, ours.index, ours)
    return TransferTable(ours, paper_frame, pd.DataFrame.from_dict(details, orient="index").reindex(ours.index),
                         dict(examples), len(x))


def table3(n: int = 1000, seed: int = 0, target: str = "runner-up") -> pd.DataFrame:
    """Table 3: the P1/P2 models' error on P1, P2 and test, and their mean minimal distortion on n test images."""
    frame = experiments.table3_errors()
    examples = adversarial_sets(paper.TABLE3_MODELS, n, train=False, seed=seed, target=target)
    details = _adversarial_details(examples)
    frame["distortion"] = [details[name]["measured distortion"] for name in frame["model"]]
    frame["paper distortion"] = [paper.TABLE3[name]["distortion"] for name in frame["model"]]
    frame["distortion ratio ours/paper"] = (frame["distortion"] / frame["paper distortion"]).round(2)
    return frame


def paper_stddev(key: str) -> float:
    """The stddev in one of `lib.paper.TABLE4`'s row names ("... (stddev 0.062)" -> 0.062)."""
    return float(re.search(r"stddev ([0-9.]+)", key).group(1))


MATCHING_NOISE = "noise at the adversarial stddev"


def table4(n: int = 1000, seed: int = 0, target: str = "runner-up", magnified_stddev: float = MAGNIFIED_STDDEV,
           noise_seed: int = 0, clips: Sequence[bool] = (True, False),
           names: Sequence[str] = paper.TABLE3_MODELS) -> TransferTable:
    """Table 4: test-set adversarial examples made on each P1/P2 model, fed to all three; noise; magnified examples.

    Rows, in the paper's order: adversarial examples of each model; Gaussian noise whose stddev is
    the mean distortion of those examples; the examples magnified to `magnified_stddev` (see
    `magnify`); Gaussian noise of that stddev. Noise rows come clipped and (", unclipped") not.
    """
    magnified_stddev = _check_stddev(magnified_stddev)
    if len(names) != len(paper.TABLE4_COLUMNS):
        raise ValueError(f"table4 compares {len(paper.TABLE4_COLUMNS)} models with the paper's, got {list(names)}")
    models = load_models(names)
    examples = adversarial_sets(names, n, train=False, seed=seed, target=target)
    x, y = _common_images(examples)
    adversarial = cross_model_error(examples, models)
    details = _adversarial_details(examples, prefix="adversarial ")
    adversarial.index = [f"adversarial {s}" for s in adversarial.index]
    adversarial["distortion"] = [details[s]["measured distortion"] for s in adversarial.index]
    matching = float(adversarial["distortion"].mean())
    noise_matching, more = _noise_rows(x, y, models, matching, MATCHING_NOISE, noise_seed, clips)
    details.update(more)
    magnified = magnified_error(examples, models, magnified_stddev)
    magnified.index = [f"magnified {s}" for s in magnified.index]
    magnified["distortion"] = magnified_stddev
    for source, ex in examples.items():
        ok = ex["success"].bool()
        m = magnify(ex["x"][ok], ex["x_adv"][ok], magnified_stddev)
        details[f"magnified {source}"] = {"images": int(ok.sum()), "success %": 100.0 * ok.double().mean().item(),
                                          "stated stddev": magnified_stddev, "clipping": CLIPPED,
                                          "drawn noise stddev": np.nan,
                                          "measured distortion": attack.distortion(ex["x"][ok], m).mean().item()}
    noise_magnified, more = _noise_rows(x, y, models, magnified_stddev, f"noise stddev {magnified_stddev:g}",
                                        noise_seed, clips)
    details.update(more)
    ours = pd.concat([adversarial, noise_matching, magnified, noise_magnified])
    # the paper's rows: 3 adversarial, noise, 3 magnified, noise (each noise row compared with both of ours)
    keys = list(paper.TABLE4)
    blocks = [(adversarial.index, keys[0:3]), (noise_matching.index, [keys[3]] * len(noise_matching)),
              (magnified.index, keys[4:7]), (noise_magnified.index, [keys[7]] * len(noise_magnified))]
    reference = {label: (paper.TABLE4[key], paper_stddev(key))
                 for labels, ks in blocks for label, key in zip(labels, ks)}
    paper_frame = _reference(reference, paper.TABLE4_COLUMNS, ours.index, ours)
    return TransferTable(ours, paper_frame, pd.DataFrame.from_dict(details, orient="index").reindex(ours.index),
                         dict(examples), len(x))


def orientation_check(table: "TransferTable", prefix: str = "adversarial ") -> dict[str, float]:
    """Mean |ours - paper| over the off-diagonal adversarial cells, reading the paper's block as printed and transposed.

    The paper's text fixes the orientation ("we feed these examples to each of the models. The error
    for each model is displayed in the corresponding column"): rows are the models the examples were
    made on, columns the models they are fed to, as in `lib.paper`. A much smaller gap when transposed
    would say that our asymmetry is the reverse of the paper's, not that the table is misread.
    """
    ours, theirs = off_diagonal(table.ours, prefix), off_diagonal(table.paper, prefix)
    swapped = pd.Series({(i, j): theirs[(j, i)] for i, j in theirs.index})
    return {"as printed": float((ours - theirs).abs().mean()), "transposed": float((ours - swapped).abs().mean())}


# ----------------------------------------------------------------------------------------------
# What we found: the paper's claims of Section 4.2, each a test on a table's numbers
# ----------------------------------------------------------------------------------------------


def off_diagonal(frame: pd.DataFrame, prefix: str = "") -> pd.Series:
    """The cells (row = examples made on model i, column = model j != i) of a transfer table, keyed (i, j).

    The model columns are those that name a row's model (`prefix` + name); "distortion" is left out. Any
    other column (a stddev, a count) would be averaged in with the error rates, so it is refused: drop it
    first. A frame with no row of the prefix gives an empty series.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a transfer table (pandas DataFrame), got {type(frame).__name__}")
    sources = {row: row[len(prefix):] for row in frame.index
               if isinstance(row, str) and row.startswith(prefix) and row[len(prefix):] in frame.columns}
    if not sources:
        return pd.Series({}, dtype=float)
    others = [c for c in frame.columns if c not in set(sources.values()) | {"distortion"}]
    if others:
        raise ValueError(f"the columns {others} are neither a row's model nor 'distortion': drop them before taking "
                         "the off-diagonal transfer cells")
    cells = {(source, column): frame.loc[row, column] for row, source in sources.items()
             for column in frame.columns if column not in (source, "distortion")}
    return pd.Series(cells, dtype=float)


def raised(before: pd.Series, after: pd.Series) -> pd.Series:
    """Cell by cell, matched by key (`off_diagonal`'s (i, j)): is `after` above `before`? Both need the same keys."""
    if not isinstance(before, pd.Series) or not isinstance(after, pd.Series):
        raise TypeError("before and after must be pandas Series of cells (what off_diagonal returns)")
    if before.empty or set(before.index) != set(after.index):
        raise ValueError(f"before and after must hold the same, non-empty cells; only in before: "
                         f"{sorted(set(before.index) - set(after.index))}, only in after: "
                         f"{sorted(set(after.index) - set(before.index))}")
    return after.reindex(before.index) > before


def asymmetry(frame: pd.DataFrame, names: Sequence[str]) -> pd.Series:
    """For each pair of `names` (given from least to most regularised): do the examples made on the more regularised
    model fool the less regularised one more than the reverse? Keyed (more regularised, less regularised)."""
    names = list(names)
    missing = [n for n in names if n not in frame.index or n not in frame.columns]
    if len(names) < 2 or missing:
        raise ValueError(f"names must be two or more models with a row and a column each; missing: {missing}")
    return pd.Series({(names[j], names[i]): bool(frame.loc[names[j], names[i]] > frame.loc[names[i], names[j]])
                      for i in range(len(names)) for j in range(i + 1, len(names))}, dtype=bool)


def _above_noise(cells: pd.Series, noise: pd.Series) -> np.ndarray:
    """For each (source, column) cell: is it above the noise error of its column?"""
    return cells.values > noise.reindex(cells.index.get_level_values(1)).values


UNCLIPPED = ", unclipped"


def noise_words(row: str) -> str:
    """A noise row's name in words: 'noise stddev 0.3, unclipped' -> 'unclipped noise of stddev 0.3'."""
    kind = "unclipped" if row.endswith(UNCLIPPED) else "clipped"
    base = row.removesuffix(UNCLIPPED)
    if base == MATCHING_NOISE:
        return f"{kind} noise of the examples' stddev"
    return f"{kind} noise of stddev {paper_stddev(base):g}"


@dataclass(frozen=True)
class _Rows:
    """The noise rows of Tables 2 and 4 that the claims compare with."""
    noise2: list[str]  # Table 2's noise rows
    noise_matching: list[str]  # Table 4's noise at the adversarial stddev (before its magnified rows)
    noise_magnified: list[str]  # Table 4's noise at the magnified stddev (after them)


def _rows(t2: TransferTable, t4: TransferTable) -> _Rows:
    for name, table in (("t2", t2), ("t4", t4)):
        if not isinstance(table, TransferTable):
            raise TypeError(f"{name} must be a TransferTable (what table2/table4 return), got {type(table).__name__}")
        if list(table.ours.index) != list(table.paper.index) or list(table.ours.columns) != list(table.paper.columns):
            raise ValueError(f"{name}: the book's and the paper's frames must have the same rows and columns")
    noise2 = [r for r in t2.ours.index if r.startswith("noise stddev")]
    rows4 = list(t4.ours.index)
    magnified_at = next((i for i, r in enumerate(rows4) if r.startswith("magnified ")), None)
    if not noise2 or magnified_at is None:
        raise ValueError("the claims need table2's noise rows and table4's magnified rows")
    noise_matching = [r for r in rows4[:magnified_at] if r.startswith("noise")]
    noise_magnified = [r for r in rows4[magnified_at:] if r.startswith("noise")]
    if not noise_matching or not noise_magnified:
        raise ValueError("the claims need table4's noise rows before and after its magnified rows")
    if off_diagonal(t2.ours).empty or off_diagonal(t4.ours, "adversarial ").empty:
        raise ValueError("the claims need table2's and table4's adversarial rows (one per column model)")
    return _Rows(noise2, noise_matching, noise_magnified)


def _checks(t2: pd.DataFrame, t4: pd.DataFrame, rows: _Rows, pair: tuple[str, str],
            autoencoder: str) -> list[tuple[str, str, str, bool]]:
    """(claim key, claim, the numbers it was decided on, holds) for the frames of one side (book's or paper's)."""
    models2 = [c for c in t2.columns if c != "distortion"]
    models4 = [c for c in t4.columns if c != "distortion"]
    cross = off_diagonal(t2)
    per_column = cross.groupby(level=1).mean().reindex(models2)
    checks = []
    for row in rows.noise2:
        noise = t2.loc[row, models2]
        above = int((per_column > noise).sum())
        checks.append((
            f"t2-above-noise:{row}",
            f"Table 2: other models' examples fool each model more than {noise_words(row)} does "
            "(every column; at least 2x overall)",
            f"{cross.mean():.1f}% vs {noise.mean():.1f}% ({cross.mean() / max(noise.mean(), 1e-9):.1f}x); "
            f"columns above: {above}/{len(models2)}",
            bool(above == len(models2) and cross.mean() >= 2 * noise.mean())))

    smallest = [r for r in rows.noise2 if paper_stddev(r.removesuffix(UNCLIPPED)) == min(
        paper_stddev(n.removesuffix(UNCLIPPED)) for n in rows.noise2)]
    ae, others = per_column[autoencoder], per_column.drop(autoencoder)
    ae_noise = float(t2.loc[smallest, autoencoder].max())
    checks.append((
        "t2-autoencoder",
        f"Table 2: {autoencoder} resists the other models' examples best, yet not fully (above its error under "
        f"noise of stddev {paper_stddev(smallest[0]):g})",
        f"column means: {autoencoder} {ae:.1f}%, lowest other {others.idxmin()} {others.min():.1f}%; "
        f"{autoencoder} under that noise: {ae_noise:.1f}%",
        bool(ae < others.min() and ae > ae_noise)))

    cross4 = off_diagonal(t4, "adversarial ")
    same_data = pd.Series([t2.loc[pair[0], pair[1]], t2.loc[pair[1], pair[0]]])
    checks.append((
        "t4-weaker-than-width",
        f"Table 4: transfer across training sets is weaker than between {pair[0]} and {pair[1]} (same data, "
        "other width)",
        f"{cross4.mean():.1f}% vs {same_data.mean():.1f}%", bool(cross4.mean() < same_data.mean())))
    checks.append((
        "t4-weaker-than-t2",
        "Table 4: transfer across training sets is weaker than Table 2's mean transfer",
        f"{cross4.mean():.1f}% vs {cross.mean():.1f}%", bool(cross4.mean() < cross.mean())))
    for row in rows.noise_matching:
        noise = t4.loc[row, models4]
        above = _above_noise(cross4, noise)
        checks.append((
            f"t4-above-noise:{row}",
            f"Table 4: every cross-training-set cell is above {noise_words(row)}",
            f"cells above: {int(above.sum())}/{len(above)}; smallest {cross4.min():.1f}% vs noise at most "
            f"{noise.max():.1f}%", bool(above.all())))

    magnified = off_diagonal(t4, "magnified ").reindex(cross4.index)
    up = raised(cross4, magnified)
    checks.append((
        "t4-magnified-raises",
        "Table 4: magnifying the examples raises every cross-training-set cell",
        f"mean {cross4.mean():.1f}% -> {magnified.mean():.1f}%; cells raised: {int(up.sum())}/{len(up)}",
        bool(up.all())))
    for row in rows.noise_magnified:
        noise = t4.loc[row, models4]
        above = _above_noise(magnified, noise)
        checks.append((
            f"t4-magnified-above-noise:{row}",
            f"Table 4: every magnified cross-training-set cell is above {noise_words(row)}",
            f"cells above: {int(above.sum())}/{len(above)}; mean {magnified.mean():.1f}% vs noise mean "
            f"{noise.mean():.1f}%", bool(above.all())))
    return checks


def sweep_finding(sweep: pd.DataFrame) -> Finding:
    """At equal size: the other models' rescaled adversarial perturbations vs Gaussian noise, clipped and not."""
    if not isinstance(sweep, pd.DataFrame):
        raise TypeError(f"sweep must be the DataFrame that `sweep` returns, got {type(sweep).__name__}")
    missing = {"model", "stddev", "perturbation", "error %"} - set(sweep.columns)
    if missing:
        raise ValueError(f"the sweep lacks the columns {sorted(missing)}")
    kinds = {OTHERS, NOISE, NOISE_UNCLIPPED}
    if not kinds <= set(sweep["perturbation"]):
        raise ValueError(f"the sweep needs the perturbations {sorted(kinds)}, has {sorted(set(sweep['perturbation']))}")
    part = sweep[sweep["perturbation"].isin(kinds)].pivot_table(index=["model", "stddev"], columns="perturbation",
                                                                 values="error %")
    part = part.dropna()
    if part.empty:
        raise ValueError("the sweep has no (model, stddev) with both noise and the other models' examples")
    beats = (part[OTHERS] > part[NOISE]) & (part[OTHERS] > part[NOISE_UNCLIPPED])
    stddevs = part.index.get_level_values("stddev")
    return Finding(
        "Equal size (the sweep): other models' perturbations, rescaled, fool each model more than Gaussian noise "
        "of that stddev, clipped or not",
        "not measured: Tables 2 and 4 compare at fixed stddevs",
        f"{int(beats.sum())}/{len(beats)} (model, stddev) pairs, stddev {stddevs.min():g} to {stddevs.max():g}",
        bool(beats.all()), key="equal-size-sweep")


def findings(t2: TransferTable, t4: TransferTable, sweep: pd.DataFrame | None = None,
             pair: tuple[str, str] = ("N100-100-10", "N200-200-10"), autoencoder: str = "AE400-10") -> list[Finding]:
    """One `Finding` per claim of Section 4.2 that Tables 2 and 4 (and optionally the noise sweep) test.

    Each claim is a test on the book's numbers (`holds`); the same test runs on the paper's numbers
    (`paper`), and a note says so where it fails there too, that is, where the test does not state what
    the paper claims. `pair`: two Table 2 models trained on the same data (for "transfer across training
    sets is weaker"); `autoencoder`: the Table 2 model the paper calls the most resilient.
    """
    rows = _rows(t2, t4)
    for name in (*pair, autoencoder):
        if name not in t2.ours.index or name not in t2.ours.columns:
            raise ValueError(f"{name!r} is not a model of table2 (rows {list(t2.ours.index)})")
    ours = _checks(t2.ours, t4.ours, rows, pair, autoencoder)
    theirs = _checks(t2.paper, t4.paper, rows, pair, autoencoder)
    found = [Finding(claim, paper_numbers, our_numbers, holds,
                     "" if paper_holds else "the same test fails on the paper's own numbers", key=key)
             for (key, claim, our_numbers, holds), (*_, paper_numbers, paper_holds) in zip(ours, theirs)]
    if sweep is not None:
        found.append(sweep_finding(sweep))
    return found


# ----------------------------------------------------------------------------------------------
# Noise-level sweep
# ----------------------------------------------------------------------------------------------


NOISE, NOISE_UNCLIPPED = "Gaussian noise", "Gaussian noise, unclipped"
OWN, OTHERS = "own adversarial, rescaled", "other models' adversarial, rescaled"


def sweep(examples: Examples, models: Mapping[str, nn.Module], stddevs: Sequence[float] = SWEEP_STDDEVS,
          seed: int = 0) -> pd.DataFrame:
    """Error % of each model vs stddev: Gaussian noise (clipped and not), its own adversarial perturbations and
    the other models' (each rescaled to that stddev with `magnify`, then clipped), on the examples' common
    images. Long format: model, stddev, perturbation, error %, measured distortion (mean, after clipping)."""
    _check_examples(examples)
    _check_models(models)
    if not stddevs:
        raise ValueError("give at least one stddev")
    x, y = _common_images(examples)
    rows = []
    for stddev in stddevs:
        stddev = _check_stddev(stddev)
        noise = {NOISE: noise_error(x, y, models, stddev, seed=seed),
                 NOISE_UNCLIPPED: noise_error(x, y, models, stddev, seed=seed, clip=False)}
        sizes, errors = {}, {}
        for source, ex in examples.items():
            ok = ex["success"].bool()
            scaled = magnify(ex["x"][ok], ex["x_adv"][ok], stddev)
            sizes[source] = attack.distortion(ex["x"][ok], scaled).mean().item()
            errors[source] = {name: error_rate(model, scaled, ex["y"][ok]) for name, model in models.items()}
        for name in models:
            for kind, result in noise.items():
                rows.append({"model": name, "stddev": stddev, "perturbation": kind,
                             "error %": result.errors[name], "measured distortion": result.distortion})
            if name in examples:
                rows.append({"model": name, "stddev": stddev, "perturbation": OWN,
                             "error %": errors[name][name], "measured distortion": sizes[name]})
            others = [s for s in examples if s != name]
            if others:
                rows.append({"model": name, "stddev": stddev, "perturbation": OTHERS,
                             "error %": float(np.mean([errors[s][name] for s in others])),
                             "measured distortion": float(np.mean([sizes[s] for s in others]))})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Figures (drawn for a page column of `plots.PAGE_WIDTH_PX`: at most `plots.MAX_WIDTH_IN` wide, text >= 9 pt)
# ----------------------------------------------------------------------------------------------


def heatmaps(table: TransferTable, title: str, labels: tuple[str, str] = ("this book", "the paper")) -> plt.Figure:
    """Our transfer table above the paper's, one heatmap each on one colour scale (0-100% error), cells in %.

    Each row label carries that side's distortion (adversarial rows) or stated stddev (noise rows);
    `labels` titles the two heatmaps (say there which version of ours it is).
    """
    import seaborn as sns

    columns = [c for c in table.ours.columns if c != "distortion"]
    rows = len(table.ours)
    width = plots.MAX_WIDTH_IN
    fig, axes = plt.subplots(2, 1, figsize=(width, 2 * (0.3 * rows + 1.6) + 0.4), layout="constrained")
    for ax, (who, frame) in zip(axes, ((labels[0], table.ours), (labels[1], table.paper))):
        labels = [f"{row} ({d:.3g})" for row, d in zip(frame.index, frame["distortion"])]
        sns.heatmap(frame[columns].set_axis(labels), ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True,
                    fmt=".0f", annot_kws={"fontsize": plots.TEXT_PT}, linewidths=0.5,
                    cbar_kws={"label": "error %", "pad": 0.02})
        ax.set_title(who, fontsize=plots.TEXT_PT)
        ax.set_xlabel("model the examples are fed to", fontsize=plots.TEXT_PT)
        ax.set_ylabel("examples made on, or noise\n(distortion or stddev)", fontsize=plots.TEXT_PT)
        ax.tick_params(labelsize=plots.TICK_PT)
        ax.tick_params(axis="x", rotation=0)
        ax.tick_params(axis="y", rotation=0)
        ax.collections[0].colorbar.ax.tick_params(labelsize=plots.TICK_PT)
        ax.collections[0].colorbar.ax.yaxis.label.set_fontsize(plots.TEXT_PT)
    fig.suptitle(title, fontsize=plots.TITLE_PT)
    fig.canvas.draw()  # lay out, then slant the column names where they would run into each other
    for ax in axes:
        boxes = [label.get_window_extent() for label in ax.get_xticklabels()]
        if any(a.x1 + 4 > b.x0 for a, b in zip(boxes, boxes[1:])):
            ax.tick_params(axis="x", rotation=25)
            for label in ax.get_xticklabels():
                label.set_ha("right")
    return fig


PERTURBATION_STYLE = {NOISE: ("tab:gray", "o", "-"), NOISE_UNCLIPPED: ("black", "x", "--"),
                      OWN: ("tab:red", "s", "-"), OTHERS: ("tab:blue", "^", "-")}


def sweep_figure(frame: pd.DataFrame, ncols: int = 2, title: str | None = None) -> plt.Figure:
    """Error vs stddev for each model: noise, own and other models' rescaled adversarial perturbations.

    One panel per model (`ncols` to a row), each with its axis labels; the legend sits below the panels.
    """
    if frame.empty:
        raise ValueError("the sweep is empty")
    names = list(dict.fromkeys(frame["model"]))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(plots.MAX_WIDTH_IN, 2.5 * nrows + 1.0), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for ax, name in zip(axes.flat, names):
        for kind, (colour, marker, line) in PERTURBATION_STYLE.items():
            part = frame[(frame["model"] == name) & (frame["perturbation"] == kind)]
            if len(part):
                ax.plot(part["stddev"], part["error %"], marker=marker, color=colour, ls=line, label=kind, ms=4)
        ax.set_xscale("log")
        ax.set_ylim(-3, 103)
        ax.set_title(name, fontsize=plots.TEXT_PT)
        ax.set_xlabel("stddev (before clipping)", fontsize=plots.TEXT_PT)
        ax.set_ylabel("error %", fontsize=plots.TEXT_PT)
        ax.tick_params(labelsize=plots.TICK_PT, labelbottom=True, labelleft=True)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.remove()
    if title:
        fig.suptitle(title, fontsize=plots.TITLE_PT)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=plots.TICK_PT, frameon=False)
    return fig


def noise_panel(examples: Examples, frame: pd.DataFrame, stddev: float, source: str, n_images: int = 6,
                seed: int = 0) -> plt.Figure:
    """For one stddev: sample images clean / with noise / with `source`'s adversarial perturbation rescaled
    (above), and each model's error under every perturbation of a `sweep` frame (below, legend under it)."""
    stddev = _check_stddev(stddev)
    if source not in examples:
        raise ValueError(f"source {source!r} is not among the examples: {list(examples)}")
    part = frame[np.isclose(frame["stddev"], stddev)]
    if part.empty:
        raise ValueError(f"stddev {stddev} is not in the sweep")
    ex = examples[source]
    ok = ex["success"].bool() & (attack.distortion(ex["x"], ex["x_adv"]) > 0)
    x = ex["x"][ok][:n_images]
    noisy, _ = data.gaussian_noise(x, stddev, seed=seed)
    scaled = magnify(x, ex["x_adv"][ok][:n_images], stddev)
    names = list(dict.fromkeys(part["model"]))
    # drawn for a slider (72 dpi, shown unscaled up to the page width): larger than an inline figure
    text, small = plots.TEXT_PT + 2, plots.TICK_PT + 2
    fig = plt.figure(figsize=(1.4 * len(x) + 1.4, 4.4 + 0.5 * len(names) + 1.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.4, 0.5 * len(names) + 1.6])
    axes = top.subplots(3, len(x), squeeze=False)
    for row, (label, images) in enumerate((("clean", x), (f"noise\n{stddev:g}", noisy),
                                           (f"{source}\nadv., {stddev:g}", scaled))):
        for i, ax in enumerate(axes[row]):
            ax.imshow(images[i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize=small)
    top.suptitle(f"clean; Gaussian noise; {source}'s adversarial perturbation\n(both of stddev {stddev:g} before "
                 "clipping)", fontsize=small)
    ax = bottom.subplots()
    width = 0.8 / len(PERTURBATION_STYLE)
    for k, (kind, (colour, _, _)) in enumerate(PERTURBATION_STYLE.items()):
        values = part[part["perturbation"] == kind].set_index("model")["error %"].reindex(names)
        ax.barh(np.arange(len(names)) + (k - (len(PERTURBATION_STYLE) - 1) / 2) * width, values, width,
                color=colour, label=kind)
    ax.set_yticks(np.arange(len(names)), names)
    ax.tick_params(labelsize=small)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("error % at this stddev", fontsize=text)
    ax.set_ylabel("model", fontsize=text)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=small, loc="outside lower center", ncols=2,
               frameon=False)
    return fig
