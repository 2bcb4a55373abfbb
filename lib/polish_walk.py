"""A walk made of polishes: the attack's box-constrained L-BFGS polish, restarted past each of its ends.

One polish (`attack.polish`: ||z - x||^2 + c * the sharpened cross-entropy over z in [0,1]^n, c twice the
multiplier estimated at a boundary point) stops in the pocket of the target's region at hand (chapter 7). The
walk runs it again and again, each time from the last end pushed on along the last move,
z + step (z - z_before), and shrinks every end onto the boundary along its ray from x. A run that ends outside
the target's region moves nothing and doubles its image's c for the next run; one that succeeds halves it back
towards 1. The closest success so far is kept, so the result is never farther than the start.
`from_linearised` starts it from the book's linearised start (on the logit margin or on log p_target);
`from_both_starts` from both, keeping the closer end, since the two often lie in different pockets;
`from_gradient_start` (ours-walk) from small fixed-length steps along the cross-entropy's gradient.
`photo_by_photo` runs any of them one image at a time: a batch of one rounds differently from a larger batch,
and a walk's end moves with it (chapter 7), so results that must not depend on the batch are made this way.
`benchmarks/bench_polish_walk.py` measures it on ImageNet against Brendel-Bethge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from . import lbfgsb
from .attack import (POLISH_KAPPA, POLISH_TEMPERATURE, AttackResult, _check_attack, _check_images, _evaluating,
                     _multiplier_estimate, _penalty, _shrink_to_boundary, distortion, predict, sharp_cross_entropy)
from .fast_attack import GRADIENT_LENGTH, boundary_on_ray, check_positive_integer, gradient_start, linearised_start

STEP = 2.0  # how far past its end each run restarts, in units of the last move
ROUNDS = 20  # polish runs after the first
ITERATIONS = 20  # L-BFGS iterations per run
LINEAR_STEPS = 60  # `from_linearised`: linearised steps allowed to reach a far target such as "ostrich"
VERSION = 1  # bump when the walk's results change: the committed ours-walk and DDN+walk results are keyed by it
OWN_START_VERSION = 2  # bump when ours-walk's start changes (1: both linearised starts; 2: `from_gradient_start`)


@dataclass
class WalkResult:
    """The walk's outcome and the distortion of its closest success after each run (inf: none yet)."""

    result: AttackResult
    trace: list[Tensor]  # [runs] of [N]: the first run's, then one per round


def polish_walk(model: nn.Module, x: Tensor, x_start: Tensor, target: Tensor, *, step: float = STEP,
                rounds: int = ROUNDS, iterations: int = ITERATIONS, history: int = 10,
                on_run: Callable[[Tensor], None] | None = None) -> WalkResult:
    """Walk from x_start [N,C,H,W] in [0,1] (e.g. another attack's result) by polishes restarted past their ends.

    Rows of x_start not classified as their target are returned as they are, unsuccessful. on_run, if
    given, receives the closest distortions after each run (to count gradient evaluations between runs).
    """
    _check_attack(model, x, target, 1.0, 1, iterations, history, "ce")
    if not (isinstance(step, (int, float)) and not isinstance(step, bool) and math.isfinite(step) and step >= 0):
        raise ValueError(f"step must be a finite number >= 0, got {step!r}")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    _check_images(x_start)
    if x_start.shape != x.shape:
        raise ValueError(f"x_start must have the shape of x {tuple(x.shape)}, got {tuple(x_start.shape)}")
    x, target = x.detach(), target.long()

    def loss(logits: Tensor, labels: Tensor) -> Tensor:
        return sharp_cross_entropy(logits, labels, POLISH_TEMPERATURE, POLISH_KAPPA)

    def rows(mask: Tensor) -> Tensor:
        return mask[:, None, None, None]

    trace: list[Tensor] = []
    with _evaluating(model):
        success = predict(model, x_start.detach()) == target
        z = _shrink_to_boundary(model, x, x_start.detach(), target, success)
        before, boost = z, torch.ones(len(x), dtype=x.dtype, device=x.device)
        best = torch.where(success, distortion(x, z), math.inf)
        x_best = z.clone()
        for _ in range(rounds + 1):
            c = 2 * boost * _multiplier_estimate(model, x, z, target)
            trial = (z + step * (z - before)).clamp(0, 1)
            end = lbfgsb.minimize(_penalty(model, x, target, c, loss), trial.flatten(1), max_iter=iterations,
                                  history=history).view(x.shape)
            inside = success & (predict(model, end) == target)
            end = _shrink_to_boundary(model, x, end, target, inside)
            moved = inside & (predict(model, end) == target)
            boost = torch.where(moved, (boost / 2).clamp_min(1), 2 * boost)
            before, z = torch.where(rows(moved), z, before), torch.where(rows(moved), end, z)
            closer = moved & (distortion(x, end) < best)
            x_best, best = torch.where(rows(closer), end, x_best), torch.where(closer, distortion(x, end), best)
            trace.append(best.clone())
            if on_run is not None:
                on_run(best)
        success &= predict(model, x_best) == target
    x_adv = torch.where(rows(success), x_best, x_start.detach())
    result = AttackResult(x_adv, success, distortion(x, x_adv), torch.full_like(best, math.nan), target.clone(),
                          torch.zeros_like(success))
    return WalkResult(result, trace)


