"""The paper's attack, faster: a linearised start, then one box-constrained L-BFGS run as the polish.

`lib.attack.lbfgs_attack` spends about ten L-BFGS runs per image searching for c, each from x, and
then polishes the winner. Two facts make the search unnecessary:

1. the c worth using is the Lagrange multiplier of the constraint f(x + r) = l at the optimum, and
   any point on the decision boundary near the optimum estimates it (`attack._multiplier_estimate`);
2. such a point costs a few gradients: DeepFool's linearised steps towards l, each the exact
   projection onto the linearised boundary inside the box (`project_onto_halfspace`).

So `fast_attack` (a) steps from x into l's region by linearised steps, (b) moves back onto the
boundary along r (`boundary_on_ray`), (c) runs box-constrained L-BFGS once on the paper's penalty
problem ||r||^2 + c loss(f(x + r), l), with c twice the multiplier estimate and the cross-entropy
sharpened as in `lbfgs_attack`'s polish, to a temperature in proportion to the image's logit margin
(a fixed one is too sharp for some models and too soft for others), (d) moves that point onto the
boundary and keeps whichever of (b) and (d) is closer. Images it fails on get the paper's full c
search. `benchmarks/bench_fast_attack.py` chose the temperature on training images; the speed-up and
its limits are measured in `benchmarks/bench_peers.py` and shown in chapter 2. `gradient_start` (small steps of
fixed length along the cross-entropy's gradient) is the other start the book uses: the walk of polishes'
(`polish_walk.from_gradient_start`, chapter 7), not `fast_attack`'s.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import lbfgsb
from .attack import (AttackResult, BOUNDARY_MARGIN, _check_attack, _evaluating, _multiplier_estimate, _penalty,
                     distortion, lbfgs_attack, logit_margin, margin_scale, predict)

POLISH_STEPS = 20  # L-BFGS iterations of the one polish run
TEMPERATURE = 0.05  # the polish's temperature (and margin), as a fraction of |margin at x|; chosen on training images
LINEAR_STEPS = 10  # linearised steps allowed to reach the target's region
OVERSHOOT = 0.5  # logits: each linearised step aims this far past the boundary
RAY_STEPS = 10  # regula falsi steps of `boundary_on_ray`
PROBABILITY_GOAL = 0.5  # `linearised_start(on="probability")`: each step aims log p_target at log(this); validation photos
GRADIENT_LENGTHS = (0.05, 0.1, 0.15, 0.25)  # `gradient_start`'s step lengths tried on the validation photos (bench_polish_walk.py)
GRADIENT_LENGTH = 0.25  # chosen there (the closest median walk toward ostrich, 21 runs), kept on 12 crops (bench_walk_validation.py)
GRADIENT_STEPS = 100  # `gradient_start`'s budget of steps
VERSION = 1  # bump when its results change: committed peer comparisons are keyed by it


def check_positive_integer(name: str, value: object) -> None:
    """Raise ValueError naming `name` unless value is an int >= 1 (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_positive_number(name: str, value: object) -> None:
    """Raise ValueError naming `name` unless value is a finite int or float > 0 (not a bool)."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def fast_attack(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    polish_steps: int = POLISH_STEPS,
    temperature: float = TEMPERATURE,
    linear_steps: int = LINEAR_STEPS,
    history: int = 5,
    c_factor: float = 2.0,
    fallback: bool = True,
) -> AttackResult:
    """Smallest r with argmax f(x + r) = target, x + r in [0,1]: linearised start, one L-BFGS polish, boundary.

    Images [N,C,H,W] in [0,1]; target [N], each != the predicted label. polish_steps, history: the
    L-BFGS run; temperature: its sharpened cross-entropy's, as a fraction of the logit margin
    |z_l - max_j z_j| at x (`benchmarks/bench_fast_attack.py` chose it); linear_steps: the start's budget;
    c_factor: the polish's c as a multiple of the multiplier estimated at the start's boundary point (far
    labels need more: `table1.NINE_LABEL_FAST`);
    fallback: give the images that fail to the paper's `lbfgs_attack`. The result's c is the polish's.
    """
    for name, value in [("polish_steps", polish_steps), ("linear_steps", linear_steps), ("history", history)]:
        check_positive_integer(name, value)
    for name, value in [("temperature", temperature), ("c_factor", c_factor)]:
        check_positive_number(name, value)
    _check_attack(model, x, target, 1.0, 1, polish_steps, history, "ce")  # the images and the targets
    x, target = x.detach(), target.long()
    with _evaluating(model):
        start, crossed = linearised_start(model, x, target, linear_steps)
        x_boundary = boundary_on_ray(model, x, start, target, crossed)
        c = c_factor * _multiplier_estimate(model, x, x_boundary, target)
        scale = margin_scale(model, x, target, temperature)  # in logits: a fraction of how far x is from the boundary
        polish = _penalty(model, x, target, c, None, temperature=scale)  # attack.sharp_loss at T = kappa = scale
        polished = lbfgsb.minimize(polish, x_boundary.flatten(1).clone(), max_iter=polish_steps,
                                   history=history).view(x.shape)
        reached = predict(model, polished) == target
        polished = boundary_on_ray(model, x, polished, target, reached)
        reached &= predict(model, polished) == target
        closer = reached & (~crossed | (distortion(x, polished) < distortion(x, x_boundary)))
        x_adv = torch.where(closer[:, None, None, None], polished, x_boundary)
        success = crossed | reached
        result = AttackResult(x_adv, success, distortion(x, x_adv), torch.where(success, c, math.nan), target.clone(),
                              torch.zeros_like(success))
        failed = (~success).nonzero().squeeze(1)
    if fallback and len(failed):
        retry = lbfgs_attack(model, x[failed], target[failed])
        for name in ("x_adv", "success", "distortion", "c"):
            getattr(result, name)[failed] = getattr(retry, name)
    return result


def _margin_objective(model: nn.Module, target: Tensor, shape: torch.Size) -> lbfgsb.Objective:
    """(z [M,D], rows [M]) -> the logit margin z_l - max_{j != l} z_j of each row, l its target."""

    def margin(z: Tensor, rows: Tensor) -> Tensor:
        return logit_margin(model(z.view(-1, *shape)), target.index_select(0, rows))

    return margin


def _log_probability_objective(model: nn.Module, target: Tensor, shape: torch.Size,
                               margins: list[Tensor]) -> lbfgsb.Objective:
    """(z [M,D], rows [M]) -> log p_target of each row; appends each call's logit margins (detached) to `margins`."""

    def log_probability(z: Tensor, rows: Tensor) -> Tensor:
        logits, labels = model(z.view(-1, *shape)), target.index_select(0, rows)
        margins.append(logit_margin(logits.detach(), labels))
        return torch.log_softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)

    return log_probability


