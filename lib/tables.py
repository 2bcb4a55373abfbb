"""Tables as a reader sees them: no index column, counts as integers, a stated mark for missing cells."""
from __future__ import annotations

import pandas as pd
from pandas.io.formats.style import Styler

MISSING = "–"  # shown for NaN; a table that has one says why beside it


def show(frame: pd.DataFrame, digits: int = 4, index: bool = False, missing: str = MISSING,
         padded: bool = False) -> Styler:
    """`frame` for display: the index as ordinary columns (or hidden), integers as integers, floats to `digits`.

    padded: space between the cells (for a table of adjacent number columns that fits the page with it).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(frame).__name__}")
    frame = frame.reset_index(drop=not index)  # a fresh index also makes duplicate labels harmless to Styler
    formats = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_integer_dtype(values):
            formats[column] = "{:d}"
        elif pd.api.types.is_float_dtype(values):
            whole = values.dropna()
            if len(whole) and (whole == whole.round()).all() and whole.abs().max() < 1e15:
                formats[column] = lambda v: f"{int(v):d}"  # counts that came out as floats
            else:
                formats[column] = f"{{:.{digits}g}}"  # significant digits: 0.0273, 7.38, 1234
    return (frame.style.hide(axis="index").format(formats, na_rep=missing)
            .set_properties(**{"text-align": "right", **({"padding": "0.15em 0.6em"} if padded else {})}))
