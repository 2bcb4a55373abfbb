"""The Section 4.1 attack (lib/attack.py) on small stand-in models trained here in a few seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lib import attack
from lib.attack import (
    TARGET_RULES,
    distortion,
    every_target,
    lbfgs_attack,
    min_distortion,
    predict,
)
from lib.attack_reference import exact_min_distortion_linear, lbfgs_attack_reference
from lib.data import fixed_subset
from stand_ins import correctly_classified, models, one_cpu_thread, random_linear, runner_up  # noqa: F401 (fixtures)


def test_stand_ins_are_trained(models):
    x, y = fixed_subset(1000, train=False, seed=0)
    for kind, model in models.items():
        assert (predict(model, x) == y).float().mean() > 0.85, kind


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
    assert not result.misclassified.any()  # lbfgs_attack attacks every image it is given
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


# --- minimum distortion over targets --------------------------------------------------------------


@pytest.fixture(scope="module")
def rules_case(models):
    """Linear model, 1 misclassified + 3 correct test images, attacked under every target rule (c_steps=8)."""
    model = models["linear"]
    x, y = fixed_subset(40, train=False, seed=7)
    wrong = (predict(model, x) != y).nonzero().squeeze(1)[:1]
    right = (predict(model, x) == y).nonzero().squeeze(1)[:3]
    x, y = x[torch.cat([wrong, right])], y[torch.cat([wrong, right])]
    results = {rule: min_distortion(model, x, y, target=rule, c_steps=8) for rule in TARGET_RULES}
    return model, x, y, len(wrong), results, every_target(model, x, y, c_steps=8)


def test_min_distortion_over_all_targets(rules_case):
    model, x, y, n_wrong, results, _ = rules_case
    best = results["best"]
    cheap = results["runner-up"]
    assert torch.equal(min_distortion(model, x, y, c_steps=8).distortion, best.distortion)  # "best" is the default
    assert best.success.all() and cheap.success.all()
    assert best.x_adv.min() >= 0 and best.x_adv.max() <= 1
    assert torch.equal(predict(model, best.x_adv), best.target)
    assert (best.target[n_wrong:] != y[n_wrong:]).all()
    if n_wrong:  # already misclassified: nothing to do
        assert best.distortion[0] == 0 and torch.equal(best.x_adv[0], x[0])
        assert best.target[0] == predict(model, x[:1])[0]
    assert (best.distortion <= cheap.distortion * (1 + 1e-3)).all()
    exact = torch.stack([exact_min_distortion_linear(model, x, torch.full_like(y, j)).distortion
                         for j in range(10)], 1)
    exact[torch.arange(len(y)), y] = torch.inf
    exact[:n_wrong] = 0
    torch.testing.assert_close(best.distortion, exact.min(1).values, rtol=0.05, atol=1e-6)


def test_each_rule_attacks_the_label_it_names(rules_case):
    model, x, y, n_wrong, results, every = rules_case
    assert n_wrong == 1
    correct = slice(n_wrong, None)
    with torch.no_grad():
        logits = model(x)
    others = logits.scatter(1, y[:, None], -torch.inf)
    assert torch.equal(results["runner-up"].target[correct], others.argmax(1)[correct])
    assert (results["random"].target[correct] != y[correct]).all()
    for rule, result in results.items():
        assert result.success.all(), rule
        assert torch.equal(predict(model, result.x_adv), result.target), rule
    # best is the closest of every_target's nine rows, and no other rule does better
    nine = torch.where(every.success, every.distortion, torch.inf).view(len(x), 9)
    assert torch.equal(results["best"].distortion, nine.min(1).values)
    assert torch.equal(results["best"].target, every.target.view(len(x), 9)[torch.arange(len(x)), nine.argmin(1)])
    for rule in ("runner-up", "random"):
        assert (results["best"].distortion <= results[rule].distortion * (1 + 1e-3)).all(), rule


def test_every_target_rows_are_image_major_with_targets_ascending(rules_case):
    model, x, y, n_wrong, _, every = rules_case
    assert len(every.target) == 9 * len(x) and every.x_adv.shape == (9 * len(x), *x.shape[1:])
    for i in range(len(x)):
        assert every.target[9 * i : 9 * i + 9].tolist() == [j for j in range(10) if j != y[i]]
    rows = slice(9 * n_wrong, None)
    assert every.success[rows].all() and not every.misclassified[rows].any()
    assert torch.equal(predict(model, every.x_adv[rows]), every.target[rows])
    torch.testing.assert_close(every.distortion[rows], distortion(x.repeat_interleave(9, 0)[rows], every.x_adv[rows]))


def test_misclassified_images_are_flagged_and_untouched(rules_case):
    model, x, y, n_wrong, results, every = rules_case
    predicted = predict(model, x)
    flagged = torch.arange(len(x)) < n_wrong
    for rule, result in results.items():
        assert torch.equal(result.misclassified, flagged), rule
        assert torch.equal(result.x_adv[:n_wrong], x[:n_wrong]), rule
        assert (result.distortion[:n_wrong] == 0).all() and (result.c[:n_wrong] == 0).all(), rule
        assert torch.equal(result.target[:n_wrong], predicted[:n_wrong]) and result.success[:n_wrong].all(), rule
        assert (result.distortion[n_wrong:] > 0).all(), rule
    rows = slice(0, 9 * n_wrong)  # the nine rows of each misclassified image
    assert every.misclassified[rows].all() and not every.misclassified[9 * n_wrong :].any()
    assert torch.equal(every.x_adv[rows], x[:n_wrong].repeat_interleave(9, 0))
    assert (every.distortion[rows] == 0).all()
    hit = every.target[rows] == predicted[:n_wrong].repeat_interleave(9)
    assert torch.equal(every.success[rows], hit) and hit.sum() == n_wrong  # succeeds only on its prediction
    assert (every.c[rows][hit] == 0).all() and every.c[rows][~hit].isnan().all()


def test_random_rule_is_uniform_over_wrong_labels_and_seeded():
    """Thousands of 4-pixel images, cheap to attack: the drawn labels, not the attack, are under test."""
    gen = torch.Generator().manual_seed(12)
    model = random_linear(4, 10, gen)
    x = torch.rand(4500, 1, 2, 2, generator=gen)
    y = predict(model, x)  # every image correctly classified, so every one gets the drawn label
    cheap = {"c_steps": 1, "max_iter": 1, "refine": False}
    drawn = min_distortion(model, x, y, target="random", seed=3, **cheap).target
    assert (drawn != y).all()
    offset = drawn - (drawn > y).long()  # 0..8: the position among the nine labels != y
    counts = torch.bincount(offset, minlength=9).double()
    assert len(counts) == 9
    chi_square = ((counts - 500) ** 2 / 500).sum().item()
    assert chi_square < 26.12  # 8 degrees of freedom, p = 0.001
    assert torch.equal(min_distortion(model, x, y, target="random", seed=3, **cheap).target, drawn)
    assert (min_distortion(model, x, y, target="random", seed=4, **cheap).target != drawn).double().mean() > 0.8
    with torch.no_grad():
        model[1].weight.mul_(2), model[1].bias.mul_(2)  # another model, same predictions: the draw ignores the model
    assert torch.equal(min_distortion(model, x, y, target="random", seed=3, **cheap).target, drawn)


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


def test_bad_input_to_min_distortion(valid_input):
    model, x, target = valid_input
    y = predict(model, x)
    with pytest.raises(ValueError, match=r"target must be one of \('runner-up', 'random', 'best', 'closest'\), got 'all'"):
        min_distortion(model, x, y, target="all")
    with pytest.raises(ValueError, match="target must be one of"):
        min_distortion(model, x, y, target="second")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        min_distortion(model, x, y, target="random", seed=-1)
    with pytest.raises(ValueError, match="batch sizes differ"):
        min_distortion(model, x, y[:1])
    with pytest.raises(ValueError, match="batch sizes differ"):
        every_target(model, x, y[:1])
    with pytest.raises(ValueError, match=r"x must lie in \[0,1\]"):
        min_distortion(model, x + 1, y)
    with pytest.raises(ValueError, match="c_init must be a positive"):
        min_distortion(model, x, y, c_init=0.0)


def test_closest_matches_the_best_of_nine_attacking_two_labels(rules_case):
    model, x, y, n_wrong, results, _ = rules_case
    closest, best = results["closest"], results["best"]
    assert closest.success.all() and torch.equal(predict(model, closest.x_adv), closest.target)
    assert closest.distortion[0] == 0 and closest.misclassified[0]  # the misclassified image is left alone
    torch.testing.assert_close(closest.distortion, best.distortion, rtol=0.01, atol=1e-6)
    with pytest.raises(ValueError, match="candidates must be an integer in 1..9"):
        min_distortion(model, x, y, target="closest", candidates=10)


def test_closest_skips_only_labels_that_cannot_be_closer_on_a_linear_model():
    model = random_linear(784, 10, torch.Generator().manual_seed(12))
    x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(13))
    y = predict(model, x)
    exact = torch.stack([exact_min_distortion_linear(model, x, torch.full_like(y, label)).distortion
                         for label in range(10)], 1)
    exact[torch.arange(12), y] = torch.inf
    estimate = attack.linearised_distance(model, x, y) / 28  # never above the true distance: the box lengthens r
    assert (estimate <= exact * (1 + 1e-4)).all()
    attacked = []

    def counting(model, x, target, **options):
        attacked.append(len(x))
        return lbfgs_attack(model, x, target, **options)

    closest = min_distortion(model, x, y, target="closest", candidates=9, method=counting)
    torch.testing.assert_close(closest.distortion, exact.min(1).values, rtol=2e-3, atol=0)  # no closer label skipped
    assert attacked[0] == 12 and sum(attacked) < 12 * 9  # every image once, few of the further labels


def test_linearised_order_is_the_boundary_distance_of_a_linear_model():
    generator = torch.Generator().manual_seed(3)
    model = random_linear(20, 6, generator)
    x = torch.rand(5, 1, 4, 5, generator=generator)
    y = torch.randint(6, (5,), generator=generator)
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    z = x.flatten(1).double() @ w.T + b
    expected = []
    for i in range(5):  # by hand: the distance from x to the hyperplane z_y = z_j, for each j != y
        distance = {j: ((z[i, y[i]] - z[i, j]) / (w[y[i]] - w[j]).norm()).item() for j in range(6) if j != y[i]}
        expected.append(sorted(distance, key=distance.get))
    assert attack.linearised_order(model, x, y).tolist() == expected


def test_sharp_loss_and_warm_start_reach_the_exact_minimum_of_a_linear_model_and_trace_the_search():
    model = random_linear(784, 10, torch.Generator().manual_seed(7))
    x, _ = fixed_subset(8, train=False, seed=4)
    target = runner_up(model, x)
    exact = exact_min_distortion_linear(model, x, target).distortion
    for options in ({"loss": "sharp"}, {"loss": "sharp", "warm_start": True}, {"warm_start": True}):
        seen = []
        result = lbfgs_attack(model, x, target, c_steps=6, on_step=lambda best: seen.append(
            torch.where(best.success, best.distortion, float("inf")).clone()), **options)
        assert result.success.all(), options
        ratio = result.distortion / exact
        assert ratio.min() > 1 - 1e-4 and ratio.max() < 1.01, (options, ratio)
        assert len(seen) == 7  # after each of the 6 runs and after the refinement
        steps = torch.stack(seen[:-1])
        assert (steps[1:] <= steps[:-1]).all()  # the best success so far never gets worse
        assert torch.allclose(seen[-1], result.distortion)


def test_only_the_search_takes_the_sharp_loss():
    model = random_linear(784, 10, torch.Generator().manual_seed(8))
    x, _ = fixed_subset(2, train=False, seed=4)
    with pytest.raises(ValueError, match="lbfgs_attack also takes 'sharp'"):
        attack.minimise_penalty(model, x, runner_up(model, x), 1.0, loss="sharp")  # no silent cross-entropy


def test_polish_brings_another_attacks_overshoot_to_the_exact_minimum_of_a_linear_model():
    from lib.attack import polish

    model = random_linear(784, 10, torch.Generator().manual_seed(7))
    x, _ = fixed_subset(8, train=False, seed=4)
    target = runner_up(model, x)
    exact = exact_min_distortion_linear(model, x, target)
    start = (x + 3 * (exact.x_min - x)).clamp(0, 1)  # far beyond the boundary, along the exact r
    start[0] = x[0]  # one row that is not adversarial at all
    result = polish(model, x, start, target)
    assert not result.success[0] and torch.equal(result.x_adv[0], x[0])
    assert result.success[1:].all() and result.c.isnan().all()
    ratio = result.distortion[1:] / exact.distortion[1:]
    assert ratio.min() > 1 - 1e-4 and ratio.max() < 1.01, ratio
    assert (result.distortion[1:] < attack.distortion(x, start)[1:]).all()
    with pytest.raises(ValueError, match="shape of x"):
        polish(model, x, start[:4], target)
    untolerant = polish(model, x, start, target, pgtol=0.0, ftol=0.0)  # only the step cap and the line search stop it
    assert untolerant.success[1:].all()
    assert (untolerant.distortion[1:] / exact.distortion[1:]).max() < 1.01
    with pytest.raises(ValueError, match="pgtol"):
        polish(model, x, start, target, pgtol=-1.0)
