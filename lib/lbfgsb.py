"""Box-constrained L-BFGS, batched in torch: minimise one objective per row of a batch over [0,1]^D at once.

The optimiser behind `lib.attack`: each row keeps its own curvature history and line search, and
every pass evaluates the objective once for all rows still running. Stopping rules follow scipy's
L-BFGS-B (`PGTOL` on the projected gradient, `FTOL` on the relative decrease), so that
`lib.attack_reference`, which runs scipy per row, solves the same problems to the same tolerances.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Objective = Callable[[Tensor, Tensor], Tensor]  # (z [M,D], rows [M]) -> per-example value [M]

PGTOL = 1e-5  # a run stops when max |projected gradient| <= PGTOL (scipy's gtol) ...
FTOL = 1e-6  # ... or when f decreases by <= FTOL relative (scipy's ftol, for a float32 objective)


def minimize(
    objective: Objective,
    z0: Tensor,
    max_iter: int,
    history: int,
    pgtol: float = PGTOL,
    ftol: float = FTOL,
    max_backtracks: int = 10,
    armijo: float = 1e-4,
) -> Tensor:
    """Minimise objective over [0,1]^D for every row of z0 [N,D] at once: projected L-BFGS with an active set.

    objective(z, rows) returns the value of each row of z [M,D]; rows [M] are the indices into z0
    of the rows it is given (the working set shrinks as rows finish). Each row has its own history
    and line search. Variables at a bound whose gradient pushes outward are held fixed; the
    two-loop recursion gives the step d on the others; a projected backtracking (Armijo) search
    along clip(z + t d) picks its length. Every pass evaluates the objective once for the whole
    batch: a row whose trial point fails the Armijo test waits with a shorter t for the next pass
    instead of holding up the batch with extra evaluations (a rejected t is cut to the minimiser of
    the quadratic through f(0), f'(0) and f(t), within [0.1 t, 0.5 t]). A row stops after max_iter
    steps, when its projected gradient <= pgtol, its relative decrease <= ftol, or after
    max_backtracks rejections in a row (or a rejected trial that raises f by no more than ftol:
    float precision). Finished rows stay put (t = 0) and leave the working arrays once they make up
    half of them.
    """
    _check_minimize(z0, max_iter, history, max_backtracks)
    z_out = z0.clone()
    rows = torch.arange(len(z0), device=z0.device)  # the working set, as indices into z0
    running = torch.ones(len(z0), dtype=torch.bool, device=z0.device)
    z = z0.clone()
    f, g = value_and_grad(objective, z, rows)
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
        f_try, g_try = value_and_grad(objective, z_try, rows)
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


def value_and_grad(objective: Objective, z: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Per-example objective values [M] and their gradients [M,D] at z [M,D] (rows [M]: indices passed on)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        value = objective(z, rows)
        (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad


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


def _check_minimize(z0: Tensor, max_iter: int, history: int, max_backtracks: int) -> None:
    """ValueError unless z0 is a non-empty 2-D float batch [N,D] in [0,1] and the counts are positive integers."""
    if not isinstance(z0, Tensor) or z0.dim() != 2 or len(z0) == 0 or not z0.is_floating_point():
        raise ValueError(f"z0 must be a non-empty 2-D float tensor [N,D], got "
                         f"{getattr(z0, 'dtype', type(z0))} of shape {tuple(getattr(z0, 'shape', ()))}")
    if not torch.isfinite(z0).all() or z0.min() < 0 or z0.max() > 1:
        raise ValueError(f"z0 must lie in [0,1], got values in [{z0.min().item():g}, {z0.max().item():g}]")
    for name, value in [("max_iter", max_iter), ("history", history), ("max_backtracks", max_backtracks)]:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
