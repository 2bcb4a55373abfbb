"""Section 4.2's adversarial training: a pool of adversarial examples, refreshed and mixed into training.

The paper keeps "a pool of adversarial examples, a random subset of which is continuously replaced by
newly generated adversarial examples and which is mixed into the original training set all the time".
Here the pool is refreshed after every epoch (a `fraction` of it replaced by examples freshly made against
the current model with a cheap version of the L-BFGS attack) and every training mini-batch is joined by
half as many examples drawn from the pool. With `layers` including "hidden", the pool also holds
adversarial perturbations of the first hidden layer's output, used to train the layers above it (the
paper's "subtle but essential detail").
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import attack, paper
from .attack import runner_up
from .findings import Finding

CHEAP_ATTACK = {"c_steps": 4, "max_iter": 30, "refine": False}  # a few c values, short L-BFGS runs


def hidden_split(model: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """(first hidden layer's map x -> h in [0,1], the layers above it taking h as [N,1,1,H]): shared modules."""
    sigmoids = [i for i, m in enumerate(model) if isinstance(m, nn.Sigmoid)]
    if not sigmoids:
        raise ValueError("hidden-layer adversarial examples need a sigmoid hidden layer (values in [0,1])")
    cut = sigmoids[0] + 1
    return model[:cut], nn.Sequential(nn.Flatten(), *model[cut:])


class AdversarialPool:
    """A fixed-size pool of adversarial examples (with their true labels), partly replaced after each epoch."""

    def __init__(self, images: Tensor, labels: Tensor, size: int, fraction: float, seed: int = 0,
                 layers: tuple[str, ...] = ("input",), attack_options: dict | None = None):
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if not 0 < size <= len(images):
            raise ValueError(f"pool size must be in 1..{len(images)}, got {size}")
        if not set(layers) <= {"input", "hidden"} or not layers:
            raise ValueError(f"layers must be a non-empty subset of ('input', 'hidden'), got {layers}")
        self.images, self.labels, self.size, self.fraction, self.layers = images, labels, size, fraction, layers
        self.options = {**CHEAP_ATTACK, **(attack_options or {})}
        self.generator = torch.Generator().manual_seed(seed)
        self.x: Tensor | None = None  # [size,1,28,28] adversarial inputs
        self.h: Tensor | None = None  # [size,H] adversarial hidden codes ("hidden" in layers)
        self.y: Tensor | None = None  # [size] true labels
        self.success_rate = float("nan")
        self.last_originals: Tensor | None = None  # the clean images behind the latest fresh examples

    def _make(self, model: nn.Sequential, count: int) -> tuple[Tensor, Tensor | None, Tensor]:
        """Fresh adversarial examples for `count` random training images against the current model."""
        idx = torch.randperm(len(self.images), generator=self.generator)[:count]
        x, y = self.images[idx], self.labels[idx]
        ok = torch.ones(count, dtype=torch.bool)
        x_adv, h_adv = x.clone(), None
        with torch.no_grad():
            attackable = model(x).argmax(1) == y  # misclassified images are adversarial already
        if "input" in self.layers and attackable.any():
            xa, ya = x[attackable], y[attackable]
            res = attack.lbfgs_attack(model, xa, runner_up(model, xa, ya), **self.options)
            x_adv[attackable] = res.x_adv
            ok[attackable] = res.success
        if "hidden" in self.layers:
            lower, upper = hidden_split(model)
            with torch.no_grad():
                h = lower(x)
            h_adv = h.clone()
            h4 = h.view(count, 1, 1, -1)
            with torch.no_grad():
                good = upper(h4).argmax(1) == y
            if good.any():
                res = attack.lbfgs_attack(upper, h4[good], runner_up(upper, h4[good], y[good]), **self.options)
                h_adv[good] = res.x_adv.flatten(1)
        self.success_rate = ok.double().mean().item()
        self.last_originals = x
        return x_adv, h_adv, y

    def refresh(self, model: nn.Sequential) -> Tensor:
        """Fill the pool (first call) or replace a random `fraction` of it; returns the replaced slots."""
        was_training = model.training
        model.eval()
        try:
            if self.y is None:
                self.x, self.h, self.y = self._make(model, self.size)
                return torch.arange(self.size)
            slots = torch.randperm(self.size, generator=self.generator)[: max(1, round(self.fraction * self.size))]
            x, h, y = self._make(model, len(slots))
            self.x[slots], self.y[slots] = x, y
            if h is not None:
                self.h[slots] = h
            return slots
        finally:
            model.train(was_training)

    def snapshot(self, slots: Tensor, model: nn.Module, count: int = 8) -> dict[str, Tensor]:
        """A few of the freshly replaced entries: originals, adversarial inputs, labels, the model's answers."""
        pick = slots[:count]
        with torch.no_grad():
            predicted = model(self.x[pick]).argmax(1)
        return {"x": self.last_originals[:count].clone(), "x_adv": self.x[pick].clone(), "y": self.y[pick].clone(),
                "predicted": predicted}

    def sample(self, n: int) -> tuple[Tensor, Tensor | None, Tensor]:
        """n random pool entries (x, h or None, y)."""
        idx = torch.randint(self.size, (n,), generator=self.generator)
        return self.x[idx], None if self.h is None else self.h[idx], self.y[idx]


def pool_loss(pool: AdversarialPool, penalty=None, weight: float = 1.0):
    """Cross-entropy on the clean batch plus `weight` x that on half as many pool examples (and hidden codes)."""
    def loss(model: nn.Sequential, x: Tensor, y: Tensor) -> Tensor:
        value = F.cross_entropy(model(x), y)
        if pool.y is not None:
            px, ph, py = pool.sample(max(1, len(x) // 2))
            if "input" in pool.layers:
                value = value + weight * F.cross_entropy(model(px), py)
            if ph is not None:
                _, upper = hidden_split(model)
                value = value + weight * F.cross_entropy(upper(ph.view(len(ph), 1, 1, -1)), py)
        return value + penalty(model) if penalty is not None else value
    return loss


def findings(errors: dict[str, float]) -> list[Finding]:
    """The paper's adversarial-training claims, from test error % per training method (the chapter's table)."""
    needed = ("weight decay", "dropout", "adversarial pool", "adversarial pool + hidden layer")
    missing = [m for m in needed if m not in errors]
    if missing:
        raise ValueError(f"no test error for {missing}; give one for each of {list(needed)}")
    iclr = paper.ADVERSARIAL_TRAINING["iclr"]
    pool, dropout, decay = errors["adversarial pool"], errors["dropout"], errors["weight decay"]
    hidden = errors["adversarial pool + hidden layer"]
    return [
        Finding("adversarial pool < dropout < weight decay (test error)",
                f"{iclr['adversarial pool']:g} < {iclr['dropout']:g} < {iclr['weight decay']:g} (ICLR)",
                f"{pool:.2f}, {dropout:.2f}, {decay:.2f} (one seed each)", pool < dropout < decay),
        Finding("the pool brings test error below 1.2%", f"< {iclr['adversarial pool']:g}%", f"{pool:.2f}%",
                pool <= iclr["adversarial pool"]),
        Finding("adversarial examples of a hidden layer help more than the input's", "higher layers 'more useful'",
                f"{hidden:.2f}% with the hidden layer vs {pool:.2f}% without (one seed each)", hidden < pool),
    ]
