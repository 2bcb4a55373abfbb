"""The seminar guide's bookkeeping: the chapters' exercise lists, the exercises each session assigns, its numbers.

Also what the guide's pages draw or print from the guide itself: the "guess the units" galleries of session 1
(unlabelled for projecting, labelled for after the guess), the links to the chapters' sections (checked
against the chapters' headings), and each session's one-page handout. The exercises are copied so that they
read away from their chapter's page (its sections named, its constants as numbers), and each page of the
guide links its first use of each glossary term (`linked_page`).
"""
from __future__ import annotations

import ast
import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from docutils.nodes import make_id

from . import ROOT, adversarial_sweep, data, paper, spectral, units, zoo
from .train import error_rate

CHAPTERS_DIR = ROOT / "chapters"
GUIDE = ROOT / "seminar.ipynb"
INSTRUCTOR = ROOT / "instructor.ipynb"
HANDOUTS = ROOT / "handouts.ipynb"
PAPER_URL = "https://arxiv.org/abs/1312.6199"

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


def cells_of(path: Path, kind: str) -> list[str]:
    """The source of every cell of type `kind` ("markdown" or "code") of the notebook at `path`, in order."""
    cells = json.loads(Path(path).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == kind]


def markdown_cells(path: Path) -> list[str]:
    """The source of every markdown cell of the notebook at `path`, in order."""
    return cells_of(path, "markdown")


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


# Where an assigned exercise points at its chapter's page ("the table above"), the guide's copy names the
# section instead: (chapter, exercise) -> ((the chapter's words, the copy's words, the section's heading), ...).
# "{section}" in the copy's words becomes a link to that heading. The tests check that each of the chapter's
# phrases is still in its exercise and that no other "above" or "below" is left in a copy but those of
# NOT_REFERENCES.
REFERENCES: dict[tuple[int, int], tuple[tuple[str, str, str], ...]] = {
    (2, 1): (("with the one above", "with the one in chapter 2's {section}",
              "How close to the true minimum? Linear models"),),
    (2, 3): (("(the noise table above)", "(the noise table in chapter 2's {section})",
              "Figure 7: what the perturbations look like"),),
    (6, 2): (("test images above", "test images of chapter 6's {section}",
              "Beyond the paper: how loose is the product?"),),
    (6, 3): (("of the images above", "of the test images of chapter 6's {section}",
              "Beyond the paper: how loose is the product?"),),
}
# "above" and "below" in an exercise that do not point at the page
NOT_REFERENCES: dict[tuple[int, int], tuple[str, ...]] = {(4, 1): ("how far above the full attack's",)}

