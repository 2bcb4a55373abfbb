"""lib.fast_attack: the linearised start, the exact box projection, the boundary search, and the attack itself
against the exact minimum of linear models and the paper's attack on the stand-ins."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from lib import fast_attack as fa, peers, zoo
from lib.attack import BOUNDARY_MARGIN, distortion, lbfgs_attack, logit_margin, min_distortion, predict
from lib.attack_reference import exact_min_distortion_linear
from stand_ins import correctly_classified, models, one_cpu_thread, random_linear, runner_up  # noqa: F401 (fixtures)


def test_projection_onto_halfspace_matches_a_qp_solver():
    gen = torch.Generator().manual_seed(0)
    centre = torch.rand(12, 9, generator=gen, dtype=torch.float64)
    centre[centre < 0.2], centre[centre > 0.85] = 0.0, 1.0  # some pixels start on a bound
    g = torch.randn(12, 9, generator=gen, dtype=torch.float64)
    g[:, 0] = 0  # a pixel the constraint ignores
    corner = torch.where(g > 0, 1.0, torch.where(g < 0, 0.0, centre))  # where g.w is largest in the box
    reach = torch.linalg.vecdot(g, corner - centre)
    b = torch.linalg.vecdot(g, centre) + reach * torch.rand(12, generator=gen, dtype=torch.float64)  # reachable
    b[0] = torch.dot(g[0], centre[0]) - 1  # already inside: stays put
    w = fa.project_onto_halfspace(centre, g, b)
    for i in range(12):
        c, gi, bi = centre[i].numpy(), g[i].numpy(), b[i].item()
        solved = scipy.optimize.minimize(
            lambda v: ((v - c) ** 2).sum(), c, jac=lambda v: 2 * (v - c), bounds=[(0, 1)] * 9, method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
            constraints=[{"type": "ineq", "fun": lambda v: gi @ v - bi, "jac": lambda v: gi}])
        assert solved.success, solved.message
        np.testing.assert_allclose(w[i].numpy(), solved.x, atol=1e-6)
    assert torch.equal(w[0], centre[0])


def test_projection_gives_the_best_corner_when_the_halfspace_misses_the_box():
    centre = torch.full((1, 4), 0.5)
    g = torch.tensor([[1.0, -2.0, 0.0, 0.5]])
    w = fa.project_onto_halfspace(centre, g, torch.tensor([100.0]))
    assert w.tolist() == [[1.0, 0.0, 0.5, 1.0]]  # g.w is as large as the box allows


def test_boundary_on_ray_is_the_crossing_of_a_linear_model():
    model = random_linear(100, 2, torch.Generator().manual_seed(2))  # two classes: the margin is linear
    x = 0.45 + 0.1 * torch.rand(5, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    target = 1 - predict(model, x)
    with torch.no_grad():
        a = (model[1].weight[target] - model[1].weight[1 - target]).view(5, 1, 10, 10)  # the margin's gradient
        m0 = logit_margin(model(x), target)
        scale = torch.tensor([1.0, 1.0, 1.0, 1.0, -0.5])  # the last ray stops short of the boundary
        far = x + ((scale - m0) / a.flatten(1).pow(2).sum(1))[:, None, None, None] * a
        assert far.min() >= 0 and far.max() <= 1  # no clipping: the margin is linear all along the ray
        m1 = logit_margin(model(far), target)
    reached = predict(model, far) == target
    assert reached.tolist() == [True, True, True, True, False]
    point = fa.boundary_on_ray(model, x, far, target, reached)
    t = (point - x).flatten(1).norm(dim=1) / (far - x).flatten(1).norm(dim=1)
    t_exact = (BOUNDARY_MARGIN - m0) / (m1 - m0)
    torch.testing.assert_close(t[:4], t_exact[:4], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert (logit_margin(model(point[:4]), target[:4]) > 0).all()
    assert torch.equal(point[4], far[4])  # a row without success keeps its point


def test_fast_attack_reaches_the_exact_minimum_of_linear_models():
    for seed in range(3):
        model = random_linear(784, 10, torch.Generator().manual_seed(seed))
        x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(10 + seed))
        target = runner_up(model, x)
        result = fa.fast_attack(model, x, target)
        exact = exact_min_distortion_linear(model, x, target).distortion
        assert result.success.all() and torch.equal(predict(model, result.x_adv), target)
        ratio = result.distortion / exact
        assert ratio.min() > 1 - 1e-4, ratio.min()  # nothing beats the exact minimum
        assert ratio.mean() <= 1.01, ratio.mean()  # issue #16's target for the exact QP


@pytest.mark.parametrize("kind", ["linear", "mlp", "conv"])
def test_fast_attack_is_as_close_as_the_papers(models, kind):
    model = models[kind]
    x, y = correctly_classified(model, 16, seed=4)
    target = runner_up(model, x)
    fast = fa.fast_attack(model, x, target, polish_steps=40)
    paper = lbfgs_attack(model, x, target)
    assert fast.success.all() and torch.equal(predict(model, fast.x_adv), target)
    assert fast.x_adv.min() >= 0 and fast.x_adv.max() <= 1
    torch.testing.assert_close(fast.distortion, distortion(x, fast.x_adv))
    assert (fast.c > 0).all() and not fast.misclassified.any() and not model.training
    ratio = fast.distortion / paper.distortion
    assert ratio.median() <= 1.01, ratio  # the same minimum, up to the polish's budget
    again = fa.fast_attack(model, x, target, polish_steps=40)
    assert torch.equal(again.x_adv, fast.x_adv)  # deterministic


def test_images_the_fast_path_misses_fall_back_to_the_papers_attack(models):
    model = models["mlp"]
    x, y = correctly_classified(model, 16, seed=5)
    target = (y + 3) % 10  # arbitrary labels: some need more than one linearised step
    quick = dict(polish_steps=1, linear_steps=1)
    without = fa.fast_attack(model, x, target, fallback=False, **quick)
    assert not without.success.all()
    assert without.c[~without.success].isnan().all()
    with_fallback = fa.fast_attack(model, x, target, **quick)
    assert with_fallback.success.all() and torch.equal(predict(model, with_fallback.x_adv), target)
    assert torch.equal(with_fallback.x_adv[without.success], without.x_adv[without.success])


def test_min_distortion_runs_the_fast_attack(models):
    model = models["mlp"]
    x, y = correctly_classified(model, 8, seed=6)
    result = min_distortion(model, x, y, "closest", method=fa.fast_attack, polish_steps=10)
    assert result.success.all() and (result.target != y).all()
    assert torch.equal(predict(model, result.x_adv), result.target)
    with pytest.raises(ValueError, match="method must be an attack function"):
        min_distortion(model, x, y, "runner-up", method="fast")


@pytest.mark.parametrize("change, message", [
    (dict(temperature=0.0), "temperature must be a positive"),
    (dict(temperature=float("nan")), "temperature must be a positive"),
    (dict(c_factor=0.0), "c_factor must be a positive"),
    (dict(c_factor=True), "c_factor must be a positive"),
    (dict(linear_steps=0), "linear_steps must be a positive integer"),
    (dict(polish_steps=0), "polish_steps must be a positive integer"),
    (dict(history=0), "history must be a positive integer"),
])
def test_bad_options_raise_value_error(models, change, message):
    model = models["linear"]
    x, y = correctly_classified(model, 2)
    with pytest.raises(ValueError, match=message):
        fa.fast_attack(model, x, runner_up(model, x), **change)
    with pytest.raises(ValueError, match="target equals the predicted label"):
        fa.fast_attack(model, x, predict(model, x))
    with pytest.raises(ValueError, match="x must lie in"):
        fa.fast_attack(model, x * 2, runner_up(model, x))


def test_gradient_change_is_zero_for_a_linear_model_and_not_for_relus(models):
    linear = random_linear(784, 10, torch.Generator().manual_seed(7))
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(8))
    target = runner_up(linear, x)
    result = fa.fast_attack(linear, x, target)
    assert fa.gradient_change(linear, x, result.x_adv, target).max() < 1e-4  # the margin's pieces are planes
    conv = models["conv"]
    x, y = correctly_classified(conv, 8, seed=9)
    target = runner_up(conv, x)
    result = fa.fast_attack(conv, x, target)
    change = fa.gradient_change(conv, x, result.x_adv, target, scale=0.1)
    assert change.median() > 1e-3  # ReLU kinks within a tenth of r
    with pytest.raises(ValueError, match="scale must be"):
        fa.gradient_change(conv, x, result.x_adv, target, scale=1.5)


def test_the_temperature_is_the_one_chosen_on_training_images():
    record = json.loads((peers.RESULTS_DIR / "fast_temperature.json").read_text())
    assert record["provenance"]["split"] == "train"
    assert record["chosen"] == fa.TEMPERATURE, "rerun benchmarks/bench_fast_attack.py or set fast_attack.TEMPERATURE"
    worst = {float(tau): value for tau, value in record["worst"].items()}
    assert min(worst, key=worst.get) == record["chosen"]  # the rule it states: smallest worst-model ratio
    assert set(record["ratios"]) == set(peers.MODELS)
    for name, fingerprint in record["provenance"]["weights"].items():
        assert fingerprint == zoo.fingerprint(name), f"{name} retrained: rerun benchmarks/bench_fast_attack.py"
