import pytest
import torch

from lib import attack, data, models
from lib.adversarial_training import AdversarialPool, hidden_split, pool_loss
from lib.train import classification_loss, fit, predict


@pytest.fixture(scope="module")
def small_data():
    x, y = data.fixed_subset(2000, train=True, seed=1)
    return x, y


def small_net(seed=0):
    torch.manual_seed(seed)
    return models.sigmoid_mlp((32,))


def test_refresh_replaces_the_stated_fraction(small_data):
    x, y = small_data
    model = small_net().eval()
    pool = AdversarialPool(x, y, size=200, fraction=0.25, seed=0)
    assert len(pool.refresh(model)) == 200  # the first call fills the pool
    before_x, before_y = pool.x.clone(), pool.y.clone()
    slots = pool.refresh(model)
    assert len(slots) == 50 and len(set(slots.tolist())) == 50
    unchanged = torch.ones(200, dtype=torch.bool)
    unchanged[slots] = False
    assert torch.equal(pool.x[unchanged], before_x[unchanged]) and torch.equal(pool.y[unchanged], before_y[unchanged])
    changed = (pool.x[slots] != before_x[slots]).flatten(1).any(1)
    assert changed.double().mean() > 0.9  # fresh draws of random images almost never repeat


def test_pool_holds_adversarial_examples_with_true_labels(small_data):
    x, y = small_data
    model = small_net()
    fit(model, x, y, classification_loss(), epochs=2, progress=False)
    pool = AdversarialPool(x, y, size=100, fraction=0.5, seed=0, layers=("input", "hidden"))
    pool.refresh(model)
    assert pool.x.min() >= 0 and pool.x.max() <= 1 and pool.h.shape == (100, 32)
    assert pool.success_rate > 0.9
    fooled = predict(model, pool.x) != pool.y
    assert fooled.double().mean() > 0.8  # the true labels are kept, so the model is wrong on most of them
    _, upper = hidden_split(model)
    assert (upper(pool.h.view(100, 1, 1, 32)).argmax(1) != pool.y).double().mean() > 0.8


def test_bad_pool_arguments(small_data):
    x, y = small_data
    with pytest.raises(ValueError, match="fraction"):
        AdversarialPool(x, y, size=10, fraction=0.0)
    with pytest.raises(ValueError, match="pool size"):
        AdversarialPool(x, y, size=0, fraction=0.5)
    with pytest.raises(ValueError, match="layers"):
        AdversarialPool(x, y, size=10, fraction=0.5, layers=("output",))


def test_pool_training_lowers_adversarial_error(small_data):
    """Same data, seed and epochs: the pool-trained net is fooled less often by a fixed-strength attack."""
    x, y = small_data
    test_x, test_y = data.fixed_subset(300, train=False, seed=2)

    def train(with_pool: bool):
        model = small_net()
        loss, on_epoch = classification_loss(), None
        if with_pool:
            pool = AdversarialPool(x, y, size=1000, fraction=0.5, seed=0)
            loss = pool_loss(pool)
            on_epoch = lambda epoch, m: (pool.refresh(m), {})[1]  # noqa: E731
        fit(model, x, y, loss, epochs=6, batch_size=64, lr=3e-3, progress=False, on_epoch=on_epoch)
        return model.eval()

    def adversarial_error(model, c):
        correct = predict(model, test_x) == test_y
        xs, ys = test_x[correct], test_y[correct]
        logits = model(xs).detach()
        target = logits.scatter(1, ys[:, None], -float("inf")).argmax(1)
        x_adv = attack.minimise_penalty(model, xs, target, c=c, max_iter=50)
        return 100.0 * (predict(model, x_adv) != ys).double().mean().item()

    # c = 4 fools about half of the plain net's correctly classified test images.
    plain, pooled = adversarial_error(train(False), 4.0), adversarial_error(train(True), 4.0)
    assert pooled < 0.8 * plain, (plain, pooled)


def test_findings_follow_the_errors():
    from lib.adversarial_training import findings

    ours = {"weight decay": 2.14, "dropout": 2.22, "adversarial pool": 3.11, "adversarial pool + hidden layer": 3.95}
    assert [f.holds for f in findings(ours)] == [False, False, False]
    better = {"weight decay": 1.6, "dropout": 1.3, "adversarial pool": 1.1, "adversarial pool + hidden layer": 1.0}
    assert [f.holds for f in findings(better)] == [True, True, True]
    with pytest.raises(ValueError, match="dropout"):
        findings({"weight decay": 1.6})
