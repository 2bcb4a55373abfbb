"""Every table of the paper beside the book's numbers, collected from `lib` for the "paper vs book" page.

Each function computes the book's numbers now (from the committed models and the on-disk caches of
`lib.experiments`), reads the paper's from `lib.paper`, and returns a frame that shows both and the gap
computed by code. `long_form` turns any of them into one row per (row, quantity) pair, and `summary`
collects every table in that form.
"""
from __future__ import annotations

import base64
import html
import math
import re
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd
from IPython.display import HTML

from . import experiments, imagenet, paper, spectral, zoo
from . import table1 as faithful
from .findings import BOUND_FACTOR, DISTORTION_FACTOR, ERROR_PP, SUBSET_ERROR_PP, Finding, count, within_factor

GAP_NOTE = "gap = book - paper (percentage points for errors); ratio = book / paper"


def _check_n(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def table1() -> pd.DataFrame:
    """Table 1: training and test error and minimal distortion of the six models, book beside paper.

    The distortion is the whole training set's, from the committed runs of `lib.table1`, under the
    target reading and aggregate closest to the paper's column (`table1.choose_target_reading`, named
    in the `reading` column).
    """
    errors = experiments.table1_errors()
    whole = faithful.distortion_table("all")
    statistic, aggregate = faithful.choose_target_reading(whole)
    chosen = whole[whole["statistic"] == statistic].assign(reading=f"{statistic} target, {aggregate}")
    chosen = chosen.rename(columns={aggregate: "distortion", "paper": "paper distortion",
                                    f"ratio {aggregate}": "distortion ratio book/paper"})
    frame = errors.merge(chosen[["model", "reading", "images", "misclassified", "distortion", "paper distortion",
                                 "distortion ratio book/paper"]], on="model")
    frame["train gap (pp)"] = (frame["train error %"] - frame["paper train %"]).round(2)
    return frame[["model", "paper name", "train error %", "paper train %", "train gap (pp)", "test error %",
                  "paper test %", "test gap (pp)", "reading", "images", "misclassified", "distortion",
                  "paper distortion", "distortion ratio book/paper"]]


def table3(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Table 3: the P1/P2 models' errors (and, where `lib.transfer` exists, mean distortion), book beside paper.

    The distortion is measured as in the transfer chapter: on `n` seeded test images, under the target
    reading that fits Table 1 best (`lib.table1.chosen_rule`).
    """
    try:
        from . import transfer
    except ImportError:
        transfer = None
    if transfer is not None and hasattr(transfer, "table3"):
        frame = transfer.table3(n=_check_n(n), seed=seed, target=faithful.chosen_rule())
    else:
        frame = experiments.table3_errors()
    for split in ("P1_error", "P2_error", "test_error"):
        frame[f"{split} gap (pp)"] = (frame[f"{split} %"] - frame[f"paper {split} %"]).round(2)
    return frame


def transfer_tables(n: int = 1000, seed: int = 0) -> dict[str, object]:
    """Tables 2 and 4 from `lib.transfer` as {"Table 2": TransferTable, "Table 4": TransferTable}."""
    from . import transfer

    # Table 2's adversarial rows from the whole training set under Table 1's chosen reading (its noise rows
    # from n images); Table 4 under the same reading, as in the transfer chapter
    return {"Table 2": table2_whole_set(transfer.table2(n=_check_n(n), seed=seed)),
            "Table 4": transfer.table4(n=n, seed=seed, target=faithful.chosen_rule())}


def table2_whole_set(subset):
    """Table 2 with its adversarial rows from the committed whole-training-set runs, under Table 1's chosen reading.

    Errors: `table1.cross_model_table` of the chosen rule; distortion: the chosen statistic and aggregate
    (`table1.choose_target_reading`). The noise rows (which no target rule touches) come from `subset`, a
    `transfer.table2` result on a seeded subset.
    """
    from .transfer import TransferTable

    distortions = faithful.distortion_table("all")
    statistic, aggregate = faithful.choose_target_reading(distortions)
    errors = faithful.cross_model_table(faithful.RULE_OF_STATISTIC[statistic])
    rows = distortions[distortions["statistic"] == statistic].set_index("model")
    errors["distortion"] = rows.loc[errors.index, aggregate]
    noise = subset.ours.loc[[r for r in subset.ours.index if r not in errors.index]]
    ours = pd.concat([errors[subset.ours.columns], noise])
    details = subset.details.reindex(noise.index).reindex(ours.index)  # the subset's adversarial rows are not these
    return TransferTable(ours, subset.paper.reindex(index=ours.index), details, {}, int(rows["images"].iloc[0]))


def side_by_side(ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Two frames of the same shape interleaved column by column: "X (book)", "X (paper)", "X gap"."""
    if list(ours.columns) != list(reference.columns) or list(ours.index) != list(reference.index):
        raise ValueError("book and paper frames must have the same rows and columns")
    parts = {}
    for column in ours.columns:
        parts[f"{column} (book)"] = ours[column]
        parts[f"{column} (paper)"] = reference[column]
        parts[f"{column} gap"] = (ours[column] - reference[column]).round(3)
    return pd.DataFrame(parts, index=ours.index)


def lipschitz_zoo(power_iters: int = 30, names: Sequence[str] = zoo.NAMES) -> pd.DataFrame:
    """Book only: the global upper Lipschitz bound (product of per-layer bounds) of each MNIST zoo model in names."""
    if not isinstance(power_iters, int) or isinstance(power_iters, bool) or power_iters <= 0:
        raise ValueError(f"power_iters must be a positive int, got {power_iters!r}")
    unknown = [n for n in names if n not in zoo.NAMES]
    if unknown or not names:
        raise ValueError(f"names must be zoo models {list(zoo.NAMES)}, got {list(names)!r}")
    rows = []
    for name in names:
        layers = spectral.layer_bounds(zoo.load(name), (1, 28, 28), power_iters=power_iters)
        rows.append({"model": name, "layers": len(layers),
                     "upper bound (product of the layers' bounds)": spectral.global_upper_bound(layers),
                     "largest layer bound": float(layers["paper_bound"].max())})
    return pd.DataFrame(rows)


def table5() -> tuple[pd.DataFrame, bool]:
    """Table 5 (AlexNet per-layer upper bounds): the paper's, with ours where the pretrained weights are here.

    Returns (frame, computed): computed is False when the AlexNet weights are missing (offline), and the
    book column is then empty.
    """
    frame = pd.DataFrame(paper.TABLE5)[["layer", "size", "upper_bound"]].rename(
        columns={"upper_bound": "paper upper bound"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = imagenet.load_alexnet_pretrained(allow_download=False)
    if model is None:
        frame["book upper bound"] = math.nan
        return frame, False
    ours = imagenet.alexnet_table5_layers(model)
    frame["book upper bound"] = ours["paper_bound"].to_numpy()[: len(frame)]
    frame["ratio book/paper"] = (frame["book upper bound"] / frame["paper upper bound"]).round(2)
    return frame, True


def long_form(table: str, ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (row, quantity): table, row, quantity, paper, book, gap, ratio; cells the paper lacks dropped."""
    if list(ours.columns) != list(reference.columns) or list(ours.index) != list(reference.index):
        raise ValueError("book and paper frames must have the same rows and columns")
    rows = []
    for row in ours.index:
        for column in ours.columns:
            p, b = reference.at[row, column], ours.at[row, column]
            if pd.isna(p):
                continue
            rows.append({"table": table, "row": str(row), "quantity": str(column), "paper": float(p),
                         "book": float(b), "gap": round(float(b) - float(p), 3),
                         "ratio": round(float(b) / float(p), 2) if p else math.nan})
    return pd.DataFrame(rows)


def _table1_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = frame["model"]
    ours = pd.DataFrame({"train error %": frame["train error %"].to_numpy(),
                         "test error %": frame["test error %"].to_numpy(),
                         "distortion": frame["distortion"].to_numpy()}, index=idx)
    ref = pd.DataFrame({"train error %": frame["paper train %"].to_numpy(),
                        "test error %": frame["paper test %"].to_numpy(),
                        "distortion": frame["paper distortion"].to_numpy()}, index=idx)
    return ours, ref


# Table 3's error columns (`experiments.table3_errors`) and the names a reader sees for them
TABLE3_ERRORS = {"P1_error %": "error on P1 %", "P2_error %": "error on P2 %", "test_error %": "test error %"}


def _table3_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = frame["model"]
    ours = pd.DataFrame({name: frame[c].to_numpy() for c, name in TABLE3_ERRORS.items()}, index=idx)
    ref = pd.DataFrame({name: frame[f"paper {c}"].to_numpy() for c, name in TABLE3_ERRORS.items()}, index=idx)
    if "distortion" in frame:
        ours["distortion"] = frame["distortion"].to_numpy()
        ref["distortion"] = frame["paper distortion"].to_numpy()
    return ours, ref


def summary(t1: pd.DataFrame, t3: pd.DataFrame, transfers: dict | None = None,
            t5: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every computed table in long form (see `long_form`), from the frames the functions above return."""
    parts = [long_form("Table 1", *_table1_pairs(t1)), long_form("Table 3", *_table3_pairs(t3))]
    for name, table in (transfers or {}).items():
        parts.append(long_form(name, table.ours, table.paper))
    if t5 is not None and t5["book upper bound"].notna().any():
        parts.append(long_form("Table 5", t5.set_index("layer")[["book upper bound"]].set_axis(["upper bound"], axis=1),
                               t5.set_index("layer")[["paper upper bound"]].set_axis(["upper bound"], axis=1)))
    return pd.concat(parts, ignore_index=True)


def beside(ours: pd.DataFrame, reference: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Two frames of the same shape as one of text cells "book (paper)", each number to `digits` significant digits.

    A cell the paper lacks (NaN) reads as the book's number alone. Half the columns of `side_by_side`,
    for a page: the gaps are in `summary` and the CSV file.
    """
    if list(ours.columns) != list(reference.columns) or list(ours.index) != list(reference.index):
        raise ValueError("book and paper frames must have the same rows and columns")
    if not isinstance(digits, int) or isinstance(digits, bool) or digits <= 0:
        raise ValueError(f"digits must be a positive int, got {digits!r}")

    def cell(book: float, theirs: float) -> str:
        return f"{book:.{digits}g}" if pd.isna(theirs) else f"{book:.{digits}g} ({theirs:.{digits}g})"

    return pd.DataFrame({column: [cell(b, p) for b, p in zip(ours[column], reference[column])]
                         for column in ours.columns}, index=ours.index)


# ----------------------------------------------------------------------------------------------
# What we found: each table of the paper, how many of its numbers the book reproduces
# ----------------------------------------------------------------------------------------------

TABLES = ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5")
TRANSFER_TABLES = ("Table 2", "Table 4")
# errors: the book's number within this many percentage points of the paper's, one tolerance per table
# (lib.findings' tolerances, shared with the chapters): ERROR_PP for Tables 1 and 3, each model's error on a
# whole data set; SUBSET_ERROR_PP for the transfer tables 2 and 4, whose noise rows (and all of Table 4's rows)
# are measured on a seeded subset of images. Table 2's adversarial rows, from the whole training set, keep
# their table's tolerance.
ERROR_TOLERANCE_PP = {"Table 1": ERROR_PP, "Table 3": ERROR_PP, "Table 2": SUBSET_ERROR_PP, "Table 4": SUBSET_ERROR_PP}
# distortions and bounds: book / paper within [1/r, r]
RATIO_TOLERANCE = {"distortion": DISTORTION_FACTOR, "upper bound": BOUND_FACTOR}
SHARE_TO_HOLD = 0.75  # a table's group of numbers is reproduced when at least this share is within tolerance
# groups of numbers, in the order a table shows them
GROUPS = ("error rates", "adversarial examples", "Gaussian noise", "magnified examples", "distortion",
          "upper bounds")
NOT_COUNTED = "not counted"  # a number the book sets rather than measures
# why a table is not computed, for a reader of the page (the verdict reads "not tested: " and this)
NOT_COMPUTED = {"Table 5": "AlexNet's pretrained weights do not come with the book and were not on the machine that "
                           "computed this page (the book is built offline); the book computes such bounds instead "
                           "for its MNIST models (chapter \"Lipschitz bounds\") and, as Table 5, for "
                           "EfficientNet-Lite0, an ImageNet network (chapter \"Natural images\")"}


def paper_numbers(table: str) -> str:
    """What the paper's numbers in `table` are, in words: the paper column of a table the book does not compute."""
    if table == "Table 5":
        layers = [row["layer"] for row in paper.TABLE5]
        bounds = ", ".join(f"{row['upper_bound']:g}" for row in paper.TABLE5)
        return f"upper bounds for AlexNet's {len(layers)} layers, {layers[0]} to {layers[-1]}: {bounds}"
    contents = {"Table 1": "the six MNIST models' errors and minimal distortions",
                "Table 2": "transfer across models: errors on other models' adversarial examples and on noise",
                "Table 3": "the P1/P2 models' errors and minimal distortions",
                "Table 4": "transfer across training sets: errors on adversarial, noise and magnified examples"}
    if table not in contents:
        raise ValueError(f"unknown table {table!r}; known: {list(TABLES)}")
    return contents[table]


_LONG_COLUMNS = ("table", "row", "quantity", "paper", "book")


def _check_long(long: pd.DataFrame) -> None:
    if not isinstance(long, pd.DataFrame):
        raise TypeError(f"expected the DataFrame that `summary` returns, got {type(long).__name__}")
    missing = [c for c in _LONG_COLUMNS if c not in long.columns]
    if missing:
        raise ValueError(f"the long table lacks the columns {missing} (pass what `summary` returns)")
    if long.empty:
        raise ValueError("the long table is empty")
    unknown = sorted(set(long["table"]) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; known: {list(TABLES)}")
    for column in ("paper", "book"):
        if not pd.api.types.is_numeric_dtype(long[column]) or long[column].isna().any():
            raise ValueError(f"the {column!r} column must hold a number in every row")


def _group(table: str, row: str, quantity: str) -> tuple[str, bool]:
    """(group of a number, whether the book sets it rather than measures it, so that it is not counted)."""
    transfer_row = table in TRANSFER_TABLES
    stated = row.startswith(("noise", "magnified"))  # a noise or magnified row: its size is set, not measured
    if quantity == "upper bound":
        return "upper bounds", False
    if quantity == "distortion":
        return "distortion", transfer_row and stated
    if not transfer_row:
        return "error rates", False
    if row.startswith("noise"):
        return "Gaussian noise", False
    if row.startswith("magnified"):
        return "magnified examples", False
    return "adversarial examples", quantity == row.removeprefix("adversarial ")  # a model's own examples: 100%


def tolerance(table: str, group: str) -> str:
    """The tolerance of a group of numbers, in words ("5 pp", "a factor of 1.25")."""
    if group in ("distortion", "upper bounds"):
        return f"a factor of {RATIO_TOLERANCE['distortion' if group == 'distortion' else 'upper bound']:g}"
    return f"{ERROR_TOLERANCE_PP[table]:g} pp"


def tables_judged_within(pp: float) -> str:
    """The tables whose error rates are judged within `pp` percentage points, in words ("Tables 1 and 3")."""
    numbers = [table.removeprefix("Table ") for table, tolerance_pp in ERROR_TOLERANCE_PP.items() if tolerance_pp == pp]
    if not numbers:
        raise ValueError(f"no table's error rates are judged within {pp!r} pp; the tolerances: {ERROR_TOLERANCE_PP}")
    if len(numbers) == 1:
        return f"Table {numbers[0]}"
    return f"Tables {', '.join(numbers[:-1])} and {numbers[-1]}"


def found_summary(found: Sequence[Finding]) -> str:
    """How many groups of numbers `findings` found reproduced, in words, for a page's prose."""
    counts = count(found)
    return (f"{counts['holds']} of the {len(found)} groups are reproduced, {counts['does not hold']} not, "
            f"and {counts['not tested']} not tested")


def judge(long: pd.DataFrame, noise_clipped: bool = True) -> pd.DataFrame:
    """`long` (what `summary` returns) with each number's group, tolerance, and whether it is within it.

    "within tolerance" is "yes", "no", or "not counted" for numbers the book sets rather than measures:
    the error of a model on its own adversarial examples (100% by construction) and the stated size of
    a noise or magnified row; and for the noise rows of the reading not chosen (`noise_clipped`: whether the
    counted noise is the clipped one), so that each of the paper's noise cells is counted once.
    """
    _check_long(long)
    groups, tolerances, within = [], [], []
    for table, row, quantity, p, b in long[list(_LONG_COLUMNS)].itertuples(index=False):
        group, constructed = _group(str(table), str(row), str(quantity))
        if group == "Gaussian noise" and str(row).endswith(", unclipped") == noise_clipped:
            constructed = True  # the other reading of the paper's noise: shown, not counted
        groups.append(group)
        tolerances.append(tolerance(table, group))
        if constructed:
            within.append(NOT_COUNTED)
            continue
        if group in ("distortion", "upper bounds"):
            r = RATIO_TOLERANCE["distortion" if group == "distortion" else "upper bound"]
            ok = within_factor(b, p, r)
        else:
            ok = abs(b - p) <= ERROR_TOLERANCE_PP[table] + 1e-9
        within.append("yes" if ok else "no")
    return long.assign(group=groups, tolerance=tolerances, **{"within tolerance": within})


def _finding(table: str, group: str, part: pd.DataFrame) -> Finding:
    counted = part[part["within tolerance"] != NOT_COUNTED]
    n, k = len(counted), int((counted["within tolerance"] == "yes").sum())
    skipped = len(part) - n
    claim = f"{table}, {group}: within {tolerance(table, group)} of the paper's"
    why = "of the other reading of the paper's noise" if group == "Gaussian noise" else "set by construction"
    numbers = f"{n} numbers" + (f" (and {skipped} {why}, not counted)" if skipped else "")
    if group == "Gaussian noise":
        kind = "unclipped" if counted["row"].str.endswith(", unclipped").all() else "clipped"
        numbers += f": each of the paper's noise cells once, beside our {kind} noise (the reading chosen on Figure 7)"
    if group in ("distortion", "upper bounds"):
        ratio = counted["book"] / counted["paper"]
        worst = counted.loc[(ratio.apply(lambda v: max(v, 1 / v) if v > 0 else math.inf)).idxmax()]
        spread = f"ratio book/paper {ratio.min():.2f} to {ratio.max():.2f}"
        farthest = f"farthest: {worst['row']}"
    else:
        gap = counted["book"] - counted["paper"]
        worst = counted.loc[gap.abs().idxmax()]
        spread = f"largest gap {worst['book'] - worst['paper']:+.2f} pp"
        farthest = f"{worst['row']}, {worst['quantity']}"
    return Finding(claim, numbers, f"{k} of {n} within; {spread} ({farthest})", k >= SHARE_TO_HOLD * n,
                   f"{k} of {n} within, {SHARE_TO_HOLD:.0%} needed" if k < SHARE_TO_HOLD * n else "",
                   key=f"paper-numbers:{table}/{group}")


def findings(long: pd.DataFrame, not_computed: Mapping[str, str] | None = None) -> list[Finding]:
    """One `Finding` per group of numbers of each paper table (`GROUPS`): are at least `SHARE_TO_HOLD` of them
    within the group's `tolerance`?

    `long` is what `summary` returns (or `judge` of it). A table of `TABLES` with no row in `long` gives
    an untested finding whose note is `not_computed[table]` (default: `NOT_COMPUTED`).
    """
    judged = long if isinstance(long, pd.DataFrame) and "within tolerance" in long.columns else judge(long)  # keep a judged reading
    reasons = {**NOT_COMPUTED, **(not_computed or {})}
    found = []
    for table in TABLES:
        rows = judged[judged["table"] == table]
        if rows.empty:
            found.append(Finding(f"{table}: the book's numbers beside the paper's", paper_numbers(table),
                                 "not computed", None, reasons.get(table, "not computed where this page was built"),
                                 key=f"paper-numbers:{table}"))
            continue
        for group in GROUPS:
            part = rows[rows["group"] == group]
            if len(part) and (part["within tolerance"] != NOT_COUNTED).any():
                found.append(_finding(table, group, part))
    return found


def csv_link(frame: pd.DataFrame, filename: str, text: str | None = None) -> HTML:
    """A link that downloads `frame` as a CSV file, the data inside the link: works offline and in static HTML."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(filename, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.csv", filename):
        raise ValueError(f"filename must be a plain name ending in .csv (letters, digits, . _ -), got {filename!r}")
    data = base64.b64encode(frame.to_csv(index=False).encode("utf-8")).decode("ascii")
    label = html.escape(text if text is not None else f"Download {filename} ({len(frame)} rows, CSV)")
    return HTML(f'<a download="{filename}" href="data:text/csv;base64,{data}">{label}</a>')


def everything(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every number of the paper's tables beside the book's, judged (`judge`): what the paper-vs-book page shows."""
    return judge(summary(table1(), table3(n=n, seed=seed), transfer_tables(n=n, seed=seed), table5()[0]),
                 noise_clipped=noise_reading_is_clipped())


def noise_reading_is_clipped() -> bool:
    """Whether chapter 2's reading of the paper's noise (closest to Figure 7's 51%, on training images) is clipped."""
    return faithful.closest_noise_reading(experiments.noise_accuracy()) == "clipped to [0,1]"
