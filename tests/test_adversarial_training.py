import pytest
import torch
from torch.nn import functional as F

from lib import attack, data, models
from lib.adversarial_training import (LAYERS, AdversarialPool, PoolSettings, fgsm, fgsm_loss, pool_loss, split,
                                      wrong_labels)
from lib.train import classification_loss, fit, predict


@pytest.fixture(scope="module")
def small_data():
    return data.fixed_subset(2000, train=True, seed=1)


def small_net(seed=0, hidden=(32, 24)):
    torch.manual_seed(seed)
    return models.sigmoid_mlp(hidden)


@pytest.fixture(scope="module")
def trained(small_data):
    x, y = small_data
    model = small_net()
    fit(model, x, y, classification_loss(), epochs=3, progress=False)
    return model.eval()


def test_split_composes_to_the_model(small_data, trained):
    x = small_data[0][:50]
    for layer in LAYERS:
        lower, upper = split(trained, layer)
        h = lower(x)
        codes = h if layer == "input" else h.view(len(h), 1, 1, -1)
        assert torch.allclose(upper(codes), trained(x), atol=1e-6), layer
        assert layer == "input" or (h.min() >= 0 and h.max() <= 1)
    assert split(trained, "h2")[0](x).shape == (50, 24)
    with pytest.raises(ValueError, match="unknown layer"):
        split(trained, "h3")
    with pytest.raises(ValueError, match="needs 2 sigmoid"):
        split(small_net(hidden=(16,)), "h2")


def test_bad_pool_settings(small_data):
    for bad, match in [({"layers": ()}, "layers"), ({"layers": ("input", "input")}, "layers"),
                       ({"layers": ("output",)}, "layers"), ({"fraction": 0.0}, "fraction"), ({"size": 0}, "size"),
                       ({"refresh_every": 0}, "refresh_every"), ({"weight": 0.0}, "weight"),
                       ({"magnify": 0.5}, "magnify"), ({"target": "best"}, "target")]:
        with pytest.raises(ValueError, match=match):
            PoolSettings(**bad)
    x, y = small_data
    with pytest.raises(ValueError, match="size"):
        AdversarialPool(x[:10], y[:10], PoolSettings(size=20))


def test_random_targets_are_wrong_and_cover_the_nine(trained, small_data):
    x, y = small_data
    target = wrong_labels(trained, x, y, "random", torch.Generator().manual_seed(0))
    assert (target != y).all() and set(target.tolist()) == set(range(10))
    offsets = ((target - y) % 10).bincount(minlength=10)[1:]
    assert offsets.min() > 150  # ~222 each of the nine offsets
    assert torch.equal(wrong_labels(trained, x, y, "runner-up", None), attack.runner_up(trained, x, y))


def test_pool_fills_then_replaces_the_stated_fraction(small_data, trained):
    x, y = small_data
    pool = AdversarialPool(x, y, PoolSettings(layers=("input", "h2"), size=100, fraction=0.4, refresh_every=3))
    for _ in range(2):
        pool.step(trained)
    assert not pool.targets  # no refresh before the third mini-batch
    pool.step(trained)
    assert {k: len(v) for k, v in pool.targets.items()} == {"input": 40, "h2": 40}
    pool.refresh(trained)
    pool.refresh(trained)  # 40 + 40 + 20 fill it; 20 spill over onto random entries
    assert len(pool.targets["input"]) == 100 and pool.inputs["h2"].shape == (100, 24)
    before = pool.inputs["input"].clone()
    pool.refresh(trained)
    changed = (pool.inputs["input"] != before).flatten(1).any(1)
    assert 30 <= int(changed.sum()) <= 40  # 40 random slots replaced (a few fresh draws may equal the old entry)


