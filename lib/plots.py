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


def attack_panel(x: torch.Tensor, x_adv: torch.Tensor, probs: torch.Tensor, label: int, target: int,
                 title: str = "", magnify: float | None = None) -> plt.Figure:
    """x, the perturbation r (magnified), x + r, and the class probabilities of x + r."""
    r = (x_adv - x).squeeze().detach()
    scale = magnify if magnify is not None else 0.5 / max(r.abs().max().item(), 1e-12)
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.6), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
    panels = [(x, f"x (label {label})", 0, 1, "gray"), (0.5 + scale * r, f"r x {scale:.0f} (+0.5)", 0, 1, "RdBu_r"),
              (x_adv, "x + r", 0, 1, "gray")]
    for ax, (img, name, lo, hi, cmap) in zip(axes, panels):
        ax.imshow(img.squeeze().detach().numpy(), cmap=cmap, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    colors = ["tab:green" if k == label else "tab:red" if k == target else "tab:gray" for k in range(len(probs))]
    axes[3].bar(range(len(probs)), probs.detach().numpy(), color=colors)
    axes[3].set_xticks(range(len(probs)))
    axes[3].set_ylim(0, 1)
    axes[3].set_title("p(class | x + r): green label, red target", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pairs_grid(originals: torch.Tensor, others: torch.Tensor, titles: Sequence[str] | None = None,
               ncols: int = 5, suptitle: str | None = None) -> plt.Figure:
    """Figure 7's layout: each original beside its distorted version (originals odd, others even columns)."""
    interleaved = torch.stack([originals, others], 1).flatten(0, 1)
    return image_grid(interleaved, titles, ncols=2 * ncols, suptitle=suptitle)