GLUE_ROLE = re.compile(r"\{glue(:\w+)?\}`([^`]+)`")
CONSTANT = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)`")


def section_link(chapter: int, heading: str) -> str:
    """'section "<a href=...>heading</a>"' for the heading `heading` of chapter `chapter`'s page."""
    page = f"chapters/{chapter_notebook(chapter).stem}"
    return f'section "<a href="{page}.html#{heading_id(heading)}">{heading}</a>"'


def _top_level(source: str) -> list[ast.stmt]:
    """The top-level statements of a code cell (none if it is not plain Python, e.g. has a %magic)."""
    try:
        return ast.parse(source).body
    except SyntaxError:
        return []


def _chapter_statements(chapter: int) -> list[ast.stmt]:
    """The top-level statements of all of chapter `chapter`'s code cells, parsed once per version of the file."""
    path = chapter_notebook(chapter)
    return _parsed_code(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _parsed_code(path: Path, mtime_ns: int) -> list[ast.stmt]:
    return [node for source in cells_of(path, "code") for node in _top_level(source)]


def chapter_constants(chapter: int) -> dict[str, object]:
    """The constants chapter `chapter`'s code sets at the top level of a cell: {NAME: literal value}."""
    constants = {}
    for node in _chapter_statements(chapter):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id.isupper():
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return constants


def chapter_glue_values(chapter: int) -> dict[str, str]:
    """The text of each `glue("key", value)` of chapter `chapter` whose value needs only the chapter's constants."""
    constants, values = chapter_constants(chapter), {}
    for node in _chapter_statements(chapter):
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "glue"
                and len(call.args) >= 2 and isinstance(call.args[0], ast.Constant)):
            continue
        names = {n.id for n in ast.walk(call.args[1]) if isinstance(n, ast.Name)}
        if names <= set(constants):
            try:  # the chapter's own expression, with nothing in scope but its literal constants
                value = eval(compile(ast.Expression(call.args[1]), "<glue>", "eval"), {"__builtins__": {}},
                             dict(constants))
            except Exception:  # noqa: BLE001 - a value this cannot compute is glued from the chapter instead
                continue
            values[str(call.args[0].value)] = str(value)
    return values


def exercise_copy(chapter: int, number: int) -> str:
    """Chapter `chapter`'s exercise `number` as the guide prints it, readable away from the chapter's page.

    References to the page ("the table above") name the section (`REFERENCES`); a value the chapter glues
    or a constant of its code (`N_TEST`) becomes its number where the chapter's constants give it, and
    otherwise a glue reference to the chapter's page.
    """
    text = chapter_exercises(chapter)[number]
    for old, new, heading in REFERENCES.get((chapter, number), ()):
        text = text.replace(old, new.replace("{section}", section_link(chapter, heading)))
    glued, constants = chapter_glue_values(chapter), chapter_constants(chapter)
    source = f"/chapters/{chapter_notebook(chapter).name}"

    def glue(match: re.Match) -> str:
        kind, content = match.group(1) or "", match.group(2)
        if "::" in content:
            return match.group(0)
        if kind in ("", ":text") and content in glued:
            return glued[content]
        if kind == ":text":  # a key alone reads as "key:format" across pages: give the format
            return f"{{glue:text}}`{source}::{content}{'' if ':' in content else ':s'}`"
        return f"{{glue{kind}}}`{source}::{content}`"

    def constant(match: re.Match) -> str:
        value = constants.get(match.group(1))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return match.group(0)
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"

    return CONSTANT.sub(constant, GLUE_ROLE.sub(glue, text))


def assignment(session: int, page: Path | None = None) -> str:
    """Markdown: the exercises `session` assigns, each with its number and its text read from the chapter.

    Each text is `exercise_copy`'s. With `page`, the assignment as that page shows it: its glossary terms
    linked where the page first uses them (`linked_page`).
    """
    if session not in ASSIGNMENTS:
        raise KeyError(f"no session {session!r}; sessions: {sorted(ASSIGNMENTS)}")
    if page is not None:
        return _on_page(page, "assignment", session)
    lines = []
    for chapter, number in ASSIGNMENTS[session]:
        lines.append(f"- **Chapter {chapter}, exercise {number}.** {exercise_copy(chapter, number)}")
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


# Table 3's columns in words: the key of the training record and of `paper.TABLE3` -> the column's header
TABLE3_COLUMNS = {"P1_error": "error on P1 %", "P2_error": "error on P2 %", "test_error": "test error %"}


def table3_records() -> pd.DataFrame:
    """The P1/P2 models' errors as recorded when they were trained, beside Table 3's."""
    rows = []
    for name in paper.TABLE3_MODELS:
        record, ref = zoo.record(name), paper.TABLE3[name]
        rows.append({"model": name, "trained on": record["spec"]["train_on"],
                     **{header: record[k] for k, header in TABLE3_COLUMNS.items()},
                     **{f"paper: {header}": ref[k] for k, header in TABLE3_COLUMNS.items()}})
    return pd.DataFrame(rows).set_index("model")


def half_gaps(z: float = 2.0) -> pd.DataFrame:
    """Per P1/P2 model: error on the other half minus test error, its binomial standard error, and |gap| <= z SE.

    The last column says "yes" or "no".
    """
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
                     f"within {z:g} SE": "yes" if abs(gap) <= z * se else "no"})
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


PAPER_VERSIONS = {"iclr": "ICLR version", "v1": "arXiv v1 text"}


def paper_ranking(version: str) -> str:
    """A sentence: the test errors that `version` of the paper reports for the three methods, and their order."""
    if version not in paper.ADVERSARIAL_TRAINING:
        raise KeyError(f"no version {version!r}; versions: {list(paper.ADVERSARIAL_TRAINING)}")
    ref = paper.ADVERSARIAL_TRAINING[version]
    pool, dropout, decay = ref["adversarial pool"], ref["dropout"], ref["weight decay"]
    if pool < dropout < decay:
        order = "the pool beats dropout, which beats weight decay"
    else:
        lowest = min(("the pool", pool), ("dropout", dropout), ("weight decay", decay), key=lambda m: m[1])[0]
        order = f"not in the order pool, dropout, weight decay; {lowest} is lowest"
    label = PAPER_VERSIONS.get(version, version)
    return (f"The paper's {label}: test error {pool:g}% with the pool, {dropout:g}% with dropout, {decay:g}% with "
            f"weight decay alone, so {order}.")


def table4_cells() -> dict[str, int]:
    """The off-diagonal cells of Table 4 (row = examples made on one model, column = another), per block of rows.

    Read from `paper.TABLE4`: its "adversarial" rows and its "magnified" rows, each one row per model.
    """
    cells: dict[str, int] = {}
    for key in paper.TABLE4:
        match = re.match(r"(adversarial|magnified) (\S+)", key)
        if match and match.group(2) in paper.TABLE4_COLUMNS:
            others = [c for c in paper.TABLE4_COLUMNS if c != match.group(2)]
            cells[match.group(1)] = cells.get(match.group(1), 0) + len(others)
    return cells


def decay_fit_seconds(reading: str = zoo.PAPER_DECAY) -> pd.Series:
    """Seconds per model that the committed fits of the softmax models under `reading` took to train."""
    from . import table1

    frame = table1.load_decay_readings()
    rows = frame[frame["reading"] == reading]
    if rows.empty:
        raise KeyError(f"no committed fits under the reading {reading!r}")
    return rows.set_index("model")["seconds"]


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


# ---------------------------------------------------------------------------------------------- links to sections

# A link the guide writes to a heading of another page: <a href="chapters/05_units_vs_directions.html#figures-1-and-2-redrawn">.
# (MyST's [text](page#anchor) needs heading anchors, which the book does not configure; Sphinx gives every
# section the id docutils makes from its title, and a raw HTML link reaches it.)
SECTION_LINK = re.compile(r'<a href="([\w/.-]+)\.html#([\w-]+)">(.*?)</a>')
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)


def heading_id(title: str) -> str:
    """The id Sphinx gives the section of a MyST heading `title`: its text without markup, as docutils makes ids."""
    text = re.sub(r"`([^`]*)`", r"\1", title)  # inline code keeps its text
    text = re.sub(r"\$([^$]*)\$", lambda m: m.group(1).replace("\\", ""), text)  # $\lambda$ -> lambda
    text = re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", text)
    return make_id(text)


def page_source(page: str) -> Path:
    """The source of the book page `page` (a path without extension, as _toc.yml names it): .ipynb or .md."""
    for ext in (".ipynb", ".md"):
        if (ROOT / f"{page}{ext}").exists():
            return ROOT / f"{page}{ext}"
    raise FileNotFoundError(f"no page {page!r} (.ipynb or .md)")


def heading_ids(page: str) -> dict[str, str]:
    """{section id: heading} of every heading in the markdown of book page `page`."""
    path = page_source(page)
    texts = markdown_cells(path) if path.suffix == ".ipynb" else [path.read_text()]
    return {heading_id(m.group(2)): m.group(2) for text in texts for m in HEADING.finditer(text)}


def section_links(markdown: str) -> list[tuple[str, str, str]]:
    """Every (page, section id, link text) that `markdown` links to with SECTION_LINK."""
    return [(m.group(1), m.group(2), m.group(3)) for m in SECTION_LINK.finditer(markdown)]


def broken_section_links(markdown: str) -> list[tuple[str, str, str]]:
    """The links of `markdown` to a page that does not exist, or to a section id that page has no heading for."""
    broken = []
    for page, anchor, text in section_links(markdown):
        try:
            ids = heading_ids(page)
        except FileNotFoundError:
            ids = {}
        if anchor not in ids:
            broken.append((page, anchor, text))
    return broken


# ---------------------------------------------------------------------------------------------- session 1: guess the units

# The layers of chapter 5's "Figures 1 and 2, redrawn", with its seeds and sizes, so the rows are the chapter's.
GUESS_LAYERS = {  # name -> (zoo model, layer index)
    "Conv FC-128 (ReLU)": ("Conv", 5),
    "Conv maps (pooled)": ("Conv", 2),
    "N100 hidden 1 (sigmoid)": ("N100-100-10", 2),
    "N100 hidden 2 (sigmoid)": ("N100-100-10", 4),
}
GUESS_K, GUESS_MAX_UNITS, GUESS_DIRECTIONS, GUESS_SEED = 10, 128, 200, 0


@dataclass
class GuessRows:
    """One layer's rows for the guessing game: top-k images of units and of random directions, in a shuffled order."""

    layer: str
    images: torch.Tensor  # [N, 1, 28, 28], what the indices point into
    rows: list[torch.Tensor]  # per row, the k image indices, largest projection first
    kinds: list[str]  # per row, "unit 37" or "direction 2": the answer
    k: int

    def row_names(self) -> list[str]:
        """The neutral names the room votes on: "row 1", "row 2", ..."""
        return [f"row {r}" for r in range(1, len(self.rows) + 1)]

    def answer_key(self) -> pd.DataFrame:
        """Which row is which: one line per row, with whether it is a single unit."""
        return pd.DataFrame({"row": self.row_names(), "is": self.kinds,
                             "single unit": [kind.startswith("unit") for kind in self.kinds]}).set_index("row")


def guess_order(layer: str, n_rows: int, order_seed: int | None = None) -> np.ndarray:
    """The shuffled order of the rows of `layer`'s gallery: a permutation of range(`n_rows`).

    Seeded by `order_seed`, by default the layer's position in `GUESS_LAYERS`, so that each gallery has its
    own order (the rows of the units differ from gallery to gallery) and every build shows the same ones.
    """
    if layer not in GUESS_LAYERS:
        raise KeyError(f"no layer {layer!r}; layers: {list(GUESS_LAYERS)}")
    seed = list(GUESS_LAYERS).index(layer) if order_seed is None else order_seed
    return np.random.default_rng(seed).permutation(n_rows)


def guess_rows(layer: str, n_shown: int = 5, order_seed: int | None = None,
               images: torch.Tensor | None = None) -> GuessRows:
    """Chapter 5's top-k rows of `n_shown` units and `n_shown` random directions of `layer`, shuffled.

    The units, directions and k are chapter 5's (`GUESS_*`, the same seeds), on the MNIST test set unless
    `images` are given; only the order of the rows is new (`guess_order`, one per layer unless `order_seed`
    is given), so that their position gives nothing away.
    """
    if layer not in GUESS_LAYERS:
        raise KeyError(f"no layer {layer!r}; layers: {list(GUESS_LAYERS)}")
    if images is None:
        images = data.load_mnist(train=False)[0]
    name, index = GUESS_LAYERS[layer]
    acts = units.layer_activations(zoo.load(name), index, images)
    chosen = units.select_units(acts, GUESS_K, GUESS_MAX_UNITS, seed=GUESS_SEED)[:n_shown]
    directions = units.random_directions(acts.shape[1], GUESS_DIRECTIONS, seed=GUESS_SEED + 1)[:n_shown]
    if len(chosen) < n_shown:
        raise ValueError(f"{layer} has only {len(chosen)} usable units")
    top_units = units.top_k_images(acts, units.basis_directions(acts.shape[1], chosen), GUESS_K).indices
    top_dirs = units.top_k_images(acts, directions, GUESS_K).indices
    rows = [top_units[j] for j in range(n_shown)] + [top_dirs[j] for j in range(n_shown)]
    kinds = [f"unit {int(u)}" for u in chosen] + [f"direction {j}" for j in range(n_shown)]
    order = guess_order(layer, len(rows), order_seed)
    return GuessRows(layer, images, [rows[i] for i in order], [kinds[i] for i in order], GUESS_K)


def guess_gallery(guess: GuessRows, labelled: bool) -> plt.Figure:
    """The rows of `guess` in Figures 1-2's layout: named "row 1", ... only, or (`labelled`) also unit or direction.

    The unlabelled figure is for projecting while the room guesses: no text on it says which row is a unit.
    """
    names = guess.row_names()
    if labelled:
        names = [f"{name}: {kind}" for name, kind in zip(names, guess.kinds)]
        title = f"{guess.layer}: which rows are single units (the answer)"
    else:
        title = f"{guess.layer}: ten rows, each the top {guess.k} test images of one projection.\nWhich rows are single units?"
    return units.top_k_gallery(guess.images, guess.rows, names, suptitle=title)


def figure_texts(fig: plt.Figure) -> list[str]:
    """Every non-empty text drawn on `fig`: titles, axis labels, tick labels, free text."""
    return [t.get_text() for t in fig.findobj(plt.Text) if t.get_visible() and t.get_text().strip()]


# ---------------------------------------------------------------------------------------------- handouts

SESSION_TITLE = re.compile(r"^## Session (\d+)( \(optional\))?: (.*)$")


def session_cells(path: Path = GUIDE) -> dict[int, str]:
    """{session number: the markdown cell of `path` that opens it ('## Session N: ...')}."""
    found = {}
    for text in markdown_cells(path):
        match = SESSION_TITLE.match(text.splitlines()[0])
        if match:
            found[int(match.group(1))] = text
    return found


def session_title(session: int) -> str:
    """The heading of `session` in the guide, without the '## '."""
    return session_cells()[session].splitlines()[0].removeprefix("## ")


def bold_block(text: str, name: str) -> str:
    """The paragraph(s) after '**name.**' (or '**name:**') in `text`, up to the next bold block or heading."""
    match = re.search(rf"^\*\*{re.escape(name)}[.:]?\*\*[.:]?[ \t]*", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"no **{name}.** block")
    rest = text[match.end():]
    end = re.search(r"^\*\*[A-Z][^*]*\*\*|^#{1,6}\s", rest, re.MULTILINE)
    return rest[: end.start() if end else len(rest)].strip()


def paper_line(text: str) -> str:
    """What the '**Paper:**' line of a session names (the sections), up to '**Book:**'."""
    match = re.search(r"\*\*Paper:\*\*\s*(.*?)\s*\*\*Book:\*\*", text, re.DOTALL)
    if match is None:
        raise ValueError("no **Paper:** ... **Book:** line")
    return " ".join(match.group(1).split())


def prerequisite(text: str, name: str) -> str:
    """The '- *name:*' item of a session's prerequisites, on one line."""
    match = re.search(rf"^- \*{re.escape(name)}:\*\s*(.*?)(?=^- \*|\Z)", bold_block(text, "Prerequisites"),
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"no '- *{name}:*' prerequisite")
    return " ".join(match.group(1).split())


def handout(session: int, page: Path | None = None) -> str:
    """Markdown: the one-page handout of `session`, read from the guide (the heading is the handouts page's own).

    The paper's sections and its link, the learning goals, what to read and run (and the Colab path), the
    questions for discussion and the exercises to assign, in the guide's current words. With `page`, the
    handout as that page shows it: its glossary terms linked where the page first uses them (`linked_page`).
    """
    if page is not None:
        return _on_page(page, "handout", session)
    text = session_cells()[session]
    goals = bold_block(text, "Learning goals").removeprefix("After this session participants can").strip()
    questions = bold_block(text, "Questions for discussion")
    return "\n".join([
        f"**Paper:** Szegedy et al., *Intriguing properties of neural networks*, <{PAPER_URL}>: {paper_line(text)}",
        "",
        "**Goals.** After this session you can",
        "",
        goals,
        "",
        "**Before the session.**",
        "",
        f"- *Read:* {prerequisite(text, 'Read')}",
        f"- *Run:* {prerequisite(text, 'Run before')}",
        f"- *No local setup?* {prerequisite(text, 'Colab path')}",
        "",
        "**Questions for discussion.**",
        "",
        questions,
        "",
        "**Exercises.**",
        "",
        assignment(session),
    ])


# ---------------------------------------------------------------------------------------------- glossary links

GLOSSARY = ROOT / "glossary.md"

# The glossary terms the guide's pages link, each with the phrases that use it (a regular expression, matched
# case-insensitively on whole words within a line; a space matches spaces and tabs). Each page links the first
# use of each term and no other: a phrase that contains another term's phrase comes before it.
GLOSSARY_PHRASES: tuple[tuple[str, str], ...] = (
    ("pool", r"adversarial pools?|pools?"),
    ("adversarial example", r"adversarial examples?"),
    ("blind spot", r"blind spots?"),
    ("smoothness prior", r"smoothness prior"),
    ("target label", r"target labels?"),
    ("minimal distortion", r"minimal distortions?|minimum distortions?"),
    ("pooled stddev", r"pooled stddevs?"),
    ("optimality gap", r"optimality gaps?"),
    ("logit margin", r"logit margins?"),
    ("penalty problem", r"penalty problems?"),
    ("sharpened cross-entropy", r"sharpened cross-entropy"),
    ("refinement", r"refinement"),
    ("fast attack", r"fast attacks?"),
    ("QP", r"QP"),
    ("FGSM", r"FGSM|fast gradient sign method"),
    ("DeepFool", r"DeepFool"),
    ("runner-up", r"runner-up"),
    ("random target", r"random targets?"),
    ("mean of nine", r"mean of nine"),
    ("reading", r"readings?(?! group)(?!,)"),
    ("transfer", r"transfer|cross-model generali[sz]ation|cross-training-set generali[sz]ation"),
    ("clipped noise", r"clipped noise|unclipped noise"),
    ("magnified", r"magnified"),
    ("P1", r"P1|P2"),
    ("paper recipe", r"paper(?:-| )recipe"),
    ("modern recipe", r"modern recipe"),
    ("validation split", r"validation splits?"),
    ("finals", r"finals?"),
    ("dead unit", r"dead units?"),
    ("random direction", r"random directions?"),
    ("unit", r"units?|natural basis"),
    ("top-k set", r"top-k sets?"),
    ("label purity", r"label purity"),
    ("reference cosine", r"reference cosines?"),
    ("random sets", r"random sets"),
    ("Cohen's d", r"Cohen's d"),
    ("permutation test", r"permutation tests?"),
    ("Bonferroni", r"Bonferroni"),
    ("probe", r"probes?"),
    ("Lipschitz upper bound", r"Lipschitz upper bounds?|upper Lipschitz bounds?"),
    ("global upper bound", r"global upper bounds?"),
    ("Lipschitz constant", r"Lipschitz constants?"),
    ("FFT bound", r"FFT bounds?"),
    ("contraction factor", r"contraction factors?"),
    ("frame bounds", r"frame bounds?"),
    ("power iteration", r"power iterations?"),
    ("certified radius", r"certified radius|certified radii"),
    ("stddev", r"stddevs?"),
    ("distortion", r"distortions?"),
    ("tolerance", r"tolerances?"),
)
TERM_ROLE = re.compile(r"\{term\}`([^`<]*?)\s*(?:<([^`>]+)>)?`")
# What a link may not go into: code, math, roles, HTML, links, headings, quotations.
PROTECTED = (
    re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL),
    re.compile(r"^#{1,6}\s.*$", re.MULTILINE),
    re.compile(r"\{[\w:-]+\}`[^`]*`"),
    re.compile(r"`[^`]*`"),
    re.compile(r"\$\$.*?\$\$", re.DOTALL),
    re.compile(r"\$[^$]+\$"),
    re.compile(r"<a\b.*?</a>", re.DOTALL),
    re.compile(r"<[^<>]+>"),
    re.compile(r"\[[^\]]*\]\([^)]*\)"),
)
QUOTATION = re.compile(r'"[^"\n]*(?:\n[^"\n]+)*?"')  # within a paragraph
MASK = "\x00"


def glossary_entries(path: Path = GLOSSARY) -> list[tuple[str, ...]]:
    """The entries of the glossary page, each as the names it defines (the lines of its term, in order)."""
    entries: list[tuple[str, ...]] = []
    for block in re.findall(r"^```\{glossary\}\n(.*?)^```", Path(path).read_text(), re.MULTILINE | re.DOTALL):
        names: list[str] = []
        for line in block.splitlines():
            if line.strip() and not line[0].isspace():
                names.append(line.strip())
            elif names:
                entries.append(tuple(names))
                names = []
        if names:
            entries.append(tuple(names))
    return entries


def _entry_of(path: Path = GLOSSARY) -> dict[str, str]:
    """{any name of a glossary entry, lower case: the name GLOSSARY_PHRASES links it by}, for the entries it links."""
    linked = {name.lower(): name for name, _ in GLOSSARY_PHRASES}
    found = {}
    for names in glossary_entries(path):
        ours = [linked[n.lower()] for n in names if n.lower() in linked]
        for n in names:
            if ours:
                found[n.lower()] = ours[0]
    return found


def _phrase(pattern: str) -> re.Pattern:
    return re.compile(r"(?<![\w@/.-])(?:" + pattern.replace(" ", r"[ \t]+") + r")(?![\w-])", re.IGNORECASE)


PHRASES = {name: _phrase(pattern) for name, pattern in GLOSSARY_PHRASES}


def unlink_terms(markdown: str, entry_of: dict[str, str] | None = None) -> str:
    """`markdown` without the {term} roles of the terms GLOSSARY_PHRASES links whose text is one of the term's phrases.

    Roles of other terms, and roles whose text is not one of the term's phrases, stay.
    """
    entry_of = _entry_of() if entry_of is None else entry_of

    def plain(match: re.Match) -> str:
        text, target = match.group(1), match.group(2) or match.group(1)
        name = entry_of.get(target.strip().lower())
        return text if name and PHRASES[name].fullmatch(text) else match.group(0)

    return TERM_ROLE.sub(plain, markdown)


def link_terms(markdown: str, linked: Iterable[str] = (),
               entry_of: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """Link in `markdown` the first use of each term of GLOSSARY_PHRASES not in `linked`, and no other use of it.

    Returns the text and the terms linked in it (including those its remaining {term} roles link). Nothing is
    linked inside code, math, roles, HTML, links, headings or quotations.
    """
    entry_of = _entry_of() if entry_of is None else entry_of
    text = unlink_terms(markdown, entry_of)
    done = set(linked)
    kept = {entry_of.get((m.group(2) or m.group(1)).strip().lower()) for m in TERM_ROLE.finditer(text)} - {None}
    masked = text
    for pattern in PROTECTED:
        masked = pattern.sub(lambda m: MASK * len(m.group(0)), masked)
    masked = QUOTATION.sub(lambda m: MASK * len(m.group(0)), masked)
    links = []
    for name, _ in GLOSSARY_PHRASES:
        if name in done or name in kept:
            continue
        match = PHRASES[name].search(masked)
        if match is None:
            continue
        words = " ".join(match.group(0).split())
        role = f"{{term}}`{words}`" if words == name else f"{{term}}`{words} <{name}>`"
        links.append((match.start(), match.end(), role))
        masked = masked[: match.start()] + MASK * (match.end() - match.start()) + masked[match.end():]
        done.add(name)
    for start, end, role in sorted(links, reverse=True):
        text = text[:start] + role + text[end:]
    return text, done | kept


CALL = re.compile(r"seminar\.(assignment|handout)\((\d+)")


def page_parts(page: Path) -> list[tuple[str, object]]:
    """The texts of the guide's page `page` in order: ("markdown", its text) per markdown cell, and
    (kind, session) per code cell that prints `seminar.assignment(session, ...)` or `seminar.handout(session, ...)`."""
    parts: list[tuple[str, object]] = []
    for cell in json.loads(Path(page).read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            parts.append(("markdown", source))
        elif cell["cell_type"] == "code" and (match := CALL.search(source)):
            parts.append((match.group(1), int(match.group(2))))
    return parts


def linked_page(page: Path) -> list[str]:
    """The texts of `page_parts(page)`, each as the page should show it: every term of GLOSSARY_PHRASES that
    the page uses linked at its first use on the page and nowhere else."""
    entry_of, done, texts = _entry_of(), set(), []
    for kind, value in page_parts(page):
        raw = value if kind == "markdown" else (assignment if kind == "assignment" else handout)(value)
        text, done = link_terms(raw, done, entry_of)
        texts.append(text)
    return texts


def unlinked_uses(page: Path) -> list[tuple[int, str, str]]:
    """The markdown cells of `page` whose glossary links differ from `linked_page`'s: (part, is, should be)."""
    return [(i, part[1], text) for i, (part, text) in enumerate(zip(page_parts(page), linked_page(page)))
            if part[0] == "markdown" and part[1] != text]


def _on_page(page: Path, kind: str, session: int) -> str:
    parts = page_parts(page)
    if (kind, session) not in parts:
        raise ValueError(f"{Path(page).name} does not print seminar.{kind}({session})")
    return linked_page(page)[parts.index((kind, session))]