def _own_start(model: nn.Module, x: Tensor, target: Tensor, on: str, linear_steps: int = LINEAR_STEPS,
               length: float = GRADIENT_LENGTH) -> Tensor:
    """One of the book's own starts, moved onto the boundary along its ray: `fast_attack.linearised_start` on the
    margin or on log p_target (on="margin", "probability"), or `fast_attack.gradient_start` (on="gradient")."""
    _check_attack(model, x, target, 1.0, 1, 1, 1, "ce")
    check_positive_integer("linear_steps", linear_steps)
    if on not in ("margin", "probability", "gradient"):
        raise ValueError(f"on must be 'margin', 'probability' or 'gradient', got {on!r}")
    x, target = x.detach(), target.long()
    with _evaluating(model):
        if on == "gradient":
            start, crossed = gradient_start(model, x, target, length)
        else:
            start, crossed = linearised_start(model, x, target, linear_steps, on=on)
        return boundary_on_ray(model, x, start, target, crossed)


def from_linearised(model: nn.Module, x: Tensor, target: Tensor, *, linear_steps: int = LINEAR_STEPS,
                    on: str = "margin", **walk_options) -> WalkResult:
    """The walk from the book's linearised start: `fast_attack.linearised_start` (on the margin or on log p_target),
    moved onto the boundary along its ray."""
    if on == "gradient":
        raise ValueError("on='gradient' is not a linearised start: use from_gradient_start")
    return polish_walk(model, x, _own_start(model, x, target, on, linear_steps), target, **walk_options)


def from_gradient_start(model: nn.Module, x: Tensor, target: Tensor, *, length: float = GRADIENT_LENGTH,
                        **walk_options) -> WalkResult:
    """The walk from `fast_attack.gradient_start` (steps of L2 length `length` along the gradient of log p_target),
    moved onto the boundary along its ray: ours-walk."""
    return polish_walk(model, x, _own_start(model, x, target, "gradient", length=length), target, **walk_options)


def from_both_starts(model: nn.Module, x: Tensor, target: Tensor, *, linear_steps: int = LINEAR_STEPS,
                     on_run: Callable[[Tensor], None] | None = None, **walk_options) -> WalkResult:
    """Two walks per image, from the linearised starts on the margin and on log p_target; the closer end kept.

    The two starts often lie in different pockets of the target's region (chapter 7), so each image pays
    for two walks (run as one batch of 2N) and keeps whichever ends closer; after each run the trace holds
    the closer of the two walks' closest successes so far.
    """
    starts = [_own_start(model, x, target, on, linear_steps) for on in ("margin", "probability")]
    n, x, target = len(x), x.detach(), target.long()
    closer = None if on_run is None else lambda best: on_run(torch.minimum(best[:n], best[n:]))
    both = polish_walk(model, torch.cat([x, x]), torch.cat(starts), torch.cat([target, target]), on_run=closer,
                       **walk_options)
    r = both.result
    second_closer = r.success[n:] & (~r.success[:n] | (r.distortion[n:] < r.distortion[:n]))
    rows = torch.arange(n, device=x.device) + n * second_closer.long()
    result = AttackResult(r.x_adv[rows], r.success[rows], r.distortion[rows], r.c[rows], r.target[rows],
                          r.misclassified[rows])
    return WalkResult(result, [torch.minimum(t[:n], t[n:]) for t in both.trace])


def photo_by_photo(walk: Callable[..., WalkResult], x: Tensor, target: Tensor, start: Tensor | None = None,
                   spent: Callable[[], float] | None = None,
                   on_image: Callable[[int, WalkResult, list[float]], None] | None = None) -> tuple[WalkResult, list[float]]:
    """walk(x_i, target_i, start_i, on_run) on each image alone, the results joined; and, if `spent` (the gradient
    evaluations made so far) is given, the mean over the images of those each had made after every run.

    on_image, if given, receives each image's index, walk and gradient evaluations after every run as it ends (to
    write results image by image, so an interrupted benchmark resumes).
    """
    ends, counts = [], []
    for i in range(len(x)):
        before, mine = (spent() if spent else 0.0), []
        on_run = (lambda _, before=before, mine=mine: mine.append(spent() - before)) if spent else None
        ends.append(walk(x[i:i + 1], target[i:i + 1], None if start is None else start[i:i + 1], on_run))
        counts.append(mine)
        if on_image is not None:
            on_image(i, ends[-1], mine)
    fields = {f: torch.cat([getattr(e.result, f) for e in ends]) for f in AttackResult.__dataclass_fields__}
    trace = [torch.cat(bests) for bests in zip(*(e.trace for e in ends))]
    per_run = [sum(c[r] for c in counts) / len(x) for r in range(len(counts[0]))] if spent else []
    return WalkResult(AttackResult(**fields), trace), per_run