def test_pool_holds_adversarial_examples_with_true_labels(small_data, trained):
    x, y = small_data
    pool = AdversarialPool(x, y, PoolSettings(size=120, fraction=1.0))
    pool.refresh(trained)
    assert pool.success_rate > 0.9 and pool.made > 100
    for layer in LAYERS:
        inputs, labels = pool.inputs[layer], pool.targets[layer]
        assert inputs.min() >= 0 and inputs.max() <= 1
        _, upper = split(trained, layer)
        shaped = inputs if layer == "input" else inputs.view(len(inputs), 1, 1, -1)
        fooled = predict(upper, shaped) != labels
        assert fooled.double().mean() > 0.8, layer  # true labels kept: the model is wrong on most of them
    snap = pool.snapshot(trained)
    assert snap["x"].shape == snap["x_adv"].shape == (8, 1, 28, 28) and (snap["predicted"] != snap["y"]).any()


def test_magnify_scales_the_perturbation(small_data, trained):
    x, y = small_data
    ones = AdversarialPool(x, y, PoolSettings(layers=("h1",), size=60, fraction=1.0), seed=3)
    twos = AdversarialPool(x, y, PoolSettings(layers=("h1",), size=60, fraction=1.0, magnify=2.0), seed=3)
    ones.refresh(trained), twos.refresh(trained)
    lower, _ = split(trained, "h1")
    with torch.no_grad():
        clean = lower(x[torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:60]])
    r1, r2 = ones.inputs["h1"] - clean, twos.inputs["h1"] - clean
    inside = ((clean + 2 * r1) >= 0).all(1) & ((clean + 2 * r1) <= 1).all(1)  # nothing clipped
    assert inside.sum() > 10
    assert torch.allclose(r2[inside], 2 * r1[inside], atol=1e-5)


def test_pool_loss_adds_the_pool_term(small_data, trained):
    x, y = small_data
    pool = AdversarialPool(x, y, PoolSettings(layers=("input",), size=50, fraction=1.0, refresh_every=1, weight=2.0))
    loss = pool_loss(pool)
    value = loss(trained, x[:64], y[:64])  # the first batch refreshes (refresh_every=1), then mixes in
    clean = F.cross_entropy(trained(x[:64]), y[:64])
    assert value > clean + 1.0  # the pool's examples fool the model: their cross-entropy is large


def test_pool_training_lowers_adversarial_error(small_data):
    """Same data, seed and epochs: the pool-trained net is fooled less often by a fixed-strength attack."""
    x, y = small_data
    test_x, test_y = data.fixed_subset(300, train=False, seed=2)

    def train(with_pool: bool):
        model = small_net(hidden=(32,))
        loss = classification_loss()
        if with_pool:
            pool = AdversarialPool(x, y, PoolSettings(layers=("input",), size=1000, fraction=0.25,
                                                      refresh_every=8, weight=1.0))
            loss = pool_loss(pool)
        fit(model, x, y, loss, epochs=6, batch_size=64, lr=3e-3, progress=False)
        return model.eval()

    def adversarial_error(model, c):
        correct = predict(model, test_x) == test_y
        xs, ys = test_x[correct], test_y[correct]
        x_adv = attack.minimise_penalty(model, xs, attack.runner_up(model, xs, ys), c=c, max_iter=50)
        return 100.0 * (predict(model, x_adv) != ys).double().mean().item()

    plain, pooled = adversarial_error(train(False), 4.0), adversarial_error(train(True), 4.0)
    assert pooled < 0.8 * plain, (plain, pooled)


def test_fgsm_steps_epsilon_along_the_gradient_sign(small_data, trained):
    x, y = small_data[0][:100], small_data[1][:100]
    trained.zero_grad(set_to_none=True)
    x_adv = fgsm(trained, x, y, 0.1)
    assert all(p.grad is None for p in trained.parameters())  # a gradient for the image only
    step = (x_adv - x).abs()
    assert step.max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    inside = (x > 0.1) & (x < 0.9)
    assert torch.allclose(step[inside], torch.full_like(step[inside], 0.1), atol=1e-6)
    assert F.cross_entropy(trained(x_adv), y) > F.cross_entropy(trained(x), y)
    value = fgsm_loss(0.1, alpha=0.5)(trained, x, y)
    expected = 0.5 * F.cross_entropy(trained(x), y) + 0.5 * F.cross_entropy(trained(x_adv), y)
    assert torch.allclose(value, expected)
    with pytest.raises(ValueError, match="epsilon"):
        fgsm_loss(0.0)
