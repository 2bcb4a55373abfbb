"""The batched box-constrained L-BFGS (lib/lbfgsb.py) on problems whose minimiser is known or computed by scipy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from lib import lbfgsb


def separable_quadratic(a: torch.Tensor, w: torch.Tensor) -> lbfgsb.Objective:
    """sum_i w_i (z_i - a_i)^2 per row: over [0,1] its minimiser is clip(a, 0, 1)."""
    def objective(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return ((z - a[rows]) ** 2 * w[rows]).sum(1)

    return objective


def test_minimum_of_a_separable_quadratic_is_the_clipped_centre():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(6, 20, generator=gen, dtype=torch.float64) * 3 - 1  # a third of the centres outside [0,1]
    w = torch.rand(6, 20, generator=gen, dtype=torch.float64) * 100 + 0.01  # condition numbers up to 1e4
    z = lbfgsb.minimize(separable_quadratic(a, w), torch.full_like(a, 0.5), max_iter=200, history=10,
                        pgtol=1e-10, ftol=1e-15)
    torch.testing.assert_close(z, a.clamp(0, 1), atol=1e-6, rtol=0)


def test_rows_are_independent_and_the_objective_sees_their_indices():
    """Rows that start at their minimum stop at once (and stay exactly put); the others still converge."""
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(8, 5, generator=gen, dtype=torch.float64)
    w = torch.ones_like(a)
    z0 = torch.rand(8, 5, generator=gen, dtype=torch.float64)
    z0[::2] = a[::2]
    seen = []

    def objective(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return separable_quadratic(a, w)(z, rows)

    z = lbfgsb.minimize(objective, z0, max_iter=50, history=5)
    assert torch.equal(z[::2], a[::2])
    torch.testing.assert_close(z, a, atol=1e-4, rtol=0)
    assert torch.equal(seen[0], torch.arange(8)) and len(seen[-1]) < 8  # finished rows left the working set
    alone = lbfgsb.minimize(separable_quadratic(a[1:2], w[1:2]), z0[1:2], max_iter=50, history=5)
    torch.testing.assert_close(z[1:2], alone, atol=1e-6, rtol=0)


def test_matches_scipy_on_a_coupled_quadratic_in_the_box():
    gen = torch.Generator().manual_seed(2)
    D = 30
    M = torch.randn(2, D, D, generator=gen, dtype=torch.float64)
    H = M @ M.transpose(1, 2) / D + 0.05 * torch.eye(D, dtype=torch.float64)  # SPD, coupled
    b = torch.randn(2, D, generator=gen, dtype=torch.float64) * 2

    def objective(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("md,mde,me->m", z, H[rows], z) - (b[rows] * z).sum(1)

    z = lbfgsb.minimize(objective, torch.full((2, D), 0.5, dtype=torch.float64), max_iter=500, history=10,
                        pgtol=1e-9, ftol=1e-14)
    for i in range(2):
        Hi, bi = H[i].numpy(), b[i].numpy()
        ref = scipy.optimize.minimize(lambda v: (0.5 * v @ Hi @ v - bi @ v, Hi @ v - bi), np.full(D, 0.5), jac=True,
                                      method="L-BFGS-B", bounds=[(0, 1)] * D,
                                      options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
        assert 0 < (ref.x == 0).sum() + (ref.x == 1).sum() < D  # some bounds active, some not
        np.testing.assert_allclose(z[i].numpy(), ref.x, atol=1e-5)


def test_value_and_grad_returns_per_row_values_and_gradients():
    a = torch.tensor([[0.2, 0.4], [1.0, 0.0]])
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    z = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    value, grad = lbfgsb.value_and_grad(separable_quadratic(a, w), z, torch.tensor([0, 1]))
    torch.testing.assert_close(value, ((z - a) ** 2 * w).sum(1))
    torch.testing.assert_close(grad, 2 * w * (z - a))
    assert not value.requires_grad and not z.requires_grad


def test_box_helpers():
    z = torch.tensor([[0.0, 0.3, 1.0, 0.0, 1.0]])
    bound = lbfgsb._bound_side(z)
    assert bound.tolist() == [[-1.0, 0.0, 1.0, -1.0, 1.0]]
    direction = torch.tensor([[-1.0, -1.0, 1.0, 1.0, -1.0]])  # out, inside, out, in, in
    assert lbfgsb._movable(bound, direction).tolist() == [[0.0, 1.0, 0.0, 1.0, 1.0]]
    assert lbfgsb._movable(bound, -direction, sign=-1).tolist() == [[0.0, 1.0, 0.0, 1.0, 1.0]]
    g = torch.tensor([[0.5, 0.5, -0.5, -0.2, 0.1]])  # held where it points out of the box; the largest move inside is 0.3
    assert lbfgsb._projected_gradient_norm(z, g).tolist() == pytest.approx([0.3])


@pytest.mark.parametrize(
    "z0, options, message",
    [
        (torch.full((3,), 0.5), {}, "2-D float tensor"),
        (torch.zeros((0, 3)), {}, "2-D float tensor"),
        (torch.ones((2, 3), dtype=torch.long), {}, "2-D float tensor"),
        (torch.full((2, 3), 1.5), {}, r"z0 must lie in \[0,1\]"),
        (torch.full((2, 3), 0.5), {"max_iter": 0}, "max_iter must be a positive integer"),
        (torch.full((2, 3), 0.5), {"history": 2.0}, "history must be a positive integer"),
        (torch.full((2, 3), 0.5), {"max_backtracks": 0}, "max_backtracks must be a positive integer"),
    ],
)
def test_bad_input_raises_value_error(z0, options, message):
    def objective(z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return z.pow(2).sum(1)

    with pytest.raises(ValueError, match=message):
        lbfgsb.minimize(objective, z0, **{"max_iter": 10, "history": 5, **options})
