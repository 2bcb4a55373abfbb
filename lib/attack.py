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

Pieces: `lbfgs_attack` (one call attacks a whole batch with a batched box-constrained L-BFGS in
torch), `lbfgs_attack_reference` (the same search per image with scipy's L-BFGS-B), `min_distortion`
(the paper's "minimum distortion to reach 0% accuracy"), and `exact_min_distortion_linear` (the
exact answer for a linear classifier, a small convex QP, to check the attack against).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn

from . import one_thread

torch.set_flush_denormal(True)  # denormal float32 weights (weight decay) slow CPU matmuls 10-20x

LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits [M,K], target [M]) -> per-example loss [M]
Objective = Callable[[Tensor, Tensor], Tensor]  # (z [M,D], rows [M]) -> per-example value [M]
Minimiser = Callable[[Objective, Tensor], Tensor]  # (objective, z0 [N,D]) -> argmin over [0,1]^D [N,D]

VERSION = 2  # bump when the attack's results change: cached adversarial sets are keyed by it
PGTOL = 1e-5  # an L-BFGS run stops when max |projected gradient| <= PGTOL (scipy's gtol) ...
FTOL = 1e-6  # ... or when f decreases by <= FTOL relative (scipy's ftol, for a float32 objective)
POLISH_TEMPERATURE = 0.01  # logits; the polish's sharpened cross-entropy (see _refine)
POLISH_KAPPA = 0.03  # logits; the margin it aims for before the final shrink
BOUNDARY_MARGIN = 1e-4  # logits; the final shrink stops this far inside the target's region


@dataclass
class AttackResult:
    """Per-example outcome of an attack on a batch of N images."""

    x_adv: Tensor  # [N,C,H,W] in [0,1]
    success: Tensor  # [N] bool: argmax f(x_adv) == target
    distortion: Tensor  # [N] sqrt(sum r^2 / n), r = x_adv - x
    c: Tensor  # [N] the smallest successful c of the cross-entropy search (nan: none succeeded)
    target: Tensor  # [N] int64


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


def sharp_cross_entropy(logits: Tensor, target: Tensor, temperature: float, kappa: float) -> Tensor:
    """T log(1 + sum_{j != l} exp((z_j - z_l + kappa) / T)): cross-entropy at T=1, kappa=0; a hinge as T -> 0."""
    shifted = (logits - logits.gather(1, target[:, None]) + kappa) / temperature
    return temperature * torch.logsumexp(shifted.scatter(1, target[:, None], 0.0), 1)


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
) -> AttackResult:
    """Section 4.1 on a whole batch at once: box-constrained L-BFGS on ||r||^2 + c loss, smallest successful c.

    c_init: first c; c_steps: L-BFGS runs per image in the c search; max_iter, history: per run;
    loss: "ce", "margin" or a callable (logits, target) -> [N]; refine: shrink to the boundary
    and polish (see `_refine`). Images [N,C,H,W] in [0,1]; target [N], each != the predicted label.
    """
    loss_fn = _check_attack(model, x, target, c_init, c_steps, max_iter, history, loss)
    x, target = x.detach(), target.long()

    def minimise(objective: Objective, z0: Tensor) -> Tensor:
        return _lbfgsb_torch(objective, z0, max_iter=max_iter, history=history)

    with _evaluating(model):
        return _c_search(model, x, target, loss_fn, minimise, c_init, c_steps, refine)


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
        return _lbfgsb_torch(_penalty(model, x, target, c, loss_fn), x.flatten(1).clone(), max_iter=max_iter,
                             history=history).view(x.shape)


