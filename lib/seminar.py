"""The seminar guide's bookkeeping: the chapters' exercise lists, the exercises each session assigns, its numbers."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch

from . import ROOT, adversarial_sweep, data, paper, spectral, zoo
from .train import error_rate

CHAPTERS_DIR = ROOT / "chapters"
GUIDE = ROOT / "seminar.ipynb"

# The exercises each session assigns, as (chapter, exercise) pairs; the guide prints their text from the chapters.
ASSIGNMENTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((1, 3), (5, 2), (5, 3)),
    2: ((2, 1), (2, 3), (2, 4)),
    3: ((3, 2), (3, 3), (3, 4)),
    4: ((4, 1), (4, 3), (4, 4)),
    5: ((6, 2), (6, 3), (6, 5)),
    6: ((1, 1), (3, 5)),
}

EXERCISES_HEADING = re.compile(r"^##\s+Exercises\s*$", re.MULTILINE)
NEXT_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
ITEM = re.compile(r"^(\d+)\.\s+(.*)$")
# "chapter 2, exercise 3", "Chapter 5, exercises 1, 2 and 4" (case-insensitive; a reference may span a line break)
REFERENCE = re.compile(r"\bchapter\s+(\d+),\s+exercises?\s+(\d+(?:(?:,\s*|,?\s+and\s+)\d+)*)", re.IGNORECASE)
PLAN_HEADER = re.compile(r"^\|\s*Minutes\s*\|", re.IGNORECASE)


def chapter_notebook(chapter: int) -> Path:
    """The notebook of chapter `chapter`: the one file chapters/0N_*.ipynb."""
    if not isinstance(chapter, int) or isinstance(chapter, bool) or chapter <= 0:
        raise ValueError(f"chapter must be a positive int, got {chapter!r}")
    found = sorted(CHAPTERS_DIR.glob(f"{chapter:02d}_*.ipynb"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one notebook chapters/{chapter:02d}_*.ipynb, found {len(found)}")
    return found[0]


def markdown_cells(path: Path) -> list[str]:
    """The source of every markdown cell of the notebook at `path`, in order."""
    cells = json.loads(Path(path).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def exercises_in(markdown: str) -> dict[int, str]:
    """The numbered list under the '## Exercises' heading of `markdown`: {number: text on one line}."""
    heading = EXERCISES_HEADING.search(markdown)
    if heading is None:
        raise ValueError("no '## Exercises' heading")
    body = markdown[heading.end():]
    following = NEXT_HEADING.search(body)
    body = body[: following.start()] if following else body
    items: dict[int, list[str]] = {}
    current = None
    for line in body.splitlines():
        match = ITEM.match(line)
        if match:
            current = int(match.group(1))
            if current in items:
                raise ValueError(f"exercise {current} is listed twice")
            items[current] = [match.group(2).strip()]
        elif line.strip() and current is not None:
            items[current].append(line.strip())
    if not items:
        raise ValueError("the '## Exercises' heading has no numbered list under it")
    if list(items) != list(range(1, len(items) + 1)):
        raise ValueError(f"exercises are not numbered 1, 2, ...: {list(items)}")
    return {k: " ".join(v) for k, v in items.items()}


def chapter_exercises(chapter: int) -> dict[int, str]:
    """Chapter `chapter`'s exercises, as the markdown cell with its '## Exercises' heading lists them."""
    path = chapter_notebook(chapter)
    cells = [c for c in markdown_cells(path) if EXERCISES_HEADING.search(c)]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected one '## Exercises' cell, found {len(cells)}")
    return exercises_in(cells[0])


def cited_exercises(text: str) -> list[tuple[int, int]]:
    """Every (chapter, exercise) that `text` cites as 'chapter N, exercise k' or 'chapter N, exercises k, l and m'."""
    cited = []
    for match in REFERENCE.finditer(text):
        chapter = int(match.group(1))
        cited += [(chapter, int(k)) for k in re.findall(r"\d+", match.group(2))]
    return cited


