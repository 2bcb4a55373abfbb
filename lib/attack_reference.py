"""Independent references for `lib.attack`: the attack per image with scipy, and the exact answer for linear models.

`lbfgs_attack_reference` runs the same c search as `attack.lbfgs_attack`, one image at a time, with
scipy's L-BFGS-B as the attack libraries did (Foolbox <= 2, CleverHans 3) instead of the batched
torch optimiser of `lib.lbfgsb`. `exact_min_distortion_linear` solves the attacked problem exactly
for a linear classifier (a small convex QP), which no attack can beat.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn

from . import one_thread
from .attack import AttackResult, LossFn, _c_search, _check_attack, _check_images, _check_labels, _evaluating
from .lbfgsb import FTOL, PGTOL, Objective, value_and_grad

# ----------------------------------------------------------------------------------------------
# The attack per image, with scipy's L-BFGS-B
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

        def value_and_grad64(z64: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = value_and_grad(objective, torch.from_numpy(z64).to(z0.device, z0.dtype)[None], rows)
            return float(value), grad[0].double().cpu().numpy()

        result = scipy.optimize.minimize(
            value_and_grad64, z0[i].double().cpu().numpy(), jac=True, method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(0.0, 1.0),
            options={"maxiter": max_iter, "maxcor": history, "ftol": FTOL, "gtol": PGTOL},
        )
        z_out[i] = torch.from_numpy(result.x).to(z0.device, z0.dtype).clamp(0, 1)
    return z_out


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
