"""lib.polish_walk: the walk of restarted polishes against the exact minimum of linear models, and its bad input."""
import math

import pytest
import torch

from lib import polish_walk as pw
from lib.attack import distortion, predict
from lib.attack_reference import exact_min_distortion_linear
from stand_ins import correctly_classified, models, one_cpu_thread, random_linear, runner_up  # noqa: F401 (fixtures)


def far_start(model, x, target):
    """An adversarial but far start: x pushed hard along the target's weight row minus its label's (linear model)."""
    weight = model[-1].weight
    direction = (weight[target] - weight[predict(model, x)]).view_as(x).sign()
    for scale in (0.1, 0.2, 0.4, 0.8, 1.0):
        start = (x + scale * direction).clamp(0, 1)
        if (predict(model, start) == target).all():
            return start
    raise AssertionError("no adversarial start along the sign direction")


def test_walk_reaches_the_exact_minimum_of_linear_models():
    for seed in range(3):
        model = random_linear(784, 10, torch.Generator().manual_seed(seed))
        x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(20 + seed))
        target = runner_up(model, x)
        start = far_start(model, x, target)
        walked = pw.polish_walk(model, x, start, target, rounds=4)
        exact = exact_min_distortion_linear(model, x, target).distortion
        result = walked.result
        assert result.success.all() and torch.equal(predict(model, result.x_adv), target)
        assert (result.distortion <= distortion(x, start) + 1e-7).all()  # never farther than the start
        ratio = result.distortion / exact
        assert ratio.min() > 1 - 1e-4 and ratio.mean() <= 1.01, (ratio.min(), ratio.mean())
        assert len(walked.trace) == 5 and all((a >= b).all() for a, b in zip(walked.trace, walked.trace[1:]))


def test_walk_keeps_failed_starts_and_reports_each_run(models):
    model = models["mlp"]
    x, _ = correctly_classified(model, 6, seed=3)
    target = runner_up(model, x)
    seen = []
    walked = pw.from_linearised(model, x, target, rounds=2, iterations=10, on_run=seen.append)
    assert len(seen) == 3 and walked.result.success.all()
    start = x.clone()  # x itself is not adversarial: nothing to walk from
    kept = pw.polish_walk(model, x, start, target, rounds=1, iterations=5).result
    assert not kept.success.any() and torch.equal(kept.x_adv, start)
    assert math.isinf(pw.polish_walk(model, x, start, target, rounds=0, iterations=5).trace[0][0])


@pytest.mark.parametrize("options, match", [({"step": -1.0}, "step"), ({"step": math.nan}, "step"),
                                            ({"rounds": -1}, "rounds"), ({"rounds": 1.5}, "rounds"),
                                            ({"iterations": 0}, "max_iter|iterations")])
def test_walk_refuses_bad_options(models, options, match):
    model = models["linear"]
    x, _ = correctly_classified(model, 2, seed=1)
    with pytest.raises(ValueError, match=match):
        pw.polish_walk(model, x, x, runner_up(model, x), **options)


def test_walk_refuses_a_start_of_another_shape(models):
    model = models["linear"]
    x, _ = correctly_classified(model, 2, seed=1)
    with pytest.raises(ValueError, match="x_start"):
        pw.polish_walk(model, x, x[:1], runner_up(model, x))
    with pytest.raises(ValueError, match="linear_steps"):
        pw.from_linearised(model, x, runner_up(model, x), linear_steps=0)


def test_both_starts_keep_the_closer_walk_per_image(models):
    model = models["mlp"]
    x, _ = correctly_classified(model, 6, seed=4)
    target = runner_up(model, x)
    options = dict(rounds=2, iterations=10)
    seen = []
    both = pw.from_both_starts(model, x, target, on_run=seen.append, **options)
    alone = [pw.from_linearised(model, x, target, on=on, **options).result for on in ("margin", "probability")]
    assert both.result.success.all() and torch.equal(predict(model, both.result.x_adv), target)
    closer = torch.minimum(alone[0].distortion, alone[1].distortion)  # the batch of 2N walks each row on its own
    assert torch.allclose(both.result.distortion, closer, rtol=1e-4)
    assert torch.allclose(distortion(x, both.result.x_adv), both.result.distortion)
    assert len(seen) == 3 and torch.allclose(seen[-1], both.result.distortion, rtol=1e-6)
    assert torch.equal(both.result.target, target)
    with pytest.raises(ValueError, match="linear_steps"):
        pw.from_both_starts(model, x, target, linear_steps=0)