def missing_exercises(cited: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pairs of `cited` whose chapter has no such exercise (or no such chapter)."""
    missing, lists = [], {}
    for chapter, number in cited:
        if chapter not in lists:
            try:
                lists[chapter] = chapter_exercises(chapter)
            except (FileNotFoundError, ValueError):
                lists[chapter] = {}
        if number not in lists[chapter]:
            missing.append((chapter, number))
    return missing


def assignment(session: int) -> str:
    """Markdown: the exercises `session` assigns, each with its number and its full text read from the chapter."""
    if session not in ASSIGNMENTS:
        raise KeyError(f"no session {session!r}; sessions: {sorted(ASSIGNMENTS)}")
    lines = []
    for chapter, number in ASSIGNMENTS[session]:
        text = chapter_exercises(chapter)[number]
        lines.append(f"- **Chapter {chapter}, exercise {number}.** {text}")
    return "\n".join(lines)


def plan_minutes(markdown: str) -> list[int]:
    """The 'Minutes' column of the first plan table (a table whose first header is 'Minutes') in `markdown`."""
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if PLAN_HEADER.match(line.strip())), None)
    if start is None:
        raise ValueError("no plan table (a table whose first column is 'Minutes')")
    minutes = []
    for line in lines[start + 2:]:  # skip the header and its |---| line
        if not line.strip().startswith("|"):
            break
        first = line.strip().strip("|").split("|")[0].strip()
        if not first.isdigit():
            raise ValueError(f"plan row without a whole number of minutes: {line!r}")
        minutes.append(int(first))
    if not minutes:
        raise ValueError("the plan table has no rows")
    return minutes


def paired(ours: pd.DataFrame, reference: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """One frame of strings 'ours (paper)' from two frames with the same rows and columns."""
    if list(ours.columns) != list(reference.columns) or list(ours.index) != list(reference.index):
        raise ValueError("book and paper frames must have the same rows and columns")
    return pd.DataFrame({c: [f"{b:.{digits}f} ({p:.{digits}f})" for b, p in zip(ours[c], reference[c])]
                         for c in ours.columns}, index=ours.index)


def table1_errors(t1: pd.DataFrame) -> pd.DataFrame:
    """From `report.table1()`: each model's training and test error beside the paper's, with the gaps."""
    return t1[["model", "paper name", "train error %", "paper train %", "train gap (pp)", "test error %",
               "paper test %", "test gap (pp)"]].set_index("model")


def table1_distortions(t1: pd.DataFrame) -> pd.DataFrame:
    """From `report.table1()`: each model's minimal distortion beside the paper's, under the reading it names."""
    return t1[["model", "paper name", "reading", "distortion", "paper distortion",
               "distortion ratio book/paper"]].set_index("model")


def table2_paired(rule: str) -> pd.DataFrame:
    """Table 2 on the whole training set (committed runs of `rule`), each cell 'ours (paper)', errors in %."""
    from . import table1

    ours = table1.cross_model_table(rule)
    reference = pd.DataFrame({name: paper.TABLE2[name][0] for name in ours.index}, index=ours.columns).T
    return paired(ours, reference.loc[ours.index, ours.columns])


def table3_records() -> pd.DataFrame:
    """The P1/P2 models' errors as recorded when they were trained, beside Table 3's."""
    rows = []
    for name in paper.TABLE3_MODELS:
        record, ref = zoo.record(name), paper.TABLE3[name]
        rows.append({"model": name, "trained on": record["spec"]["train_on"],
                     **{f"{k} %": record[k] for k in ("P1_error", "P2_error", "test_error")},
                     **{f"paper {k} %": ref[k] for k in ("P1_error", "P2_error", "test_error")}})
    return pd.DataFrame(rows).set_index("model")


def half_gaps(z: float = 2.0) -> pd.DataFrame:
    """Per P1/P2 model: error on the other half minus test error, its binomial standard error, and |gap| <= z SE."""
    halves = dict(zip(("P1", "P2"), (len(h) for h in data.split_halves())))
    n_test = len(data.load_mnist(train=False)[1])
    rows = []
    for name in paper.TABLE3_MODELS:
        record = zoo.record(name)
        own = record["spec"]["train_on"]
        other = "P2" if own == "P1" else "P1"
        p, q = record[f"{other}_error"] / 100, record["test_error"] / 100
        se = 100 * math.sqrt(p * (1 - p) / halves[other] + q * (1 - q) / n_test)
        gap = record[f"{other}_error"] - record["test_error"]
        rows.append({"model": name, "other half": other, "other-half error %": record[f"{other}_error"],
                     "test error %": record["test_error"], "gap (pp)": round(gap, 3), "SE of gap (pp)": round(se, 3),
                     f"within {z:g} SE": abs(gap) <= z * se})
    return pd.DataFrame(rows).set_index("model")


def noise_error(name: str, stddev: float, n: int = 1000, seed: int = 0, noise_seed: int = 1) -> dict[str, float]:
    """Error (%) of zoo model `name` on `n` seeded training images, clean and with clipped Gaussian noise of `stddev`."""
    x, y = data.fixed_subset(n, train=True, seed=seed)
    noisy, _ = data.gaussian_noise(x, stddev, seed=noise_seed, clip=True)
    model = zoo.load(name)
    return {"stddev": stddev, "clean error %": error_rate(model, x, y), "noisy error %": error_rate(model, noisy, y)}


def clipped_noise_bias(stddev: float = 0.3, draws: int = 40, n: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean brightening of black pixels by clipped Gaussian noise of `stddev`: measured, and stddev / sqrt(2 pi)."""
    x, _ = data.fixed_subset(n, train=True, seed=seed)
    bias = torch.zeros_like(x)
    for k in range(draws):
        bias += (data.gaussian_noise(x, stddev, seed=1000 + k)[0] - x) / draws
    return {"stddev": stddev, "measured on black pixels": bias[x == 0].mean().item(),
            "theory stddev/sqrt(2 pi)": stddev / math.sqrt(2 * math.pi)}


def adversarial_training_records() -> pd.DataFrame:
    """Chapter 4's finals, one row per method: the chosen setting, 3-seed mean and sd of test error, the paper's."""
    return adversarial_sweep.final_table(adversarial_sweep.all_records()).set_index("method")


def pool_differences(records: pd.DataFrame) -> dict[str, float]:
    """From `adversarial_training_records()`: the pool's mean test error minus weight decay's and dropout's (pp)."""
    mean = records["test error % (mean)"]
    return {other: round(float(mean["adversarial pool"] - mean[other]), 2) for other in ("weight decay", "dropout")}


def test_error_se(records: pd.DataFrame, baseline: str = "weight decay") -> float:
    """The binomial standard error (pp) of the `baseline` network's test error on the whole MNIST test set."""
    p = float(records.loc[baseline, "test error % (mean)"]) / 100
    return 100 * math.sqrt(p * (1 - p) / len(data.load_mnist(train=False)[1]))

def global_bounds(names: Sequence[str], power_iters: int = 20) -> pd.DataFrame:
    """Per zoo model: the product of its per-layer upper Lipschitz bounds (`spectral.layer_bounds`) and its largest factor."""
    rows = []
    for name in names:
        layers = spectral.layer_bounds(zoo.load(name), (1, 28, 28), power_iters=power_iters)
        rows.append({"model": name, "global upper bound": spectral.global_upper_bound(layers),
                     "largest layer bound": float(layers["paper_bound"].max())})
    return pd.DataFrame(rows).set_index("model")


def sigmoid_slopes(name: str = "N100-100-10", n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per sigmoid layer of zoo model `name`: largest and mean slope sigma'(t) on `n` seeded test images."""
    model = zoo.load(name)
    x, _ = data.fixed_subset(n, train=False, seed=seed)
    slopes: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: slopes.append((out * (1 - out)).flatten()))
             for m in model if isinstance(m, torch.nn.Sigmoid)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    if not slopes:
        raise ValueError(f"{name} has no sigmoid layer")
    return pd.DataFrame([{"sigmoid layer": k, "max slope": s.max().item(), "mean slope": s.mean().item()}
                         for k, s in enumerate(slopes, 1)]).set_index("sigmoid layer")


def decay_bounds(names: Sequence[str] = paper.TABLE1_MODELS[:3], n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per model: global bound L, median certified radius margin/(sqrt 2 L) and accuracy on `n` seeded test images."""
    x, y = data.fixed_subset(n, train=False, seed=seed)
    rows = []
    for name in names:
        model = zoo.load(name)
        bound = spectral.global_upper_bound(spectral.layer_bounds(model, (1, 28, 28), power_iters=20))
        rows.append({"model": name, "global bound L": bound,
                     "median certified radius": spectral.certified_radius(model, x, bound).median().item(),
                     "accuracy on these images %": 100 - error_rate(model, x, y)})
    return pd.DataFrame(rows).set_index("model")
