"""Figures: image grids, ours-vs-paper bars, heatmaps, sweep plots. They draw what they are given.

Every figure is drawn for the book's content column, `PAGE_WIDTH_PX` wide: at most `MAX_WIDTH_IN`
inches wide (at matplotlib's 100 dpi, about the column's width, so it is hardly scaled down) with text
of at least `TICK_PT` points. `smallest_text` and `unlabelled_axes` check a figure against that.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from matplotlib.text import Text

PAGE_WIDTH_PX = 688  # the book's content column
INLINE_DPI = 100  # the dpi of a figure shown inline (matplotlib's default)
MAX_WIDTH_IN = 7.5  # widest figure: 750 px at 100 dpi, shown at 92% on the page
MIN_PT = 8  # the smallest text a reader should meet on the page, after the figure is scaled to fit
TITLE_PT, TEXT_PT, TICK_PT = 11, 10, 9


def smallest_text(fig: plt.Figure, dpi: float = INLINE_DPI, page_px: float = PAGE_WIDTH_PX) -> tuple[float, str]:
    """(size in points, text) of the smallest visible text of `fig` once saved tight at `dpi` and shrunk to `page_px`.

    Text of hidden axes (turned off or invisible) does not count. A figure narrower than the page is
    not scaled (scale 1).
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width_px = fig.get_tightbbox(renderer).width * dpi
    scale = min(1.0, page_px / width_px)
    hidden: set[int] = set()
    for ax in fig.findobj(Axes):
        if not ax.get_visible():
            hidden |= {id(t) for t in ax.findobj(Text)}
        elif not ax.axison:
            hidden |= {id(t) for axis in (ax.xaxis, ax.yaxis) for t in axis.findobj(Text)}
    texts = [t for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    if not texts:
        raise ValueError("the figure has no visible text")
    smallest = min(texts, key=lambda t: t.get_fontsize())
    return smallest.get_fontsize() * scale, smallest.get_text()


def unlabelled_axes(fig: plt.Figure) -> list[str]:
    """Titles (or positions) of the figure's plotting axes that lack an x or a y label.

    Axes without ticks (images) and colour bars are not plotting axes.
    """
    missing = []
    for k, ax in enumerate(fig.findobj(Axes)):
        if not ax.get_visible() or not ax.axison or ax.get_label() == "<colorbar>":
            continue
        if not len(ax.get_xticks()) and not len(ax.get_yticks()):
            continue
        if not ax.get_xlabel().strip() or not ax.get_ylabel().strip():
            missing.append(ax.get_title() or f"axes {k}")
    return missing


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points (about 0.55 em a character)."""
    return textwrap.fill(text, width=max(20, int(width_in * 72 / (0.55 * fontsize))))


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               size: float = 1.1, cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0,
               suptitle: str | None = None, scale_each: bool = False) -> plt.Figure:
    """A grid of [N,1,28,28] images with optional per-image titles.

    `size` is each image's width in inches, reduced where `ncols` of them would be wider than `MAX_WIDTH_IN`.
    `scale_each`: divide each image by its own largest absolute value and draw it on [-1, 1] (`vmin` and
    `vmax` are then ignored), so that signed images such as filters each get the full contrast of a
    diverging `cmap`, symmetric about 0; the images are then comparable in shape, not in size.
    """
    images = images.detach().cpu()
    if scale_each:
        images = images / images.flatten(1).abs().amax(1).clamp_min(1e-30).view(-1, *[1] * (images.dim() - 1))
        vmin, vmax = -1.0, 1.0
    n = len(images)
    nrows = max(1, -(-n // ncols))
    size = min(size, MAX_WIDTH_IN / ncols)
    title_pt = TICK_PT if titles is not None else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + title_pt / 60)), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].squeeze(0).numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=TICK_PT)
    if suptitle:
        fig.suptitle(_wrap(suptitle, ncols * size, TITLE_PT), fontsize=TITLE_PT)
    return fig


def ours_vs_paper(labels: Sequence[str], ours: Sequence[float], paper: Sequence[float], ylabel: str,
                  title: str = "", log: bool = False, plain_ticks: bool = False) -> plt.Figure:
    """Paired bars: our number beside the paper's for each label (legend above the bars).

    `plain_ticks` (with `log`): ticks at 1, 2, 5 times the powers of ten, written as plain numbers ("2", "10",
    "0.5", not "2×10^0"), with the axis starting at the power of ten below the smallest bar.
    """
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH_IN, max(5, 1.1 * len(labels))), 3.4), layout="constrained")
    ax.bar(x - 0.2, ours, 0.4, label="this book", color="tab:blue")
    ax.bar(x + 0.2, paper, 0.4, label="paper", color="tab:gray")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.tick_params(labelsize=TICK_PT)
    ax.set_ylabel(ylabel, fontsize=TEXT_PT)
    ax.set_xlabel("model", fontsize=TEXT_PT)
    if log:
        ax.set_yscale("log")
        if plain_ticks:
            _plain_log_ticks(ax, np.concatenate([np.asarray(ours, dtype=float), np.asarray(paper, dtype=float)]))
    if title:
        fig.suptitle(_wrap(title, MAX_WIDTH_IN, TITLE_PT), fontsize=TITLE_PT)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize=TICK_PT, frameon=False)
    return fig


def _plain_log_ticks(ax: Axes, values: np.ndarray) -> None:
    """A log y axis from the power of ten below the smallest positive value to above the largest, ticked at
    1, 2 and 5 times the powers of ten and labelled as plain numbers (no minor tick labels)."""
    values = values[np.isfinite(values) & (values > 0)]
    if not len(values):
        return
    low, high = 10.0 ** np.floor(np.log10(values.min())), values.max() * 1.15
    ticks = [m * 10.0**e for e in range(round(np.log10(low)), int(np.ceil(np.log10(high))) + 1) for m in (1, 2, 5)
             if low <= m * 10.0**e <= high]
    ax.set_ylim(low, high)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def attack_panel(x: torch.Tensor, x_adv: torch.Tensor, probs: torch.Tensor, label: int, target: int,
                 title: str = "", magnify: float | None = None) -> plt.Figure:
    """x, the perturbation r (magnified), x + r, and the class probabilities of x + r."""
    r = (x_adv - x).squeeze().detach()
    scale = magnify if magnify is not None else 0.5 / max(r.abs().max().item(), 1e-12)
    fig, axes = plt.subplots(1, 4, figsize=(MAX_WIDTH_IN, 2.7), gridspec_kw={"width_ratios": [1, 1, 1, 1.8]},
                             layout="constrained")
    panels = [(x, f"x (label {label})", 0, 1, "gray"), (0.5 + scale * r, f"r x {scale:.0f} (+0.5)", 0, 1, "RdBu_r"),
              (x_adv, "x + r", 0, 1, "gray")]
    for ax, (img, name, lo, hi, cmap) in zip(axes, panels):
        ax.imshow(img.squeeze().detach().numpy(), cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=TEXT_PT)
        ax.axis("off")
    colors = ["tab:green" if k == label else "tab:red" if k == target else "tab:gray" for k in range(len(probs))]
    axes[3].bar(range(len(probs)), probs.detach().numpy(), color=colors)
    axes[3].set_xticks(range(len(probs)))
    axes[3].set_ylim(0, 1)
    axes[3].tick_params(labelsize=TICK_PT)
    axes[3].set_title("p(class | x + r)", fontsize=TEXT_PT)
    axes[3].set_xlabel("class (green: label, red: target)", fontsize=TICK_PT)
    axes[3].set_ylabel("probability", fontsize=TICK_PT)
    if title:
        fig.suptitle(_wrap(title, MAX_WIDTH_IN, TITLE_PT), fontsize=TITLE_PT)
    return fig


def pairs_grid(originals: torch.Tensor, others: torch.Tensor, titles: Sequence[str] | None = None,
               ncols: int = 5, suptitle: str | None = None) -> plt.Figure:
    """Figure 7's layout: each original beside its distorted version (originals odd, others even columns)."""
    interleaved = torch.stack([originals, others], 1).flatten(0, 1)
    return image_grid(interleaved, titles, ncols=2 * ncols, suptitle=suptitle)


def magnified_difference(x: np.ndarray, x_adv: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """Figure 5's middle column: (x_adv - x) x factor in grey levels, shifted by 128 and clamped, as uint8 [H,W,3].

    x and x_adv: [3,H,W] in [0,1].
    """
    difference = (np.asarray(x_adv, dtype=np.float64) - np.asarray(x, dtype=np.float64)) * 255 * factor + 128
    return np.clip(np.round(difference), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def figure5_rows(rows: Sequence[dict], factor: float = 10.0, suptitle: str | None = None) -> plt.Figure:
    """Figure 5's layout, one row per example: original, difference x factor (+128, clamped), adversarial.

    Each row is a dict with x and x_adv ([3,H,W] in [0,1]) and the captions under the original and the
    adversarial image (`before`, `after`), e.g. "Egyptian cat 0.51".
    """
    if not rows:
        raise ValueError("no examples to draw")
    fig, axes = plt.subplots(len(rows), 3, figsize=(MAX_WIDTH_IN * 0.8, 2.5 * len(rows) + 0.4), squeeze=False,
                             layout="constrained")
    for ax_row, row in zip(axes, rows):
        images = [np.asarray(row["x"]).transpose(1, 2, 0), magnified_difference(row["x"], row["x_adv"], factor),
                  np.clip(np.asarray(row["x_adv"]), 0, 1).transpose(1, 2, 0)]
        captions = [row["before"], f"difference x {factor:g} (+128)", row["after"]]
        for ax, image, caption in zip(ax_row, images, captions):
            ax.imshow(image, interpolation="nearest")
            ax.set_xlabel(_wrap(caption, MAX_WIDTH_IN * 0.8 / 3, TEXT_PT), fontsize=TEXT_PT)
            ax.set_xticks([])
            ax.set_yticks([])
    if suptitle:
        fig.suptitle(_wrap(suptitle, MAX_WIDTH_IN * 0.8, TITLE_PT), fontsize=TITLE_PT)
    return fig