def linearised_start(model: nn.Module, x: Tensor, target: Tensor, steps: int,
                     on: str = "margin") -> tuple[Tensor, Tensor]:
    """Box-constrained DeepFool towards target: (point, reached) after at most `steps` linearised steps.

    Each step moves z to the nearest point of [0,1]^D where the linearisation at z of the logit margin
    reaches OVERSHOOT (on="margin"), or that of log p_target reaches log PROBABILITY_GOAL (on="probability":
    along the cross-entropy's gradient, which weighs every rival by its probability); rows leave as soon as
    argmax f(z) = target, so an image costs its own number of steps.
    """
    if on not in ("margin", "probability"):
        raise ValueError(f"on must be 'margin' or 'probability', got {on!r}")
    shape, margins = x.shape[1:], []

    objective = (_margin_objective(model, target, shape) if on == "margin"
                 else _log_probability_objective(model, target, shape, margins))
    goal = OVERSHOOT if on == "margin" else math.log(PROBABILITY_GOAL)
    z = x.flatten(1).clone()
    reached = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    todo = torch.arange(len(x), device=x.device)
    for step in range(steps + 1):
        m, g = lbfgsb.value_and_grad(objective, z[todo], todo)
        now = (m if on == "margin" else margins.pop()) > 0
        reached[todo[now]] = True
        todo, m, g = todo[~now], m[~now], g[~now]
        if len(todo) == 0 or step == steps:
            break
        zt = z[todo]
        z[todo] = project_onto_halfspace(zt, g, goal - m + torch.linalg.vecdot(g, zt))
    return z.view(x.shape), reached


