"""Every table of the paper beside the book's numbers, collected from `lib` for the "paper vs book" page.

Each function computes the book's numbers now (from the committed models and the on-disk caches of
`lib.experiments`), reads the paper's from `lib.paper`, and returns a frame that shows both and the gap
computed by code. `long_form` turns any of them into one row per (row, quantity) pair, and `summary`
collects every table in that form.
"""
from __future__ import annotations

import math
import warnings

import pandas as pd

from . import experiments, imagenet, paper, spectral, zoo
from . import table1 as faithful

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
    whole = faithful.distortion_table("all", every_images=faithful.EVERY_IMAGES)
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
    """Table 3: the P1/P2 models' errors (and, where `lib.transfer` exists, mean distortion), book beside paper."""
    try:
        from . import transfer
    except ImportError:
        transfer = None
    if transfer is not None and hasattr(transfer, "table3"):
        frame = transfer.table3(n=_check_n(n), seed=seed)
    else:
        frame = experiments.table3_errors()
    for split in ("P1_error", "P2_error", "test_error"):
        frame[f"{split} gap (pp)"] = (frame[f"{split} %"] - frame[f"paper {split} %"]).round(2)
    return frame


def transfer_tables(n: int = 1000, seed: int = 0) -> dict[str, object] | None:
    """Tables 2 and 4 from `lib.transfer` as {"Table 2": TransferTable, "Table 4": ...}; None if it is missing."""
    try:
        from . import transfer
    except ImportError:
        return None
    if not (hasattr(transfer, "table2") and hasattr(transfer, "table4")):
        return None
    return {"Table 2": transfer.table2(n=_check_n(n), seed=seed), "Table 4": transfer.table4(n=n, seed=seed)}


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


def lipschitz_zoo(power_iters: int = 30) -> pd.DataFrame:
    """Book only: the global upper Lipschitz bound (product of per-layer bounds) of each MNIST zoo model."""
    if not isinstance(power_iters, int) or power_iters <= 0:
        raise ValueError(f"power_iters must be a positive int, got {power_iters!r}")
    rows = []
    for name in zoo.NAMES:
        layers = spectral.layer_bounds(zoo.load(name), (1, 28, 28), power_iters=power_iters)
        rows.append({"model": name, "layers": len(layers),
                     "upper bound (product of paper_bound)": spectral.global_upper_bound(layers),
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


def _table3_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    idx = frame["model"]
    cols = ["P1_error %", "P2_error %", "test_error %"]
    ours = pd.DataFrame({c: frame[c].to_numpy() for c in cols}, index=idx)
    ref = pd.DataFrame({c: frame[f"paper {c}"].to_numpy() for c in cols}, index=idx)
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