def _c_search(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    loss_fn: LossFn,
    minimise: Minimiser,
    c_init: float,
    c_steps: int,
    refine: bool,
) -> AttackResult:
    """The attack: per image, minimise ||z - x||^2 + c loss(f(z), l) over z in [0,1]^n for c_steps values of c.

    c grows x10 until the minimiser is classified as l (or shrinks /10 until it is not), then
    the bracket [largest failing c, smallest successful c] is bisected in log space; each image
    keeps its smallest-distortion success. Each run starts from x, as in the libraries. With
    `refine`, the winner is moved to the decision boundary and polished (see `_refine`).
    """
    shape, x_flat = x.shape, x.flatten(1)
    c = torch.full((len(x),), float(c_init), dtype=x.dtype, device=x.device)
    c_fail = torch.zeros_like(c)  # largest c that failed (0: none yet)
    c_success = torch.full_like(c, math.inf)  # smallest c that succeeded
    best = AttackResult(x.clone(), torch.zeros_like(c, dtype=torch.bool), torch.full_like(c, math.inf),
                        torch.full_like(c, math.nan), target.clone())
    for _ in range(c_steps):
        x_adv = minimise(_penalty(model, x, target, c, loss_fn), x_flat.clone()).view(shape)
        success = predict(model, x_adv) == target
        dist = distortion(x, x_adv)
        better = torch.where(best.success, success & (dist < best.distortion), True)  # failures: keep the latest
        best.x_adv = torch.where(better[:, None, None, None], x_adv, best.x_adv)
        best.distortion = torch.where(better, dist, best.distortion)
        best.c = torch.where(better, c, best.c)
        best.success |= success
        c_success = torch.where(success, torch.minimum(c_success, c), c_success)
        c_fail = torch.where(success, c_fail, torch.maximum(c_fail, c))
        c = torch.where(c_success.isinf(), c * 10, torch.where(c_fail == 0, c / 10, (c_fail * c_success).sqrt()))
    if refine:
        best.x_adv = _refine(model, x, best.x_adv, target, best.success, minimise)
        best.distortion = distortion(x, best.x_adv)
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


def _penalty(model: nn.Module, x: Tensor, target: Tensor, c: Tensor, loss_fn: LossFn) -> Objective:
    """The objective ||z - x||^2 + c loss(f(z), l) of the penalty problem, for the given rows of the batch."""
    x_flat, shape = x.flatten(1), x.shape[1:]

    def penalty(z: Tensor, rows: Tensor) -> Tensor:
        r = z - x_flat.index_select(0, rows)  # (index_select: ~4x faster than x_flat[rows] on CPU)
        logits = model(z.view(-1, *shape))
        return torch.linalg.vecdot(r, r) + c.index_select(0, rows) * loss_fn(logits, target.index_select(0, rows))

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

    _, grad = _value_and_grad(margin, z, torch.arange(len(z), device=z.device))
    inside = (z > 0) & (z < 1)
    r, a = (z - x.flatten(1)) * inside, grad * inside
    return (2 * (r * a).sum(1) / a.pow(2).sum(1).clamp_min(1e-30)).clamp_min(1e-30)


# ----------------------------------------------------------------------------------------------
# The reference: per image, scipy's L-BFGS-B
# ----------------------------------------------------------------------------------------------


def lbfgs_attack_reference(
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
) -> AttackResult:
    """The same attack one image at a time with scipy's L-BFGS-B, as Foolbox <= 2 and CleverHans 3 ran it."""
    loss_fn = _check_attack(model, x, target, c_init, c_steps, max_iter, history, loss)
    x, target = x.detach(), target.long()

    def minimise(objective: Objective, z0: Tensor) -> Tensor:
        return _lbfgsb_scipy(objective, z0, max_iter=max_iter, history=history)

    with _evaluating(model), one_thread():
        results = [
            _c_search(model, x[i : i + 1], target[i : i + 1], loss_fn, minimise, c_init, c_steps, refine)
            for i in range(len(x))
        ]
    return AttackResult(*(torch.cat([getattr(r, f.name) for r in results]) for f in fields(AttackResult)))


