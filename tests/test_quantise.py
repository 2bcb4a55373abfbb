"""lib.quantise: adversarial examples on the 8-bit grid, checked by forward passes and a PNG round trip."""
import pytest
import torch

from lib import attack, natural_images, quantise
from tests.stand_ins import correctly_classified, models, one_cpu_thread, runner_up  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def float_examples(models):  # noqa: F811
    model = models["conv"]
    x, _ = correctly_classified(model, 8)
    target = runner_up(model, x)
    result = attack.lbfgs_attack(model, x, target, c_steps=6, max_iter=50)
    assert result.success.all()
    return model, x, target, result


def test_mnist_images_lie_on_the_grid_and_float_examples_do_not(float_examples):
    _, x, _, result = float_examples
    assert quantise.is_on_grid(x)
    assert not quantise.is_on_grid(result.x_adv)
    assert quantise.is_on_grid(quantise.on_grid(result.x_adv))


def test_to_grid_gives_8_bit_examples_that_are_still_the_target(float_examples):
    model, x, target, result = float_examples
    x_grid, t = quantise.to_grid(model, x, result.x_adv, target)
    assert quantise.is_on_grid(x_grid) and 0 <= x_grid.min() and x_grid.max() <= 1
    assert (attack.predict(model, x_grid) == target).all()
    assert not t.isnan().any() and (t >= 1).all()
    # not free: the grid point is no closer than the float one on average, and not much farther
    ratio = attack.distortion(x, x_grid).mean() / result.distortion.mean()
    assert 0.9 <= ratio <= 2.0


def test_to_grid_refuses_an_original_off_the_grid(float_examples):
    model, x, target, result = float_examples
    with pytest.raises(ValueError, match="grid"):
        quantise.to_grid(model, x + 0.3 / 255, result.x_adv, target)


def test_to_grid_reports_failure_as_nan_where_nothing_reaches_the_target(float_examples):
    model, x, target, _ = float_examples
    x_grid, t = quantise.to_grid(model, x, x.clone(), target)  # no perturbation to scale; steps start at x
    failed = attack.predict(model, x_grid) != target
    assert torch.equal(t.isnan(), failed)


def test_the_8bit_attack_survives_a_png_round_trip(float_examples):
    model, x, target, _ = float_examples
    result = quantise.lbfgs_attack_8bit(model, x, target, c_steps=6, max_iter=50)
    assert result.success.all()
    saved = natural_images.png_round_trip(result.x_adv.expand(-1, 3, -1, -1))[:, :1]  # PNG wants RGB
    assert torch.equal(saved, result.x_adv)  # lossless: the 8-bit example is what the file holds
    assert (attack.predict(model, saved) == target).all()
    float_saved = natural_images.png_round_trip(quantise.on_grid(result.x_adv).expand(-1, 3, -1, -1))[:, :1]
    assert torch.equal(float_saved, quantise.on_grid(result.x_adv))


def test_jpeg_changes_the_image_and_checks_its_quality():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(natural_images.jpeg_round_trip(quantise.on_grid(x), 75), quantise.on_grid(x))
    with pytest.raises(ValueError, match="quality"):
        natural_images.jpeg_round_trip(x, 100)
