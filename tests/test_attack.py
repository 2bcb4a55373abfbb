"""The Section 4.1 attack (lib/attack.py) on small stand-in models trained here in a few seconds."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from lib import attack
from lib.attack import (
    distortion,
    exact_min_distortion_linear,
    lbfgs_attack,
    lbfgs_attack_reference,
    min_distortion,
    predict,
)
from lib.data import fixed_subset, load_mnist


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """The attack's tensors are small: on a shared 2-core machine a second OpenMP thread costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)


def train_briefly(model: nn.Module, steps: int, weight_decay: float, seed: int = 0) -> nn.Module:
    """A few hundred Adam steps on MNIST minibatches: ~90% test accuracy, enough to attack."""
    images, labels = load_mnist(train=True)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=weight_decay)
    for _ in range(steps):
        batch = torch.randint(len(labels), (128,), generator=generator)
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    """Stand-ins for the zoo: a linear softmax, a 784-100-100-10 sigmoid net, a small conv net."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.Sigmoid(), nn.Linear(100, 100), nn.Sigmoid(),
                        nn.Linear(100, 10))
    conv = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * 4 * 4, 10))
    return {
        "linear": train_briefly(linear, 600, 1e-4),
        "mlp": train_briefly(mlp, 1200, 1e-5),
        "conv": train_briefly(conv, 600, 0.0),
    }


def test_stand_ins_are_trained(models):
    x, y = fixed_subset(1000, train=False, seed=0)
    for kind, model in models.items():
        assert (predict(model, x) == y).float().mean() > 0.85, kind


def correctly_classified(model: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to n test images (and labels) that the model classifies correctly."""
    x, y = fixed_subset(3 * n, train=False, seed=seed)
    keep = predict(model, x) == y
    return x[keep][:n], y[keep][:n]


