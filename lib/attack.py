"""Section 4.1's attack: the smallest r with f(x + r) = l, by box-constrained L-BFGS and a search over c.

For an image x and a target label l != f(x) the paper asks for the smallest ||r||_2 with
f(x + r) = l and x + r in [0,1]^m, and approximates it by box-constrained L-BFGS on a penalty
problem, searching over the constant c. We use the attack libraries' form (Foolbox <= 2,
CleverHans 3):

    minimise  ||r||^2 + c * loss_f(x + r, l)   over  x + r in [0,1]^m,

with cross-entropy as loss_f and the *smallest* c whose minimiser is classified as l. The paper
writes c|r| + loss_f(x + r, l) and wants the largest such c; dividing by c gives |r| + loss_f/c,
so its c is our 1/c and "the minimum c" of our form is the paper's maximum. Squaring |r| only
re-parametrises c along the same trade-off between |r| and the loss (exactly so when the problem
is convex, as for a linear model): both searches look for the smallest r the loss still pushes
across the decision boundary.

Pieces: `lbfgs_attack` (one call attacks a whole batch; the optimiser is `lib.lbfgsb`),
`min_distortion` (the paper's "minimum distortion to reach 0% accuracy", with a named rule for
the wrong label: `TARGET_RULES`, "closest" being the untargeted mode) and `every_target` (all wrong
labels of each image at once). Two departures from the libraries, off by default, are measured on
ImageNet in the natural-images chapter: loss="sharp" (the sharpened cross-entropy of the polish in the
search itself) and warm_start (each run from the best success so far). The
independent checks, a per-image scipy version and the exact answer for linear models, are in
`lib.attack_reference`; the same attack without the search over c, several times faster, in
`lib.fast_attack`; `polish`, the attack's last step applied to another attack's result, and in `lib.polish_walk` the same
polish restarted past each of its ends.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from . import lbfgsb
from .lbfgsb import Objective

torch.set_flush_denormal(True)  # denormal float32 weights (weight decay) slow CPU matmuls 10-20x

LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits [M,K], target [M]) -> per-example loss [M]
Minimiser = Callable[[Objective, Tensor], Tensor]  # (objective, z0 [N,D]) -> argmin over [0,1]^D [N,D]
Attack = Callable[..., "AttackResult"]  # (model, x, target, **options) -> AttackResult: lbfgs_attack or fast_attack

VERSION = 3  # bump when the attack's results change: cached adversarial sets are keyed by it
TARGET_RULES = ("runner-up", "random", "best", "closest")  # which wrong label `min_distortion` attacks
CLOSEST_CANDIDATES = 2  # "closest": labels attacked per image at most, the nearest by `linearised_order`
CLOSEST_SLACK = 1.0  # "closest" attacks a further label only if its linearised distance < this x the best so far
POLISH_TEMPERATURE = 0.01  # logits; the polish's sharpened cross-entropy (see _refine)
POLISH_KAPPA = 0.03  # logits; the margin it aims for before the final shrink
BOUNDARY_MARGIN = 1e-4  # logits; the final shrink stops this far inside the target's region
SHARP_TEMPERATURE = 0.01  # loss="sharp": the c search's temperature (and margin) as a fraction of |margin at x|


@dataclass
class AttackResult:
    """Per-example outcome of an attack on a batch of N images."""

    x_adv: Tensor  # [N,C,H,W] in [0,1]
    success: Tensor  # [N] bool: argmax f(x_adv) == target
    distortion: Tensor  # [N] sqrt(sum r^2 / n), r = x_adv - x
    c: Tensor  # [N] the smallest successful c of the cross-entropy search (nan: none succeeded; 0: not attacked)
    target: Tensor  # [N] int64
    misclassified: Tensor  # [N] bool: the model already got the image wrong, so it was not attacked (x_adv = x)


def distortion(x: Tensor, x_adv: Tensor) -> Tensor:
    """The paper's distortion sqrt(sum_i r_i^2 / n) per example (n = 784 pixels for MNIST)."""
    return (x_adv - x).flatten(1).pow(2).mean(1).sqrt()


