"""Sliders that redraw a figure, and that still draw their default figure where no widget front-end exists.

A chapter calls `slider(draw, name=values, ...)`: the figure for the default values is drawn as an
ordinary output (so the static HTML book and nbval show it), and, where ipywidgets is available, a
set of sliders follows whose output area redraws `draw(**values)` when a slider moves.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
from IPython.display import display


def slider(draw: Callable[..., plt.Figure], defaults: dict[str, Any] | None = None,
           **choices: Sequence[Any]) -> None:
    """Draw `draw(**defaults)` now, then offer one selection slider per keyword to redraw it."""
    if not choices:
        raise ValueError("give at least one keyword with the values to choose from")
    defaults = dict(defaults or {})
    for name, values in choices.items():
        values = list(values)
        if not values:
            raise ValueError(f"no values to choose from for {name!r}")
        if name in defaults and defaults[name] not in values:
            raise ValueError(f"default {defaults[name]!r} for {name!r} is not among its values")
        defaults.setdefault(name, values[len(values) // 2])
    fig = draw(**defaults)
    display(fig)
    plt.close(fig)
    try:
        import ipywidgets as w
    except ImportError:  # static use: the default figure above is all there is
        return
    controls = {
        name: w.SelectionSlider(options=list(values), value=defaults[name], description=name,
                                continuous_update=False, style={"description_width": "initial"},
                                layout=w.Layout(width="60%"))
        for name, values in choices.items()
    }
    out = w.Output()

    def redraw(**values: Any) -> None:
        with out:
            out.clear_output(wait=True)
            figure = draw(**values)
            display(figure)
            plt.close(figure)

    for control in controls.values():
        control.observe(lambda _change: redraw(**{n: c.value for n, c in controls.items()}), names="value")
    display(w.VBox([w.HTML("<i>Move a slider to redraw the figure above with other values.</i>"),
                    *controls.values(), out]))
