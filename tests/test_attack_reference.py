"""lib/attack_reference.py: scipy's per-image attack and the exact QP for linear models, and the attack against them."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from lib.attack import lbfgs_attack, predict
from lib.attack_reference import exact_min_distortion_linear, lbfgs_attack_reference
from stand_ins import correctly_classified, models, one_cpu_thread, random_linear, runner_up  # noqa: F401 (fixtures)


# --- the per-image scipy reference ----------------------------------------------------------------


def test_batched_matches_scipy_reference(models):
    model = models["mlp"]
    x, _ = correctly_classified(model, 4, seed=4)
    target = runner_up(model, x)
    batched = lbfgs_attack(model, x, target)
    torch.set_num_threads(2)
    try:
        reference = lbfgs_attack_reference(model, x, target)
        assert torch.get_num_threads() == 2  # restored after running on one thread
    finally:
        torch.set_num_threads(1)
    assert batched.success.all() and reference.success.all()
    assert reference.x_adv.min() >= 0 and reference.x_adv.max() <= 1
    assert not reference.misclassified.any()
    torch.testing.assert_close(batched.distortion, reference.distortion, rtol=0.02, atol=0)


# --- the exact minimum of a linear model ----------------------------------------------------------


def linear_constraints(model: nn.Module, target: int) -> tuple[np.ndarray, np.ndarray]:
    """A, beta with A z + beta >= 0 iff label `target` scores at least every rival."""
    w, b = model[1].weight.double().numpy(), model[1].bias.double().numpy()
    rivals = [j for j in range(len(b)) if j != target]
    return w[target] - w[rivals], b[target] - b[rivals]


def slsqp_min_distortion(x: np.ndarray, A: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """An independent solver for the same QP: scipy's SLSQP on the primal."""
    result = scipy.optimize.minimize(
        lambda z: (np.sum((z - x) ** 2), 2 * (z - x)), x, jac=True, method="SLSQP",
        bounds=[(0, 1)] * len(x), options={"maxiter": 500, "ftol": 1e-10},
        constraints=[{"type": "ineq", "fun": lambda z: A @ z + beta, "jac": lambda z: A}],
    )
    assert result.success, result.message
    return result.x


@pytest.fixture(scope="module")
def linear_case(models):
    """Linear model, 8 correct test images, assorted targets, the exact minimum and the attack."""
    model = models["linear"]
    x, y = correctly_classified(model, 8, seed=5)
    target = (y + 1 + torch.arange(len(y)) % 9) % 10
    return model, x, target, exact_min_distortion_linear(model, x, target), lbfgs_attack(model, x, target)


def test_exact_minimiser_satisfies_constraints_and_kkt(linear_case):
    model, x, target, exact, _ = linear_case
    assert exact.x_min.min() >= 0 and exact.x_min.max() <= 1
    assert (exact.multipliers >= 0).all()
    for i, l in enumerate(target.tolist()):
        A, beta = linear_constraints(model, l)
        z, mu = exact.x_min[i].flatten().double().numpy(), exact.multipliers[i].numpy()
        slack = A @ z + beta
        assert slack.min() > -1e-5  # feasible (z is stored in float32)
        assert abs(mu @ slack) < 1e-4  # complementary slackness
        assert abs(slack[mu > 0]).max() < 1e-5  # the active rivals sit exactly on the boundary
    torch.testing.assert_close(exact.lower_bound, exact.distortion, rtol=1e-4, atol=1e-7)  # zero duality gap


def test_exact_minimum_matches_slsqp_on_mnist(linear_case):
    model, x, target, exact, _ = linear_case
    for i in range(2):
        A, beta = linear_constraints(model, int(target[i]))
        z = slsqp_min_distortion(x[i].flatten().double().numpy(), A, beta)
        expected = np.sqrt(np.mean((z - x[i].flatten().double().numpy()) ** 2))
        assert exact.distortion[i].item() == pytest.approx(expected, rel=1e-4)
        np.testing.assert_allclose(exact.x_min[i].flatten().numpy(), z, atol=2e-4)


def test_exact_minimum_matches_slsqp_on_small_random_problems():
    gen = torch.Generator().manual_seed(6)
    model = random_linear(16, 5, gen)
    x = torch.rand(12, 1, 4, 4, generator=gen)
    target = (predict(model, x) + 1 + torch.arange(12) % 4) % 5
    exact = exact_min_distortion_linear(model, x, target)
    assert exact.multipliers.shape == (12, 4)
    for i, l in enumerate(target.tolist()):
        w, b = model[1].weight.detach().double().numpy(), model[1].bias.detach().double().numpy()
        rivals = [j for j in range(5) if j != l]
        x_i = x[i].flatten().double().numpy()
        A, beta = w[l] - w[rivals], b[l] - b[rivals]
        assert scipy.optimize.linprog(np.zeros(16), A_ub=-A, b_ub=beta, bounds=[(0, 1)] * 16).status == 0
        z = slsqp_min_distortion(x_i, A, beta)
        assert exact.distortion[i].item() == pytest.approx(np.sqrt(np.mean((z - x_i) ** 2)), rel=1e-4, abs=1e-7)


def test_exact_minimum_reports_an_unreachable_target():
    layer = nn.Linear(16, 3)
    with torch.no_grad():
        layer.weight.uniform_(-1, 1)
        layer.bias.copy_(torch.tensor([0.0, 0.0, -100.0]))  # class 2 loses everywhere in [0,1]^16
    model = nn.Sequential(nn.Flatten(), layer)
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(9))
    exact = exact_min_distortion_linear(model, x, torch.tensor([2, 2]))
    assert exact.distortion.isinf().all() and exact.lower_bound.isinf().all()
    assert torch.equal(exact.x_min, x)


def test_attack_is_near_but_never_below_the_exact_minimum(linear_case):
    _, _, _, exact, result = linear_case
    assert result.success.all()
    assert (result.distortion >= exact.lower_bound * (1 - 1e-5)).all()  # the dual value bounds every success
    assert (result.distortion >= exact.distortion * (1 - 1e-4)).all()
    ratio = result.distortion / exact.distortion
    assert ratio.max() <= 1.05
    assert ratio.mean() <= 1.01


def test_exact_minimum_needs_a_linear_model(models):
    x, _ = correctly_classified(models["mlp"], 2)
    with pytest.raises(ValueError, match="linear model"):
        exact_min_distortion_linear(models["mlp"], x, torch.tensor([0, 1]))


def test_bad_input_to_exact(models):
    model = models["linear"]
    x, _ = correctly_classified(model, 3, seed=8)
    target = runner_up(model, x)
    with pytest.raises(ValueError, match="4-D batch"):
        exact_min_distortion_linear(model, x[0], target)
    with pytest.raises(ValueError, match="target out of range"):
        exact_min_distortion_linear(model, x, target + 10)