def gradient_start(model: nn.Module, x: Tensor, target: Tensor, length: float = GRADIENT_LENGTH,
                   steps: int = GRADIENT_STEPS) -> tuple[Tensor, Tensor]:
    """Steps of L2 length `length` along the gradient of log p_target, clipped to [0,1]: (point, reached).

    An iterative L2 fast gradient method without a projection: rows leave as soon as argmax f(z) = target,
    so each image stops just past the boundary after its own number of steps (one gradient each).
    """
    check_positive_number("length", length)
    check_positive_integer("steps", steps)
    margins: list[Tensor] = []
    objective = _log_probability_objective(model, target, x.shape[1:], margins)
    z = x.flatten(1).clone()
    reached = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    todo = torch.arange(len(x), device=x.device)
    for step in range(steps + 1):
        _, g = lbfgsb.value_and_grad(objective, z[todo], todo)
        now = margins.pop() > 0
        reached[todo[now]] = True
        todo, g = todo[~now], g[~now]
        if len(todo) == 0 or step == steps:
            break
        z[todo] = (z[todo] + length * g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(0, 1)
    return z.view(x.shape), reached


def project_onto_halfspace(centre: Tensor, g: Tensor, b: Tensor) -> Tensor:
    """Per row, the nearest point to centre [N,D] in {w in [0,1]^D : g.w >= b}; the box's best corner if none.

    The answer is clip(centre + lam g) for the smallest lam >= 0 reaching b. The gain g.(w - centre)
    grows piecewise linearly in lam, pixel i adding slope g_i^2 until it meets its bound at lam_i,
    so sorting the lam_i finds the piece that reaches b, and lam on it, exactly.
    """
    need = (b - torch.linalg.vecdot(g, centre)).clamp_min(0)
    meets = torch.where(g > 0, (1 - centre) / g, torch.where(g < 0, centre / -g, 0.0))  # lam_i (g_i = 0: slope 0)
    meets, order = meets.sort(1)
    slope = g.gather(1, order).square()
    saturated = (slope * meets).cumsum(1) - slope * meets  # gain of the pixels already at their bound at lam_k
    active = slope.flip(1).cumsum(1).flip(1)  # slope of the pixels still moving there
    gain = saturated + meets * active  # the gain at lam = lam_k: nondecreasing in k
    piece = torch.searchsorted(gain, need[:, None]).squeeze(1)
    reachable = piece < g.shape[1]
    piece = piece.clamp(max=g.shape[1] - 1)[:, None]
    lam = (need - saturated.gather(1, piece).squeeze(1)) / active.gather(1, piece).squeeze(1).clamp_min(1e-30)
    w = (centre + torch.where(need > 0, lam, 0.0)[:, None] * g).clamp(0, 1)
    corner = torch.where(g > 0, 1.0, torch.where(g < 0, 0.0, centre))
    return torch.where(reachable[:, None], w, corner)


@torch.no_grad()
def boundary_on_ray(
    model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, success: Tensor, steps: int = RAY_STEPS
) -> Tensor:
    """The point x + t r (r = x_adv - x) nearest x still BOUNDARY_MARGIN inside the target, by regula falsi (Illinois).

    Rows without success keep x_adv. The margin along the ray is nearly linear near the
    boundary, so a secant step brackets it in a few forward passes where bisection needs twenty.
    """
    r = x_adv - x

    def excess(t: Tensor) -> Tensor:
        return logit_margin(model(x + t[:, None, None, None] * r), target) - BOUNDARY_MARGIN

    t_out, t_in = x.new_zeros(len(x)), x.new_ones(len(x))
    f_out, f_in = excess(t_out), excess(t_in)
    last = torch.zeros_like(t_in)  # +1: the last step replaced the inside end, -1: the outside one
    for _ in range(steps):
        t = (t_out * f_in - t_in * f_out) / (f_in - f_out)
        t = torch.where((t > t_out) & (t < t_in), t, (t_out + t_in) / 2)
        f = excess(t)
        inside = f > 0
        f_out = torch.where(inside & (last > 0), f_out / 2, f_out)  # Illinois: halve an end kept twice
        f_in = torch.where(~inside & (last < 0), f_in / 2, f_in)
        t_in, f_in = torch.where(inside, t, t_in), torch.where(inside, f, f_in)
        t_out, f_out = torch.where(inside, t_out, t), torch.where(inside, f_out, f)
        last = torch.where(inside, 1.0, -1.0)
    t = torch.where(success, t_in, 1.0)[:, None, None, None]
    return (x + t * r).clamp(0, 1)


def gradient_change(
    model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, scale: float = 0.01, directions: int = 8, seed: int = 0
) -> Tensor:
    """Per image, how much the margin's gradient turns a step of `scale` x ||r|| away from x_adv.

    Median over `directions` random unit directions u (seeded) of ||g(z + s u) - g(z)|| / ||g(z)||, with
    s = scale ||r||, z = x_adv, g the gradient of the margin z_l - max_j z_j. L-BFGS learns curvature
    from such gradient differences: near 0 where the margin is smooth at that scale, large where
    ReLU and max-pooling kinks lie within a step and the differences describe kinks, not curvature.
    """
    if not (isinstance(scale, float) and 0 < scale < 1):
        raise ValueError(f"scale must be a float in (0, 1), got {scale!r}")
    if not isinstance(directions, int) or isinstance(directions, bool) or directions < 1:
        raise ValueError(f"directions must be a positive integer, got {directions!r}")
    z = x_adv.detach().flatten(1)
    rows = torch.arange(len(z), device=z.device)
    margin = _margin_objective(model, target, x.shape[1:])
    generator = torch.Generator().manual_seed(seed)
    changes = []
    with _evaluating(model):
        _, g = lbfgsb.value_and_grad(margin, z, rows)
        step = scale * (z - x.flatten(1)).norm(dim=1, keepdim=True)
        for _ in range(directions):
            u = torch.randn(z.shape, generator=generator).to(z)
            _, moved = lbfgsb.value_and_grad(margin, z + step * u / u.norm(dim=1, keepdim=True), rows)
            changes.append((moved - g).norm(dim=1) / g.norm(dim=1).clamp_min(1e-30))
    return torch.stack(changes).median(0).values