def cross_entropy_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example cross-entropy of the target label (the libraries' loss_f)."""
    return nn.functional.cross_entropy(logits, target, reduction="none")


def logit_margin(logits: Tensor, target: Tensor) -> Tensor:
    """z_l - max_{j != l} z_j per example: positive exactly where the target wins."""
    rivals = logits.scatter(1, target[:, None], -math.inf)
    return logits.gather(1, target[:, None]).squeeze(1) - rivals.amax(1)


def margin_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example hinge max(0, max_{j != l} z_j - z_l) (Carlini-Wagner's f6 with kappa = 0)."""
    return (-logit_margin(logits, target)).clamp_min(0)


def sharp_cross_entropy(
    logits: Tensor, target: Tensor, temperature: float | Tensor, kappa: float | Tensor
) -> Tensor:
    """T log(1 + sum_{j != l} exp((z_j - z_l + kappa) / T)): cross-entropy at T=1, kappa=0; a hinge as T -> 0.

    temperature and kappa: numbers, or one per example ([M] tensors).
    """
    temperature = temperature[:, None] if isinstance(temperature, Tensor) else temperature
    kappa = kappa[:, None] if isinstance(kappa, Tensor) else kappa
    shifted = (logits - logits.gather(1, target[:, None]) + kappa) / temperature
    return (temperature * torch.logsumexp(shifted.scatter(1, target[:, None], 0.0), 1, keepdim=True)).squeeze(1)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy_loss, "margin": margin_loss}


@torch.no_grad()
def runner_up(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The highest-scoring label other than y, per image (the second-highest when y is the top one)."""
    return model(x).scatter(1, y.long()[:, None], -math.inf).argmax(1)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    """Predicted labels argmax f(x)."""
    return model(x).argmax(1)


# ----------------------------------------------------------------------------------------------
# The attack
# ----------------------------------------------------------------------------------------------


def lbfgs_attack(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    *,
    c_init: float = 1.0,
    c_steps: int = 10,
    max_iter: int = 100,
    history: int = 10,
    loss: str | LossFn = "ce",
    refine: bool = True,
    warm_start: bool = False,
    on_step: Callable[[AttackResult], None] | None = None,
) -> AttackResult:
    """Section 4.1 on a whole batch at once: box-constrained L-BFGS on ||r||^2 + c loss, smallest successful c.

    c_init: first c; c_steps: L-BFGS runs per image in the c search; max_iter, history: per run;
    loss: "ce", "margin", "sharp" (`sharp_cross_entropy` at SHARP_TEMPERATURE x |margin at x|, see
    `sharp_loss`) or a callable (logits, target) -> [N]; refine: shrink to the boundary and polish (see
    `_refine`); warm_start: each run of the c search starts from the best success so far instead of x
    (see `_c_search`); on_step: called with the best result so far after each run of the c search and after the
    refinement (to trace convergence). Images [N,C,H,W] in [0,1]; target [N], each != the predicted label.
    """
    sharp = isinstance(loss, str) and loss == "sharp"
    loss_fn = _check_attack(model, x, target, c_init, c_steps, max_iter, history, "ce" if sharp else loss)
    x, target = x.detach(), target.long()

    def minimise(objective: Objective, z0: Tensor) -> Tensor:
        return lbfgsb.minimize(objective, z0, max_iter=max_iter, history=history)

    with _evaluating(model):
        temperature = margin_scale(model, x, target, SHARP_TEMPERATURE) if sharp else None
        return _c_search(model, x, target, loss_fn, minimise, c_init, c_steps, refine, temperature, on_step,
                         warm_start)


@torch.no_grad()
def margin_scale(model: nn.Module, x: Tensor, target: Tensor, fraction: float) -> Tensor:
    """fraction x |z_l - max_j z_j| at x per image: a temperature in the logits' own units."""
    return fraction * logit_margin(model(x), target).abs().clamp_min(1e-6)


def sharp_loss(logits: Tensor, target: Tensor, temperature: Tensor) -> Tensor:
    """loss="sharp": `sharp_cross_entropy` with temperature = kappa = one T per example.

    Cross-entropy weighs every rival class by its probability, so its minimiser leans towards all of them
    (on ImageNet's 999 rivals, away from the boundary it has to cross); sharpened, it pushes against the
    strongest rival only, like a hinge on the margin, yet stays smooth for L-BFGS.
    """
    return sharp_cross_entropy(logits, target, temperature, temperature)


def minimise_penalty(
    model: nn.Module, x: Tensor, target: Tensor, c: float | Tensor, *, max_iter: int = 100, history: int = 10,
    loss: str | LossFn = "ce",
) -> Tensor:
    """One step of the c search: argmin over x+r in [0,1] of ||r||^2 + c loss(f(x+r), l), per image (c scalar or [N])."""
    c = torch.as_tensor(c, dtype=x.dtype, device=x.device).expand(len(x)).clone()
    if not (torch.isfinite(c).all() and (c > 0).all()):
        raise ValueError(f"c must be positive and finite, got values in [{c.min().item():g}, {c.max().item():g}]")
    loss_fn = _check_attack(model, x, target, 1.0, 1, max_iter, history, loss)
    x, target = x.detach(), target.long()
    with _evaluating(model):
        return lbfgsb.minimize(_penalty(model, x, target, c, loss_fn), x.flatten(1).clone(), max_iter=max_iter,
                               history=history).view(x.shape)


def polish(
    model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, *, max_iter: int = 100, history: int = 10,
    pgtol: float = lbfgsb.PGTOL, ftol: float = lbfgsb.FTOL,
) -> AttackResult:
    """The attack's last step on any start: shrink each x_adv onto the boundary, polish it (`_refine`), keep the closer.

    x_adv [N,C,H,W] in [0,1], e.g. another attack's result; rows not classified as their target are returned as
    they are, unsuccessful. pgtol and ftol are the L-BFGS run's stopping tolerances (0: run all max_iter steps
    unless the line search fails). The result's c is nan (no search over c ran).
    """
    _check_attack(model, x, target, 1.0, 1, max_iter, history, "ce")
    for name, value in [("pgtol", pgtol), ("ftol", ftol)]:
        if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    _check_images(x_adv)
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv must have the shape of x {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    x, x_adv, target = x.detach(), x_adv.detach(), target.long()

    def minimise(objective: Objective, z0: Tensor) -> Tensor:
        return lbfgsb.minimize(objective, z0, max_iter=max_iter, history=history, pgtol=pgtol, ftol=ftol)

    with _evaluating(model):
        success = predict(model, x_adv) == target
        polished = _refine(model, x, x_adv, target, success, minimise)
        polished = torch.where(success[:, None, None, None], polished, x_adv)
        success &= predict(model, polished) == target
    return AttackResult(polished, success, distortion(x, polished), torch.full_like(success, math.nan, dtype=x.dtype),
                        target.clone(), torch.zeros_like(success))


def _c_search(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    loss_fn: LossFn,
    minimise: Minimiser,
    c_init: float,
    c_steps: int,
    refine: bool,
    temperature: Tensor | None = None,
    on_step: Callable[[AttackResult], None] | None = None,
    warm_start: bool = False,
) -> AttackResult:
    """The attack: per image, minimise ||z - x||^2 + c loss(f(z), l) over z in [0,1]^n for c_steps values of c.

    c grows x10 until the minimiser is classified as l (or shrinks /10 until it is not), then
    the bracket [largest failing c, smallest successful c] is bisected in log space; each image
    keeps its smallest-distortion success. Each run starts from x, as in the libraries. With
    `refine`, the winner is moved to the decision boundary and polished (see `_refine`). `temperature`
    [N]: the loss is `sharp_loss` at these temperatures (loss="sharp") instead of `loss_fn`. With
    `warm_start`, a run starts from the image's best success so far, shrunk onto the boundary (from x until
    there is one): a small c's run then refines a point already in the target's region instead of having to
    travel there from x within its iteration cap.
    """
    shape, x_flat = x.shape, x.flatten(1)
    c = torch.full((len(x),), float(c_init), dtype=x.dtype, device=x.device)
    c_fail = torch.zeros_like(c)  # largest c that failed (0: none yet)
    c_success = torch.full_like(c, math.inf)  # smallest c that succeeded
    never = torch.zeros_like(c, dtype=torch.bool)
    best = AttackResult(x.clone(), never, torch.full_like(c, math.inf), torch.full_like(c, math.nan), target.clone(),
                        never.clone())
    for _ in range(c_steps):
        z0 = torch.where(best.success[:, None], best.x_adv.flatten(1), x_flat) if warm_start else x_flat
        x_adv = minimise(_penalty(model, x, target, c, loss_fn, temperature), z0.clone()).view(shape)
        success = predict(model, x_adv) == target
        if warm_start:  # compare the runs on the boundary, where the next one starts
            x_adv = torch.where(success[:, None, None, None], _shrink_to_boundary(model, x, x_adv, target, success),
                                x_adv)
        dist = distortion(x, x_adv)
        better = torch.where(best.success, success & (dist < best.distortion), True)  # failures: keep the latest
        best.x_adv = torch.where(better[:, None, None, None], x_adv, best.x_adv)
        best.distortion = torch.where(better, dist, best.distortion)
        best.c = torch.where(better, c, best.c)
        best.success |= success
        c_success = torch.where(success, torch.minimum(c_success, c), c_success)
        c_fail = torch.where(success, c_fail, torch.maximum(c_fail, c))
        c = torch.where(c_success.isinf(), c * 10, torch.where(c_fail == 0, c / 10, (c_fail * c_success).sqrt()))
        if on_step is not None:
            on_step(best)
    if refine:
        best.x_adv = _refine(model, x, best.x_adv, target, best.success, minimise)
        best.distortion = distortion(x, best.x_adv)
        if on_step is not None:
            on_step(best)
    best.c = torch.where(best.success, best.c, math.nan)
    return best


def _refine(
    model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, success: Tensor, minimise: Minimiser
) -> Tensor:
    """Move each success to the decision boundary, polish it with a sharpened loss, keep whichever is closer.

    At the threshold c, the cross-entropy minimiser leans towards *every* rival class (its
    gradient weighs rival j by softmax p_j), not just the one whose boundary is nearest, so it
    lands beyond the true minimum: for a linear softmax, in our runs by ~3% on average for an
    arbitrary target (0.5% for the runner-up), 50% at worst. A finer c search does not help;
    the direction has to change. The polish re-solves the penalty problem from the boundary
    point with the cross-entropy sharpened to temperature T = 0.01 and a margin kappa: as
    T -> 0 it becomes the hinge max(0, kappa - margin), an exact penalty, whose minimiser for c
    above the Lagrange multiplier is the constrained minimum itself, while T > 0 keeps it smooth
    for L-BFGS. With c = 2x the multiplier estimated at the boundary point the sharpened loss's
    slope at the optimum is 1/2, i.e. the minimiser sits at margin kappa. Both points are then
    shrunk along r onto the boundary (bisection in t for x + t r); the closer one is kept.
    """
    x_boundary = _shrink_to_boundary(model, x, x_adv, target, success)
    c = 2 * _multiplier_estimate(model, x, x_boundary, target)

    def sharp_loss(logits: Tensor, target: Tensor) -> Tensor:
        return sharp_cross_entropy(logits, target, POLISH_TEMPERATURE, POLISH_KAPPA)

    x_polished = minimise(_penalty(model, x, target, c, sharp_loss), x_boundary.flatten(1).clone()).view(x.shape)
    x_polished = _shrink_to_boundary(model, x, x_polished, target, success)
    closer = success & (predict(model, x_polished) == target)
    closer &= distortion(x, x_polished) < distortion(x, x_boundary)
    return torch.where(closer[:, None, None, None], x_polished, x_boundary)


def _penalty(model: nn.Module, x: Tensor, target: Tensor, c: Tensor, loss_fn: LossFn | None,
             temperature: Tensor | None = None) -> Objective:
    """The objective ||z - x||^2 + c loss(f(z), l) of the penalty problem, for the given rows of the batch.

    temperature [N]: the loss is `sharp_loss` at each row's temperature (loss_fn unused, may be None).
    """
    x_flat, shape = x.flatten(1), x.shape[1:]

    def penalty(z: Tensor, rows: Tensor) -> Tensor:
        r = z - x_flat.index_select(0, rows)  # (index_select: ~4x faster than x_flat[rows] on CPU)
        logits, labels = model(z.view(-1, *shape)), target.index_select(0, rows)
        loss = (loss_fn(logits, labels) if temperature is None
                else sharp_loss(logits, labels, temperature.index_select(0, rows)))
        return torch.linalg.vecdot(r, r) + c.index_select(0, rows) * loss

    return penalty


@torch.no_grad()
def _shrink_to_boundary(
    model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor, success: Tensor, steps: int = 20
) -> Tensor:
    """Bisect t in [0,1] for the point x + t r (r = x_adv - x) nearest x still BOUNDARY_MARGIN inside the target."""
    r = x_adv - x
    t_fail, t_success = x.new_zeros(len(x)), x.new_ones(len(x))
    for _ in range(steps):
        t = (t_fail + t_success) / 2
        inside = logit_margin(model(x + t[:, None, None, None] * r), target) > BOUNDARY_MARGIN
        t_success, t_fail = torch.where(inside, t, t_success), torch.where(inside, t_fail, t)
    t = torch.where(success, t_success, 1.0)[:, None, None, None]
    return (x + t * r).clamp(0, 1)


def _multiplier_estimate(model: nn.Module, x: Tensor, x_adv: Tensor, target: Tensor) -> Tensor:
    """Least-squares c in the KKT condition 2 r = c grad(margin) over the pixels strictly inside the box."""
    z = x_adv.flatten(1)

    def margin(z: Tensor, rows: Tensor) -> Tensor:
        return logit_margin(model(z.view_as(x_adv)), target.index_select(0, rows))

    _, grad = lbfgsb.value_and_grad(margin, z, torch.arange(len(z), device=z.device))
    inside = (z > 0) & (z < 1)
    r, a = (z - x.flatten(1)) * inside, grad * inside
    return (2 * (r * a).sum(1) / a.pow(2).sum(1).clamp_min(1e-30)).clamp_min(1e-30)


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Put the model in eval mode (dropout off) for the attack and restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ----------------------------------------------------------------------------------------------
# Minimum distortion over targets
# ----------------------------------------------------------------------------------------------


def min_distortion(
    model: nn.Module, x: Tensor, y: Tensor, target: str = "best", *, seed: int = 0,
    candidates: int = CLOSEST_CANDIDATES, method: Attack | None = None, **options: Any
) -> AttackResult:
    """The paper's "minimum distortion to reach 0% accuracy" per image, attacking the wrong label `target` names.

    The paper does not say which wrong label it attacked; the rules (`TARGET_RULES`): "runner-up",
    the highest-scoring label != y; "random", a label drawn uniformly from the K-1 labels != y with a
    torch.Generator seeded by `seed` (the draw depends only on seed, the batch size and y, not on
    the model); "best", every label != y (`every_target`), keeping the closest success; "closest", the
    untargeted mode: the label that `linearised_order` puts nearest, then up to `candidates` - 1 more in that
    order where each may still be closer (`_closest_label`), keeping the closest success (the best of nine
    at the cost of one to `candidates` attacks). Images the
    model already misclassifies are not attacked: x_adv = x, distortion 0, c = 0, target = their
    prediction, success and `misclassified` True (count them, and say whether a mean takes them as
    0 or leaves them out). `method` is the attack (default `lbfgs_attack`; `lib.fast_attack.fast_attack`
    is the faster one); `options` go to it.
    """
    logits, y = _check_classified(model, x, y)
    method = lbfgs_attack if method is None else method
    if not callable(method):
        raise ValueError(f"method must be an attack function like lbfgs_attack, got {method!r}")
    if target not in TARGET_RULES:
        raise ValueError(f"target must be one of {TARGET_RULES}, got {target!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if target == "best":
        return _closest(every_target(model, x, y, method=method, **options), len(x))
    if target == "closest":
        if not isinstance(candidates, int) or not 1 <= candidates < logits.shape[1]:
            raise ValueError(f"candidates must be an integer in 1..{logits.shape[1] - 1}, got {candidates!r}")
        return _closest_label(model, x, y, logits.argmax(1), candidates, method, options)
    if target == "runner-up":
        wrong = logits.scatter(1, y[:, None], -math.inf).argmax(1)
    else:
        generator = torch.Generator().manual_seed(seed)
        k = torch.randint(logits.shape[1] - 1, (len(y),), generator=generator).to(y.device)
        wrong = k + (k >= y).long()  # skip y: uniform over the other K-1
    predicted = logits.argmax(1)
    return _attack_where_correct(model, x, y, predicted, torch.where(predicted == y, wrong, predicted), method, options)


def _closest_label(
    model: nn.Module, x: Tensor, y: Tensor, predicted: Tensor, candidates: int, method: Attack, options: dict[str, Any]
) -> AttackResult:
    """The untargeted mode: the nearest label by `linearised_distance`, then the next ones where they may be closer.

    A label is attacked when its linearised distance is below CLOSEST_SLACK x the smallest distortion
    found so far (or where nothing succeeded yet). For a linear model the linearised distance never
    exceeds the true one (the box only lengthens r), so with slack 1 no closer label is skipped.
    """
    distance = linearised_distance(model, x, y)
    order = distance.argsort(dim=1, stable=True)
    best = _attack_where_correct(model, x, y, predicted, torch.where(predicted == y, order[:, 0], predicted), method,
                                 options)
    pixels = x[0].numel()
    for k in range(1, candidates):
        label = order[:, k]
        estimate = distance.gather(1, label[:, None]).squeeze(1) / math.sqrt(pixels)  # in the book's distortion units
        todo = (~best.misclassified & (~best.success | (estimate < CLOSEST_SLACK * best.distortion))).nonzero()
        todo = todo.squeeze(1)
        if len(todo) == 0:
            break
        attempt = _attack_where_correct(model, x[todo], y[todo], predicted[todo], label[todo], method, options)
        closer = attempt.success & (~best.success[todo] | (attempt.distortion < best.distortion[todo]))
        for f in fields(AttackResult):
            getattr(best, f.name)[todo[closer]] = getattr(attempt, f.name)[closer]
    return best


def linearised_order(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Each image's wrong labels [N, K-1], nearest first by `linearised_distance`."""
    return linearised_distance(model, x, y).argsort(dim=1, stable=True)[:, :-1]


def linearised_distance(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """[N, K]: (z_y - z_j) / ||grad(z_y - z_j)||, the L2 distance to j's boundary were the logits linear (inf at y).

    DeepFool's estimate of the distance to each decision boundary (no box); exact for a linear model.
    """
    x = x.detach().clone().requires_grad_(True)
    with _evaluating(model), torch.enable_grad():
        logits = model(x)
        grads = torch.stack([torch.autograd.grad(logits[:, j].sum(), x, retain_graph=True)[0].flatten(1)
                             for j in range(logits.shape[1])], 1)  # [N,K,D]; one backward pass per class
    rows = torch.arange(len(x), device=x.device)
    gap = (logits.gather(1, y[:, None]) - logits).detach()
    distance = gap / (grads[rows, y][:, None] - grads).norm(dim=2).clamp_min(1e-12)
    distance[rows, y] = math.inf
    return distance


def every_target(model: nn.Module, x: Tensor, y: Tensor, method: Attack | None = None, **options: Any) -> AttackResult:
    """Each correctly classified image attacked towards each of its K-1 wrong labels, as one batch: N*(K-1) rows.

    Rows are image-major with the targets ascending (row i*(K-1) + j: image i, its j-th label != y_i),
    so `result.distortion.view(N, K-1)` holds each image's K-1 distortions for a mean or any rule.
    The K-1 rows of an image the model already misclassifies are `misclassified`, with x_adv = x and
    distortion 0; only the row of its prediction succeeds (c = 0; nan on the others). `method`: the
    attack (default `lbfgs_attack`), given `options`.
    """
    logits, y = _check_classified(model, x, y)
    n, n_classes = logits.shape
    labels = torch.arange(n_classes, device=y.device).expand(n, -1)
    wrong = labels[labels != y[:, None]]  # [N*(K-1)], image-major, ascending
    per_image = n_classes - 1
    return _attack_where_correct(model, x.repeat_interleave(per_image, 0), y.repeat_interleave(per_image),
                                 logits.argmax(1).repeat_interleave(per_image), wrong,
                                 lbfgs_attack if method is None else method, options)


def _attack_where_correct(
    model: nn.Module, x: Tensor, y: Tensor, predicted: Tensor, target: Tensor, method: Attack, options: dict[str, Any]
) -> AttackResult:
    """`method` on the rows the model classifies correctly; the others untouched and marked misclassified."""
    success = target == predicted
    misclassified = predicted != y
    result = AttackResult(x.clone(), success, x.new_zeros(len(x)), x.new_zeros(len(x)).masked_fill(~success, math.nan),
                          target.clone(), misclassified)
    todo = (~misclassified).nonzero().squeeze(1)
    if len(todo):
        attempts = method(model, x[todo], target[todo], **options)
        for f in fields(AttackResult):
            getattr(result, f.name)[todo] = getattr(attempts, f.name)
    return result


def _closest(rows: AttackResult, n: int) -> AttackResult:
    """Per image, its row of `rows` (n images, image-major) with the smallest successful distortion, else its first."""
    score = torch.where(rows.success, rows.distortion, math.inf).view(n, -1)
    pick = torch.arange(n, device=score.device) * score.shape[1] + score.argmin(1)
    return AttackResult(*(getattr(rows, f.name)[pick] for f in fields(AttackResult)))


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _check_images(x: Tensor) -> None:
    """ValueError unless x is a non-empty 4-D float batch [N,C,H,W] with values in [0,1]."""
    if not isinstance(x, Tensor) or x.dim() != 4 or len(x) == 0:
        raise ValueError(f"x must be a non-empty 4-D batch [N,C,H,W], got shape {tuple(getattr(x, 'shape', ()))}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a float tensor, got {x.dtype}")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError(f"x must lie in [0,1], got values in [{x.min().item():g}, {x.max().item():g}]")


def _check_labels(labels: Tensor, x: Tensor, n_classes: int, name: str) -> None:
    """ValueError unless labels is a 1-D integer tensor with one label in 0..n_classes-1 per image."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer tensor, got {getattr(labels, 'dtype', type(labels))} "
                         f"of shape {tuple(getattr(labels, 'shape', ()))}")
    if len(labels) != len(x):
        raise ValueError(f"batch sizes differ: x has {len(x)} images, {name} has {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"{name} out of range: labels must be in 0..{n_classes - 1}, got "
                         f"{labels.min().item()}..{labels.max().item()}")


def _check_classified(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate images and their true labels y (ValueError naming the problem); return the logits and y as int64."""
    _check_images(x)
    with _evaluating(model), torch.no_grad():
        logits = model(x)
    _check_labels(y, x, logits.shape[1], "y")
    return logits, y.long()


def _check_attack(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    c_init: float,
    c_steps: int,
    max_iter: int,
    history: int,
    loss: str | LossFn,
) -> LossFn:
    """Validate the attack's inputs and options (ValueError naming the problem); return the loss function."""
    if not (isinstance(c_init, (int, float)) and c_init > 0 and math.isfinite(c_init)):
        raise ValueError(f"c_init must be a positive finite number, got {c_init!r}")
    for name, value in [("c_steps", c_steps), ("max_iter", max_iter), ("history", history)]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable (lbfgs_attack also takes 'sharp'), "
                         f"got {loss!r}")
    _check_images(x)
    with _evaluating(model), torch.no_grad():
        logits = model(x)
    _check_labels(target, x, logits.shape[1], "target")
    already = (logits.argmax(1) == target).nonzero().squeeze(1)
    if len(already):
        raise ValueError(f"target equals the predicted label for images {already[:10].tolist()}: "
                         "the attack needs a different label")
    return loss if callable(loss) else LOSSES[loss]
