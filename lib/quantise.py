"""The attack on the 8-bit grid: adversarial examples that survive being saved as an image (PNG).

A float adversarial example sits just inside the target's region (the attack shrinks it onto the
boundary). Rounding it to 8 bits adds an error of up to half a grey level per pixel, about as large
as the perturbation itself on an ImageNet photo, and that sends it back across. `to_grid` moves it
onto the grid deliberately, with x on the grid (a saved photo is), in two ways, keeping the closer:
- scale: the smallest t on a grid of `T_STEP` steps from 1 up to `T_MAX` for which
  x + round(255 t r) / 255 (r = x_adv - x) is still classified as the target (forward passes only);
- steps on the lattice: from the rounded example, up to `GRID_STEPS` times, move by one grey level, in the
  direction of the margin's gradient, the fewest pixels of largest gradient whose linearised gain covers the
  missing margin (x `GAIN_FACTOR`); one gradient per step.
`lbfgs_attack_8bit` is the paper's attack followed by it, usable as `attack.min_distortion(method=...)`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .attack import AttackResult, _evaluating, distortion, lbfgs_attack, logit_margin, predict

VERSION = 2  # bump when to_grid's results change (1: the scale search alone)
LEVELS = 255  # 8 bits: pixel values k / 255
T_STEP = 0.02  # the scale t grows by this much per try
T_MAX = 4.0  # the largest scale tried
GRID_STEPS = 50  # lattice steps at most (one gradient each)
GRID_MARGIN = 0.05  # logits; the margin the lattice steps aim for (any margin > 0 is a success)
GAIN_FACTOR = 2.0  # move pixels whose linearised gain is this many times the missing margin


def on_grid(x: Tensor, levels: int = LEVELS) -> Tensor:
    """x rounded to the nearest multiple of 1 / levels (the 8-bit image a PNG would store, for levels = 255)."""
    return torch.round(x * levels) / levels


def is_on_grid(x: Tensor, levels: int = LEVELS) -> bool:
    """Whether every value of x is a multiple of 1 / levels (to float32 precision)."""
    return bool(((x * levels - torch.round(x * levels)).abs() <= 1e-3).all())


def to_grid(model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, levels: int = LEVELS) -> tuple[Tensor, Tensor]:
    """(x_grid, t): per image, the closer of `_scaled` and `_lattice_steps` that is classified as target.

    x must lie on the grid (ValueError otherwise). t is the scale of `_scaled` where it won, 1 where the
    lattice steps won, nan where neither reached the target (x_grid is then the plain rounding; check
    `predict(model, x_grid) == target`).
    """
    if not is_on_grid(x, levels):
        raise ValueError(f"x must lie on the {levels}-level grid (round the original image first)")
    with _evaluating(model):
        scaled, t = _scaled(model, x, x_adv, target, levels)
        stepped = _lattice_steps(model, on_grid(x_adv, levels).clamp(0, 1), target, levels)
        with torch.no_grad():
            ok_scaled, ok_stepped = ~t.isnan(), predict(model, stepped) == target
        closer = ok_stepped & (~ok_scaled | (distortion(x, stepped) < distortion(x, scaled)))
    t = torch.where(closer, 1.0, t)
    return on_grid(torch.where(closer[:, None, None, None], stepped, scaled), levels), t  # exact k / levels values


@torch.no_grad()
def _scaled(model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    r = x_adv - x
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    t_found = torch.full((len(x),), float("nan"), device=x.device)
    x_grid = (x + torch.round(levels * r) / levels).clamp(0, 1)
    for k in range(round((T_MAX - 1) / T_STEP) + 1):
        todo = (~found).nonzero().squeeze(1)
        if len(todo) == 0:
            break
        t = 1 + k * T_STEP
        candidate = on_grid((x[todo] + torch.round(levels * t * r[todo]) / levels).clamp(0, 1), levels)
        hit = predict(model, candidate) == target[todo]
        x_grid[todo[hit]] = candidate[hit]
        t_found[todo[hit]] = t
        found[todo[hit]] = True
    return x_grid, t_found


def _lattice_steps(model: nn.Module, q: Tensor, target: Tensor, levels: int) -> Tensor:
    q = q.clone()
    for _ in range(GRID_STEPS):
        z = q.clone().requires_grad_(True)
        with torch.enable_grad():
            margin = logit_margin(model(z), target)
            (grad,) = torch.autograd.grad(margin.sum(), z)
        margin = margin.detach()
        todo = margin <= 0
        if not todo.any():
            break
        step = grad.sign() / levels
        room = ((q + step) >= 0) & ((q + step) <= 1)
        gain = torch.where(room, grad.abs() / levels, 0).flatten(1)  # linearised margin gain of one pixel's move
        order = gain.argsort(1, descending=True)
        need = GAIN_FACTOR * (GRID_MARGIN - margin)
        chosen = (gain.gather(1, order).cumsum(1) - gain.gather(1, order)) < need[:, None]  # up to the one that covers it
        move = torch.zeros_like(gain, dtype=torch.bool).scatter(1, order, chosen) & todo[:, None]
        q = on_grid(torch.where(move.view_as(q), q + step, q), levels)
    return q


def lbfgs_attack_8bit(model: nn.Module, x: Tensor, target: Tensor, **options: Any) -> AttackResult:
    """The paper's attack (`attack.lbfgs_attack`, given `options`), its result moved onto the 8-bit grid by `to_grid`."""
    result = lbfgs_attack(model, x, target, **options)
    x_grid, _ = to_grid(model, x, result.x_adv, target)
    x_grid = torch.where(result.success[:, None, None, None], x_grid, result.x_adv)
    success = result.success & (predict(model, x_grid) == target)
    return AttackResult(x_grid, success, distortion(x, x_grid), result.c, result.target, result.misclassified)