def runner_up(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The label with the second-highest logit."""
    with torch.no_grad():
        logits = model(x)
    return logits.scatter(1, logits.argmax(1, keepdim=True), -torch.inf).argmax(1)


# --- distortion ---------------------------------------------------------------------------------


def test_distortion_is_root_mean_square_of_r():
    gen = torch.Generator().manual_seed(0)
    x, x_adv = torch.rand(3, 1, 28, 28, generator=gen), torch.rand(3, 1, 28, 28, generator=gen)
    expected = [np.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(xa.flatten(), xb.flatten())) / 784)
                for xa, xb in zip(x_adv, x)]
    np.testing.assert_allclose(distortion(x, x_adv).numpy(), expected, rtol=1e-5)
    assert distortion(x, x).eq(0).all()


# --- the attack on every model kind ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "mlp", "conv"])
def test_attack_reaches_target_inside_box(models, kind):
    model = models[kind]
    x, y = correctly_classified(model, 6, seed=1)
    target = (y + 1 + torch.arange(len(y)) % 9) % 10  # assorted rival labels
    result = lbfgs_attack(model, x, target)
    assert result.success.all()
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert torch.equal(predict(model, result.x_adv), target)
    assert torch.equal(result.target, target)
    torch.testing.assert_close(result.distortion, distortion(x, result.x_adv))
    assert (result.distortion > 0).all() and (result.distortion < 0.3).all()
    assert (result.c > 0).all() and result.c.isfinite().all()
    assert not model.training


def test_attack_without_refinement_and_with_other_losses(models):
    model = models["mlp"]
    x, _ = correctly_classified(model, 4, seed=2)
    target = runner_up(model, x)
    plain = lbfgs_attack(model, x, target, refine=False, c_steps=6)
    margin = lbfgs_attack(model, x, target, loss="margin", c_steps=6)
    custom = lbfgs_attack(model, x, target.int(), loss=attack.cross_entropy_loss, c_steps=6)  # int32 labels too
    refined = lbfgs_attack(model, x, target, c_steps=6)
    for result in (plain, margin, custom, refined):
        assert result.success.all()
        assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    torch.testing.assert_close(custom.distortion, refined.distortion)  # "ce" is that callable
    assert (refined.distortion <= plain.distortion * (1 + 1e-4)).all()  # refinement only moves closer


def test_attack_restores_training_mode(models):
    model = models["conv"]
    x, _ = correctly_classified(model, 2, seed=3)
    target = runner_up(model, x)
    model.train()
    try:
        result = lbfgs_attack(model, x, target, c_steps=4)
        assert model.training
    finally:
        model.eval()
    assert torch.equal(predict(model, result.x_adv), target)  # judged with dropout off


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
    layer = nn.Linear(16, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(5, 16, generator=gen))
        layer.bias.copy_(torch.randn(5, generator=gen))
    model = nn.Sequential(nn.Flatten(), layer).eval()
    x = torch.rand(12, 1, 4, 4, generator=gen)
    target = (predict(model, x) + 1 + torch.arange(12) % 4) % 5
    exact = exact_min_distortion_linear(model, x, target)
    assert exact.multipliers.shape == (12, 4)
    for i, l in enumerate(target.tolist()):
        w, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
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


def test_attack_reports_failure_for_an_unreachable_target():
    layer = nn.Linear(16, 3)
    with torch.no_grad():
        layer.weight.uniform_(-1, 1, generator=torch.Generator().manual_seed(10))
        layer.bias.copy_(torch.tensor([0.0, 0.0, -100.0]))
    model = nn.Sequential(nn.Flatten(), layer)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(11))
    target = torch.where(predict(model, x) == 0, 1, 0)
    target[0] = 2
    result = lbfgs_attack(model, x, target, c_steps=5)
    assert result.success.tolist() == [False, True, True]
    assert result.c[0].isnan() and result.c[1:].isfinite().all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


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


# --- minimum distortion over targets --------------------------------------------------------------


def test_min_distortion_over_all_targets(models):
    model = models["linear"]
    x, y = fixed_subset(40, train=False, seed=7)
    wrong = (predict(model, x) != y).nonzero().squeeze(1)[:1]
    right = (predict(model, x) == y).nonzero().squeeze(1)[:3]
    x, y = x[torch.cat([wrong, right])], y[torch.cat([wrong, right])]
    best = min_distortion(model, x, y, c_steps=8)
    cheap = min_distortion(model, x, y, target="runner-up", c_steps=8)
    assert best.success.all() and cheap.success.all()
    assert best.x_adv.min() >= 0 and best.x_adv.max() <= 1
    assert torch.equal(predict(model, best.x_adv), best.target)
    assert (best.target[len(wrong):] != y[len(wrong):]).all()
    if len(wrong):  # already misclassified: nothing to do
        assert best.distortion[0] == 0 and torch.equal(best.x_adv[0], x[0])
        assert best.target[0] == predict(model, x[:1])[0]
    assert (best.distortion <= cheap.distortion * (1 + 1e-3)).all()
    exact = torch.stack([exact_min_distortion_linear(model, x, torch.full_like(y, j)).distortion
                         for j in range(10)], 1)
    exact[torch.arange(len(y)), y] = torch.inf
    exact[: len(wrong)] = 0
    torch.testing.assert_close(best.distortion, exact.min(1).values, rtol=0.05, atol=1e-6)


# --- bad input ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_input(models):
    x, _ = correctly_classified(models["linear"], 3, seed=8)
    return models["linear"], x, runner_up(models["linear"], x)


@pytest.mark.parametrize("attack_fn", [lbfgs_attack, lbfgs_attack_reference])
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m, x, t: (x * 2, t, {}), r"x must lie in \[0,1\]"),
        (lambda m, x, t: (x - 0.5, t, {}), r"x must lie in \[0,1\]"),
        (lambda m, x, t: (x[0], t, {}), "4-D batch"),
        (lambda m, x, t: (x.flatten(1), t, {}), "4-D batch"),
        (lambda m, x, t: (x, predict(m, x), {}), "target equals the predicted label"),
        (lambda m, x, t: (x, torch.full_like(t, 10), {}), "target out of range"),
        (lambda m, x, t: (x, torch.full_like(t, -1), {}), "target out of range"),
        (lambda m, x, t: (x, t.float(), {}), "integer tensor"),
        (lambda m, x, t: (x, t[:2], {}), "batch sizes differ"),
        (lambda m, x, t: (x, t, {"c_init": 0.0}), "c_init must be a positive"),
        (lambda m, x, t: (x, t, {"c_init": -1.0}), "c_init must be a positive"),
        (lambda m, x, t: (x, t, {"c_steps": 0}), "c_steps must be a positive integer"),
        (lambda m, x, t: (x, t, {"loss": "hinge"}), "loss must be one of"),
    ],
)
def test_bad_input_raises_value_error(valid_input, attack_fn, change, message):
    model, x, target = valid_input
    bad_x, bad_target, options = change(model, x, target)
    with pytest.raises(ValueError, match=message):
        attack_fn(model, bad_x, bad_target, **options)


def test_bad_input_to_min_distortion_and_exact(valid_input):
    model, x, target = valid_input
    y = predict(model, x)
    with pytest.raises(ValueError, match="target must be 'all' or 'runner-up'"):
        min_distortion(model, x, y, target="second")
    with pytest.raises(ValueError, match="batch sizes differ"):
        min_distortion(model, x, y[:1])
    with pytest.raises(ValueError, match=r"x must lie in \[0,1\]"):
        min_distortion(model, x + 1, y)
    with pytest.raises(ValueError, match="c_init must be a positive"):
        min_distortion(model, x, y, c_init=0.0)
    with pytest.raises(ValueError, match="4-D batch"):
        exact_min_distortion_linear(model, x[0], target)
    with pytest.raises(ValueError, match="target out of range"):
        exact_min_distortion_linear(model, x, target + 10)


def test_minimise_penalty_matches_scipy_at_fixed_c():
    """One fixed-c solve of the batched L-BFGS equals scipy's L-BFGS-B on the same objective."""
    import numpy as np
    import scipy.optimize

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    x = torch.rand(2, 1, 28, 28)
    target = (model(x).argmax(1) + 1) % 10
    c = torch.tensor([0.5, 5.0])
    ours = attack.minimise_penalty(model, x, target, c)
    for i in range(2):
        def f(z):
            zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
            w, b = model[1].weight.double(), model[1].bias.double()
            logits = zt @ w.T + b
            val = (zt - x[i].flatten().double()).pow(2).sum() + c[i] * torch.nn.functional.cross_entropy(
                logits[None], target[i : i + 1])
            val.backward()
            return val.item(), zt.grad.numpy()
        ref = scipy.optimize.minimize(f, x[i].flatten().double().numpy(), jac=True, method="L-BFGS-B",
                                      bounds=[(0, 1)] * 784, options={"ftol": 1e-12, "gtol": 1e-8})
        assert np.abs(ours[i].flatten().double().numpy() - ref.x).max() < 2e-3
    with pytest.raises(ValueError, match="c must be positive"):
        attack.minimise_penalty(model, x, target, 0.0)