def _lbfgsb_scipy(objective: Objective, z0: Tensor, max_iter: int, history: int) -> Tensor:
    """scipy's L-BFGS-B (float64 iterates) on each row of z0 in turn, the model in its own dtype."""
    z_out = z0.clone()
    for i in range(len(z0)):
        rows = torch.tensor([i], device=z0.device)

        def value_and_grad(z64: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = _value_and_grad(objective, torch.from_numpy(z64).to(z0.device, z0.dtype)[None], rows)
            return float(value), grad[0].double().cpu().numpy()

        result = scipy.optimize.minimize(
            value_and_grad, z0[i].double().cpu().numpy(), jac=True, method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(0.0, 1.0),
            options={"maxiter": max_iter, "maxcor": history, "ftol": FTOL, "gtol": PGTOL},
        )
        z_out[i] = torch.from_numpy(result.x).to(z0.device, z0.dtype).clamp(0, 1)
    return z_out


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


def min_distortion(model: nn.Module, x: Tensor, y: Tensor, target: str = "all", **options: Any) -> AttackResult:
    """The paper's "minimum distortion to reach 0% accuracy": per image the closest success over rival labels.

    target="all" attacks all K-1 labels != y as one batch; "runner-up" only the label with the
    second-highest logit. Images already misclassified need no distortion (x_adv = x, target =
    their prediction, c = 0). `options` go to `lbfgs_attack`.
    """
    _check_images(x)
    with _evaluating(model), torch.no_grad():
        logits = model(x)
    _check_labels(y, x, logits.shape[1], "y")
    y = y.long()
    if target not in ("all", "runner-up"):
        raise ValueError(f"target must be 'all' or 'runner-up', got {target!r}")
    n_classes = logits.shape[1]
    rival_logits = logits.scatter(1, y[:, None], -math.inf)
    if target == "runner-up":
        candidates = rival_logits.argmax(1, keepdim=True)  # [N,1]
    else:
        candidates = torch.arange(n_classes, device=x.device).expand(len(x), -1)[rival_logits.isfinite()]
        candidates = candidates.view(len(x), -1)
    predicted = logits.argmax(1)
    no_distortion = x.new_zeros(len(x))
    result = AttackResult(x.clone(), torch.ones_like(predicted, dtype=torch.bool), no_distortion,
                          no_distortion.clone(), predicted.clone())
    todo = (predicted == y).nonzero().squeeze(1)
    if len(todo) == 0:
        return result
    per_image = candidates.shape[1]
    attempts = lbfgs_attack(model, x[todo].repeat_interleave(per_image, 0), candidates[todo].flatten(), **options)
    score = torch.where(attempts.success, attempts.distortion, math.inf).view(len(todo), per_image)
    pick = torch.arange(len(todo), device=x.device) * per_image + score.argmin(1)  # none succeeded: first target
    for f in fields(AttackResult):
        getattr(result, f.name)[todo] = getattr(attempts, f.name)[pick]
    return result


# ----------------------------------------------------------------------------------------------
# The exact minimum for a linear classifier
# ----------------------------------------------------------------------------------------------


@dataclass
class LinearMinimum:
    """The exact minimal perturbation of a linear classifier, per example."""

    x_min: Tensor  # [N,C,H,W] the closest point of the box that the target wins or ties (x if there is none)
    distortion: Tensor  # [N] sqrt(sum r^2 / n) for r = x_min - x (inf: the target wins nowhere in the box)
    lower_bound: Tensor  # [N] the dual value as a distortion: a certified lower bound (equal at optimum)
    multipliers: Tensor  # [N,K-1] the dual solution mu >= 0, one per rival label


def exact_min_distortion_linear(model: nn.Module, x: Tensor, target: Tensor) -> LinearMinimum:
    """Exact min ||r|| with (w_l - w_j).(x+r) + b_l - b_j >= 0 for all j != l and x+r in [0,1]: a convex QP.

    Its Lagrangian dual over mu >= 0 (one multiplier per rival j, the box kept in the primal)
    is a concave (K-1)-variable maximisation whose inner minimum has the closed form
    z(mu) = clip(x + A^T mu / 2, 0, 1), rows of A being a_j = w_l - w_j; scipy's L-BFGS-B
    maximises it; a dual value above n (the largest ||r||^2 in the box) proves that the target
    wins nowhere in the box (distortion inf). The model must be Flatten + one nn.Linear
    (dropout/identity layers allowed).
    """
    _check_images(x)
    layer = _linear_layer(model)
    _check_labels(target, x, layer.out_features, "target")
    W, b = layer.weight.detach().double().cpu().numpy(), layer.bias.detach().double().cpu().numpy()
    if W.shape[1] != x[0].numel():
        raise ValueError(f"the linear layer takes {W.shape[1]} inputs, the images have {x[0].numel()} pixels")
    x64 = x.detach().flatten(1).double().cpu().numpy()
    solutions = []
    with one_thread():  # tiny BLAS calls
        for xi, l in zip(x64, target.tolist()):
            rivals = [j for j in range(len(b)) if j != l]
            solutions.append(_solve_linear_qp_dual(xi, W[l] - W[rivals], b[l] - b[rivals]))
    z, dual_value = np.stack([s[0] for s in solutions]), np.array([s[2] for s in solutions])
    unreachable = dual_value > x[0].numel()  # exceeds every ||r||^2 in the box: no point of it is feasible
    z[unreachable] = x64[unreachable]
    dist = np.where(unreachable, np.inf, np.sqrt(((z - x64) ** 2).mean(1)))
    bound = np.where(unreachable, np.inf, np.sqrt(np.maximum(dual_value, 0) / x[0].numel()))
    return LinearMinimum(
        x_min=torch.from_numpy(z).to(x.device, x.dtype).view_as(x),
        distortion=torch.from_numpy(dist).to(x.device, x.dtype),
        lower_bound=torch.from_numpy(bound).to(x.device, x.dtype),
        multipliers=torch.from_numpy(np.stack([s[1] for s in solutions])),
    )


def _solve_linear_qp_dual(x: np.ndarray, A: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """min ||z - x||^2 s.t. A z + beta >= 0, 0 <= z <= 1, through its dual; returns (z, mu, dual value)."""

    def negative_dual(mu: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.clip(x + A.T @ mu / 2, 0, 1)
        slack = A @ z + beta
        return -(np.sum((z - x) ** 2) - mu @ slack), slack  # gradient of the dual is -slack (Danskin)

    def stop_if_unreachable(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        if -intermediate_result.fun > len(x):  # the dual is unbounded: the target wins nowhere in the box
            raise StopIteration

    result = scipy.optimize.minimize(
        negative_dual, np.zeros(len(beta)), jac=True, method="L-BFGS-B", callback=stop_if_unreachable,
        bounds=[(0, None)] * len(beta), options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )
    return np.clip(x + A.T @ result.x / 2, 0, 1), result.x, -result.fun


def _linear_layer(model: nn.Module) -> nn.Linear:
    """The single nn.Linear of a model made of Flatten, Linear and identity-like layers, else ValueError."""
    leaves = [m for m in model.modules() if not list(m.children())]
    linear = [m for m in leaves if isinstance(m, nn.Linear)]
    if len(linear) != 1 or any(not isinstance(m, (nn.Linear, nn.Flatten, nn.Identity, nn.Dropout)) for m in leaves):
        raise ValueError("exact_min_distortion_linear needs a linear model: Flatten and a single nn.Linear")
    if linear[0].bias is None:
        raise ValueError("exact_min_distortion_linear needs the nn.Linear to have a bias")
    return linear[0]


# ----------------------------------------------------------------------------------------------
# Box-constrained L-BFGS, batched in torch
# ----------------------------------------------------------------------------------------------


def _lbfgsb_torch(
    objective: Objective,
    z0: Tensor,
    max_iter: int,
    history: int,
    pgtol: float = PGTOL,
    ftol: float = FTOL,
    max_backtracks: int = 10,
    armijo: float = 1e-4,
) -> Tensor:
    """Minimise objective over [0,1]^D for every row of z0 at once: projected L-BFGS with an active set.

    Each row has its own history and line search. Variables at a bound whose gradient pushes
    outward are held fixed; the two-loop recursion gives the step d on the others; a projected
    backtracking (Armijo) search along clip(z + t d) picks its length. Every pass evaluates the
    objective once for the whole batch: a row whose trial point fails the Armijo test waits
    with a shorter t for the next pass instead of holding up the batch with extra evaluations
    (a rejected t is cut to the minimiser of the quadratic through f(0), f'(0) and f(t), within
    [0.1 t, 0.5 t]). A row stops after max_iter steps, when its projected gradient <= pgtol, its
    relative decrease <= ftol, or after max_backtracks rejections in a row (or a rejected trial
    that raises f by no more than ftol: float precision). Finished rows stay put (t = 0) and leave
    the working arrays once they make up half of them.
    """
    z_out = z0.clone()
    rows = torch.arange(len(z0), device=z0.device)  # the working set, as indices into z0
    running = torch.ones(len(z0), dtype=torch.bool, device=z0.device)
    z = z0.clone()
    f, g = _value_and_grad(objective, z, rows)
    S = z.new_zeros(history, len(z), z.shape[1])  # (s, y) pairs; pass `it` writes slot it % history
    Y = torch.zeros_like(S)
    rho = z.new_zeros(history, len(z))  # 1 / s.y, or 0 for a slot without a valid pair
    gamma = z.new_zeros(len(z))  # initial inverse Hessian gamma I; 0: no pair yet
    d, t = torch.zeros_like(z), z.new_ones(len(z))  # the current search direction and step of each row
    steps = torch.zeros(len(z), dtype=torch.long, device=z.device)  # accepted steps
    rejected = torch.zeros_like(steps)  # rejections since the last accepted step (> 0: mid line search)
    for it in range(max_iter * (max_backtracks + 1)):
        # a new direction for every row that is not mid line search
        newest_first = [(it - 1 - k) % history for k in range(min(it, history))]
        bound = _bound_side(z)
        free = _movable(bound, g, sign=-1)  # 0 at a bound that steepest descent pushes against: held this step
        d_new = _two_loop(g * free, S, Y, rho, gamma, newest_first).mul_(free).neg_()
        d_new.mul_(_movable(bound, d_new))
        searching = ((rejected > 0) & running).nonzero().squeeze(1)
        restart = (~(torch.linalg.vecdot(g, d_new) < 0) & (rejected == 0) & running).nonzero().squeeze(1)
        if len(restart):  # not a descent direction: steepest descent and a fresh history
            d_new[restart] = -(g[restart] * free[restart])
            rho[:, restart], gamma[restart] = 0, 0
        fresh = (gamma <= 0) & running  # no curvature pair yet: the first step is at most 1 long
        t_new = torch.ones_like(t)
        if fresh.any():
            t_new[fresh] = d_new[fresh].norm(dim=1).clamp_min(1e-12).reciprocal().clamp(max=1.0)
        if len(searching):
            d_new[searching], t_new[searching] = d[searching], t[searching]
        d, t = d_new, t_new

        # one evaluation of the whole working set: finished rows stay put (t = 0) rather than being gathered out
        slot = it % history
        z_try = torch.addcmul(z, (t * running)[:, None], d).clamp_(0, 1)
        f_try, g_try = _value_and_grad(objective, z_try, rows)
        s, y = torch.sub(z_try, z, out=S[slot]), torch.sub(g_try, g, out=Y[slot])
        slope = torch.linalg.vecdot(g, s).clamp(max=0)  # directional derivative times t
        accept = running & (f_try <= f + armijo * slope)
        stuck = ~accept & (f_try - f <= ftol * f.abs().clamp_min(1))  # nan is neither: it backtracks
        sy, yy = torch.linalg.vecdot(s, y), torch.linalg.vecdot(y, y)
        valid = accept & (sy > 1e-10 * yy)  # curvature condition; otherwise (or mid search) the slot stays empty
        rho[slot] = torch.where(valid, 1 / sy.clamp_min(1e-30), 0.0)
        gamma = torch.where(valid, sy / yy.clamp_min(1e-30), gamma)
        decreased = f - f_try > ftol * torch.maximum(f.abs(), f_try.abs()).clamp_min(1)
        cut = (-slope / (2 * (f_try - f - slope).clamp_min(1e-30))).nan_to_num(0.5).clamp(0.1, 0.5)
        t = torch.where(accept, t, t * cut)
        steps += accept
        rejected = torch.where(accept, 0, rejected + running)
        keep = (running & ~accept).nonzero().squeeze(1)
        if len(keep):  # rejected rows stay where they are
            z_try[keep], f_try[keep], g_try[keep] = z[keep], f[keep], g[keep]
        z, f, g = z_try, f_try, g_try
        running &= torch.where(accept, decreased & (steps < max_iter), ~stuck & (rejected < max_backtracks))
        running &= _projected_gradient_norm(z, g) > pgtol

        n_running = int(running.sum())
        if 2 * n_running <= len(rows):  # compacting copies the history: worth it once half the rows are idle
            z_out[rows] = z
            rows, z, f, g, gamma, d, t, steps, rejected = (
                a[running] for a in (rows, z, f, g, gamma, d, t, steps, rejected)
            )
            S, Y, rho = S[:, running], Y[:, running], rho[:, running]
            running = running[running]
            if n_running == 0:
                break
    z_out[rows] = z
    return z_out


def _two_loop(q: Tensor, S: Tensor, Y: Tensor, rho: Tensor, gamma: Tensor, newest_first: list[int]) -> Tensor:
    """H q for each row's L-BFGS inverse Hessian (overwrites q): pairs S, Y [m,M,D] in slots newest_first; rho = 0 marks a gap."""
    alphas = []
    for i in newest_first:
        alpha = rho[i] * torch.linalg.vecdot(S[i], q)
        q.addcmul_(alpha[:, None], Y[i], value=-1)
        alphas.append(alpha)
    r = q.mul_(torch.where(gamma > 0, gamma, 1.0)[:, None])
    for i, alpha in zip(reversed(newest_first), reversed(alphas)):
        beta = rho[i] * torch.linalg.vecdot(Y[i], r)
        r.addcmul_((alpha - beta)[:, None], S[i])
    return r


def _bound_side(z: Tensor) -> Tensor:
    """+1 where z is at its upper bound 1, -1 at its lower bound 0, 0 strictly inside (z in [0,1])."""
    return z.floor().add_(z.ceil()).sub_(1)


def _movable(bound: Tensor, direction: Tensor, sign: int = 1) -> Tensor:
    """1.0 where a variable can move along sign * direction (inside, or at a bound pointing inward), else 0.0.

    bound from `_bound_side`. Float masks (sign/clamp) rather than bool ones: several times faster on CPU.
    """
    outward = (bound * direction).sign_()
    return (outward.clamp_(min=0) if sign > 0 else outward.clamp_(max=0)).mul_(-sign).add_(1)


def _projected_gradient_norm(z: Tensor, g: Tensor) -> Tensor:
    """max_i |clip(z - g) - z|_i, L-BFGS-B's measure of stationarity in a box."""
    return (z - g).clamp_(0, 1).sub_(z).abs_().amax(1)


def _value_and_grad(objective: Objective, z: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per-example objective values [M] and their gradients [M,D]."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        value = objective(z, rows)
        (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad


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
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    _check_images(x)
    with _evaluating(model), torch.no_grad():
        logits = model(x)
    _check_labels(target, x, logits.shape[1], "target")
    already = (logits.argmax(1) == target).nonzero().squeeze(1)
    if len(already):
        raise ValueError(f"target equals the predicted label for images {already[:10].tolist()}: "
                         "the attack needs a different label")
    return loss if callable(loss) else LOSSES[loss]
