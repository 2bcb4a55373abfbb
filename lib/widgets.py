"""Sliders that need no kernel: every frame drawn once, embedded, switched by the browser.

A chapter calls `slider(draw, alt="what the figure shows", name=values, ...)`. Every combination of the
values (at most `MAX_FRAMES`) is drawn with `draw(**values)` and saved as a PNG; the output is one
self-contained HTML block of range inputs and images whose inline handlers show the chosen frame. So the
slider moves its figure in the static HTML book, in Jupyter and in Colab alike, with no widget front-end or
kernel. Each frame's alt text is the figure's description followed by its slider values,
"<alt>; name = value, ...", so a screen reader hears what the figure shows and where the sliders stand
(`alt` is therefore not available as a slider name).
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from IPython.display import HTML, display
from tqdm import tqdm

MAX_FRAMES = 64  # frames per slider: keeps a chapter page within a few MB
DPI = 72

# Row-major index of the chosen values (first slider slowest, as itertools.product), then show that frame.
_ON_INPUT = ("const b=this.closest('.ipe-slider');let i=0;"
             "b.querySelectorAll('input[type=range]').forEach(e=>{i=i*(+e.max+1)+(+e.value)});"
             "b.querySelectorAll('img.ipe-frame').forEach((m,k)=>{m.style.display=k==i?'':'none'});"
             "this.nextElementSibling.textContent=JSON.parse(this.dataset.values)[this.value];")


def value_text(value: Any) -> str:
    """How a slider value reads in a label and in a frame's alt text."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_description(alt: object) -> str:
    """`alt` if it is a non-empty description of the figure; else a ValueError that says what is missing."""
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError(f"alt must describe the slider's figure (what is plotted, its axes, its panels) for its "
                         f"frames' alt text, e.g. alt=\"Distortion against c\"; got {alt!r}")
    return alt


@dataclass(frozen=True)
class Slider:
    """Frames of `draw` over the grid of `choices` (row-major, first name slowest), as PNG bytes.

    `description` says what the figure shows; it starts every frame's alt text.
    """
    choices: dict[str, list[Any]]
    default: dict[str, Any]
    frames: list[bytes]
    description: str

    def __post_init__(self) -> None:
        check_description(self.description)

    def alt(self, values: dict[str, Any]) -> str:
        """The alt text of the frame for `values`: the description, then 'name = value' for each slider."""
        settings = ", ".join(f"{name} = {value_text(values[name])}" for name in self.choices)
        return f"{self.description}; {settings}"

    def index(self, values: dict[str, Any]) -> int:
        """Position in `frames` of the frame for `values`."""
        i = 0
        for name, options in self.choices.items():
            i = i * len(options) + options.index(values[name])
        return i

    def _repr_html_(self) -> str:
        uid = hashlib.sha1(b"".join(self.frames)).hexdigest()[:12]
        rows = []
        for name, options in self.choices.items():
            labels = [value_text(v) for v in options]
            position = options.index(self.default[name])
            rows.append(
                f'<div><label style="display:inline-block;min-width:9em">{html.escape(name)}</label>'
                f'<input type="range" min="0" max="{len(options) - 1}" step="1" value="{position}" '
                f'aria-label="{html.escape(name)}" data-name="{html.escape(name)}" '
                f'data-values="{html.escape(json.dumps(labels))}" oninput="{html.escape(_ON_INPUT)}" '
                f'style="width:min(60%,24em);vertical-align:middle"> '
                f'<output style="font-family:monospace">{html.escape(labels[position])}</output></div>')
        shown = self.index(self.default)
        images = []
        for k, (frame, combo) in enumerate(zip(self.frames, itertools.product(*self.choices.values()))):
            alt = html.escape(self.alt(dict(zip(self.choices, combo))))
            data = base64.b64encode(frame).decode("ascii")
            images.append(f'<img class="ipe-frame" alt="{alt}" src="data:image/png;base64,{data}" '
                          f'style="max-width:100%{"" if k == shown else ";display:none"}">')
        return (f'<div class="ipe-slider" id="ipe-slider-{uid}">{"".join(rows)}'
                f'<div>{"".join(images)}</div></div>')


def frames(draw: Callable[..., plt.Figure], defaults: dict[str, Any] | None = None, *, alt: str,
           max_frames: int = MAX_FRAMES, dpi: int = DPI, **choices: Sequence[Any]) -> Slider:
    """Draw `draw(**values)` for every combination of `choices`; `defaults` picks the frame shown first.

    `alt` (required, non-empty) describes the figure: what is plotted, its axes, its panels. Each frame's
    alt text is "<alt>; name = value, ...".
    """
    check_description(alt)
    if not choices:
        raise ValueError("give at least one keyword with the values to choose from")
    grid = {name: list(values) for name, values in choices.items()}
    for name, values in grid.items():
        if not values:
            raise ValueError(f"no values to choose from for {name!r}")
        if len(values) == 1:
            raise ValueError(f"{name!r} has one value ({values[0]!r}): a slider needs at least two; "
                             "pass it to the drawing function and show a plain figure instead")
        if len({value_text(v) for v in values}) < len(values):
            raise ValueError(f"the values for {name!r} repeat (as labels): {values}")
    n_frames = 1
    for values in grid.values():
        n_frames *= len(values)
    if n_frames > max_frames:
        sizes = " x ".join(f"{len(v)} {name}" for name, v in grid.items())
        raise ValueError(f"{sizes} = {n_frames} frames, more than {max_frames}: choose fewer values")
    default = dict(defaults or {})
    unknown = set(default) - set(grid)
    if unknown:
        raise ValueError(f"defaults for names that have no slider: {sorted(unknown)}")
    for name, values in grid.items():
        if name in default and default[name] not in values:
            raise ValueError(f"default {default[name]!r} for {name!r} is not among its values {values}")
        default.setdefault(name, values[len(values) // 2])
    pngs = []
    for combo in tqdm(list(itertools.product(*grid.values())), desc="slider frames", leave=False):
        figure = draw(**dict(zip(grid, combo)))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(figure)
        pngs.append(buffer.getvalue())
    return Slider(grid, default, pngs, alt)


def slider(draw: Callable[..., plt.Figure], defaults: dict[str, Any] | None = None, *, alt: str,
           **choices: Sequence[Any]) -> None:
    """Show sliders over `choices` that switch between pre-drawn figures of `draw` (no kernel needed).

    `alt` (required, non-empty) describes the figure for its frames' alt text, as in `frames`.
    """
    display(HTML(frames(draw, defaults, alt=alt, **choices)._repr_html_()))