def test_probability_start_reaches_the_target_along_the_cross_entropy(models):
    from lib.fast_attack import linearised_start

    model = models["mlp"]
    x, _ = correctly_classified(model, 6, seed=5)
    target = runner_up(model, x)
    start, reached = linearised_start(model, x, target, 30, on="probability")
    assert reached.all() and torch.equal(predict(model, start), target)
    assert start.min() >= 0 and start.max() <= 1
    with pytest.raises(ValueError, match="on must be"):
        linearised_start(model, x, target, 3, on="logits")


def test_gradient_start_steps_of_fixed_length_until_the_target(models):
    from lib.fast_attack import gradient_start

    model = models["mlp"]
    x, _ = correctly_classified(model, 6, seed=6)
    target = runner_up(model, x)
    start, reached = gradient_start(model, x, target, length=0.2)
    assert reached.all() and torch.equal(predict(model, start), target)
    assert start.min() >= 0 and start.max() <= 1
    # each step moves at most its length (the box only clips), so k steps stay within k * length of x
    short, short_reached = gradient_start(model, x, target, length=0.2, steps=2)
    assert ((short - x).flatten(1).norm(dim=1) <= 2 * 0.2 + 1e-5).all()
    assert (short_reached <= reached).all()
    for bad in (0, -0.1, math.inf, True):
        with pytest.raises(ValueError, match="length"):
            gradient_start(model, x, target, length=bad)
    with pytest.raises(ValueError, match="steps"):
        gradient_start(model, x, target, steps=0)


def test_walk_from_the_gradient_start_never_ends_farther_than_the_start(models):
    from lib.fast_attack import boundary_on_ray, gradient_start

    model = models["mlp"]
    x, _ = correctly_classified(model, 5, seed=7)
    target = runner_up(model, x)
    walked = pw.from_gradient_start(model, x, target, length=0.2, rounds=2)
    start, reached = gradient_start(model, x, target, length=0.2)
    on_boundary = boundary_on_ray(model, x, start, target, reached)
    result = walked.result
    assert result.success.all() and torch.equal(predict(model, result.x_adv), target)
    assert (result.distortion <= distortion(x, on_boundary) + 1e-6).all()
    with pytest.raises(ValueError, match="from_gradient_start"):
        pw.from_linearised(model, x, target, on="gradient")


def test_photo_by_photo_is_each_image_walked_alone_and_counts_its_gradients(models):
    from lib.peers import CountingModel

    model = models["mlp"]
    x, _ = correctly_classified(model, 3, seed=5)
    target = runner_up(model, x)
    counted = CountingModel(model)

    def walk(x, target, start, on_run):
        return pw.from_gradient_start(counted, x, target, length=0.5, rounds=2, iterations=5, on_run=on_run)

    seen = []
    joined, spent = pw.photo_by_photo(walk, x, target, spent=lambda: counted.gradient_evaluations,
                                      on_image=lambda i, walked, counts: seen.append((i, walked, list(counts))))
    alone = [walk(x[i:i + 1], target[i:i + 1], None, None) for i in range(len(x))]
    assert [i for i, _, _ in seen] == [0, 1, 2]  # each image handed over as it ends, with its own counts
    assert all(torch.equal(w.result.x_adv, a.result.x_adv) for (_, w, _), a in zip(seen, alone))
    assert [sum(c[r] for _, _, c in seen) / len(x) for r in range(3)] == spent
    assert torch.equal(joined.result.x_adv, torch.cat([a.result.x_adv for a in alone]))
    assert torch.equal(joined.result.success, torch.cat([a.result.success for a in alone]))
    assert len(joined.trace) == 3 and all(torch.equal(t, torch.cat([a.trace[r] for a in alone]))
                                          for r, t in enumerate(joined.trace))
    assert len(spent) == 3 and spent[0] > 0 and spent == sorted(spent)  # gradients per image, growing run by run
    assert spent[-1] * len(x) == counted.gradient_evaluations / 2  # the walks alone made as many again
    start = joined.result.x_adv  # a start per image is cut to its row
    again, none = pw.photo_by_photo(lambda x, t, s, r: pw.polish_walk(model, x, s, t, rounds=0, iterations=3,
                                                                      on_run=r), x, target, start)
    assert none == [] and (again.result.distortion <= joined.result.distortion + 1e-7).all()
