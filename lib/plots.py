"""Figures: image grids, ours-vs-paper bars, heatmaps, sweep plots. They draw what they are given."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               size: float = 1.1, cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0,
               suptitle: str | None = None) -> plt.Figure:
    """A grid of [N,1,28,28] images with optional per-image titles."""
    images = images.detach().cpu()
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].squeeze(0).numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def ours_vs_paper(labels: Sequence[str], ours: Sequence[float], paper: Sequence[float], ylabel: str,
                  title: str = "", log: bool = False) -> plt.Figure:
    """Paired bars: our number beside the paper's for each label."""
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(labels)), 3.2))
    ax.bar(x - 0.2, ours, 0.4, label="this book", color="tab:blue")
    ax.bar(x + 0.2, paper, 0.4, label="paper", color="tab:gray")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
