"""Section 4.2's adversarial training: a pool of adversarial examples for each layer, refreshed continuously.

The paper keeps "a pool of adversarial examples, a random subset of which is continuously replaced by
newly generated adversarial examples and which is mixed into the original training set all the time",
and generates them "for each layer output", each layer's examples training "all the layers above".
`AdversarialPool` keeps one pool per chosen layer ("input", "h1", "h2" of a sigmoid MLP): every
`refresh_every` mini-batches it replaces `fraction` of each pool with examples made against the current
model by a cheap version of the book's L-BFGS attack, on the layers above that layer. `pool_loss` adds,
to every clean mini-batch's cross-entropy, `weight` times the mean cross-entropy of half as many pool
examples per layer, with their true labels. `fgsm_loss` is the follow-up's reference (Goodfellow et al.
2015): the fast gradient sign method, mixed half and half with the clean loss.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .attack import lbfgs_attack, runner_up
from .train import LossFn

LAYERS = ("input", "h1", "h2")  # the input and each hidden layer's output of a 784-h1-h2-10 sigmoid net
TARGETS = ("runner-up", "random")  # which wrong label a fresh pool example is made for
CHEAP_ATTACK = {"c_steps": 4, "max_iter": 30, "refine": False}  # a few c values, short L-BFGS runs


@dataclass(frozen=True)
class PoolSettings:
    """How the pools are kept: which layers, their size, how often and how much is replaced, and how mixed in."""

    layers: tuple[str, ...] = LAYERS
    size: int = 5000  # examples per layer's pool
    refresh_every: int = 100  # mini-batches between two refreshes
    fraction: float = 0.02  # of the pool replaced at each refresh (the first refreshes fill it)
    weight: float = 0.5  # of the pools' mean cross-entropy, added to the clean batch's
    magnify: float = 1.0  # the pool holds x + magnify * r, r the minimal perturbation found (clipped to [0,1])
    target: str = "runner-up"  # TARGETS

    def __post_init__(self) -> None:
        if not self.layers or len(set(self.layers)) != len(self.layers) or not set(self.layers) <= set(LAYERS):
            raise ValueError(f"layers must be a non-empty subset of {LAYERS} without repeats, got {self.layers}")
        if self.size <= 0 or self.refresh_every <= 0:
            raise ValueError(f"size and refresh_every must be positive, got {self.size}, {self.refresh_every}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.weight <= 0 or self.magnify < 1:
            raise ValueError(f"weight must be positive and magnify at least 1, got {self.weight}, {self.magnify}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")


def split(model: nn.Sequential, layer: str) -> tuple[nn.Module, nn.Sequential]:
    """(the map from the image to `layer`'s output, the layers above it taking that output as [N,1,1,H]): shared modules."""
    if layer == "input":
        return nn.Identity(), model
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; valid: {', '.join(LAYERS)}")
    sigmoids = [i for i, m in enumerate(model) if isinstance(m, nn.Sigmoid)]
    depth = LAYERS.index(layer)
    if len(sigmoids) < depth:
        raise ValueError(f"layer {layer!r} needs {depth} sigmoid hidden layers (values in [0,1]); the model has "
                         f"{len(sigmoids)}")
    cut = sigmoids[depth - 1] + 1
    return model[:cut], nn.Sequential(nn.Flatten(), *model[cut:])


def wrong_labels(model: nn.Module, x: Tensor, y: Tensor, rule: str, generator: torch.Generator) -> Tensor:
    """The label each example is attacked towards: the runner-up, or one drawn uniformly from the 9 wrong ones."""
    if rule == "runner-up":
        return runner_up(model, x, y)
    if rule != "random":
        raise ValueError(f"target must be one of {TARGETS}, got {rule!r}")
    return (y + torch.randint(1, 10, (len(y),), generator=generator)) % 10


class AdversarialPool:
    """One fixed-size pool of adversarial examples (true labels) per layer, partly replaced every k mini-batches."""

    def __init__(self, images: Tensor, labels: Tensor, settings: PoolSettings, seed: int = 0,
                 attack_options: dict | None = None):
        if len(images) != len(labels) or settings.size > len(images):
            raise ValueError(f"need as many labels as images and at least `size` of them: {len(images)} images, "
                             f"{len(labels)} labels, size {settings.size}")
        self.images, self.labels, self.settings = images, labels, settings
        self.options = {**CHEAP_ATTACK, **(attack_options or {})}
        self.generator = torch.Generator().manual_seed(seed)
        self.inputs: dict[str, Tensor] = {}  # layer -> [filled, ...] adversarial inputs of the layers above it
        self.targets: dict[str, Tensor] = {}  # layer -> [filled] true labels
        self.batches = 0
        self.made = 0  # fresh examples generated (all layers)
        self.succeeded = 0  # of them, attacks that reached their target label
        self.latest: dict[str, Tensor] = {}  # the newest input-layer examples: "x", "x_adv", "y"

    def step(self, model: nn.Sequential) -> None:
        """Count one mini-batch; every `refresh_every`-th, refresh every layer's pool against the current model."""
        self.batches += 1
        if self.batches % self.settings.refresh_every == 0:
            self.refresh(model)

    def refresh(self, model: nn.Sequential) -> None:
        """Fresh examples for each layer: appended until the pool is full, then replacing random entries."""
        was_training = model.training
        model.eval()
        try:
            count = max(1, round(self.settings.fraction * self.settings.size))
            idx = torch.randperm(len(self.images), generator=self.generator)[:count]
            for layer in self.settings.layers:
                fresh = self._make(model, layer, self.images[idx], self.labels[idx])
                self._store(layer, fresh, self.labels[idx])
        finally:
            model.train(was_training)

    def _make(self, model: nn.Sequential, layer: str, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial versions of `layer`'s outputs for images x, made on the layers above it."""
        lower, upper = split(model, layer)
        with torch.no_grad():
            h = lower(x)
            codes = h if layer == "input" else h.view(len(h), 1, 1, -1)
            correct = upper(codes).argmax(1) == y  # the others are adversarial already: kept as they are
        adversarial = codes.clone()
        if correct.any():
            target = wrong_labels(upper, codes[correct], y[correct], self.settings.target, self.generator)
            result = lbfgs_attack(upper, codes[correct], target, **self.options)
            r = result.x_adv - codes[correct]
            adversarial[correct] = (codes[correct] + self.settings.magnify * r).clamp(0, 1)
            self.succeeded += int(result.success.sum())
        self.made += int(correct.sum())
        if layer == "input":
            self.latest = {"x": x, "x_adv": adversarial, "y": y}
        return adversarial if layer == "input" else adversarial.flatten(1)

    def _store(self, layer: str, fresh: Tensor, y: Tensor) -> None:
        if layer not in self.inputs:
            self.inputs[layer], self.targets[layer] = fresh, y.clone()
            return
        room = self.settings.size - len(self.targets[layer])
        if room > 0:
            fresh, y, spill_x, spill_y = fresh[:room], y[:room], fresh[room:], y[room:]
            self.inputs[layer] = torch.cat([self.inputs[layer], fresh])
            self.targets[layer] = torch.cat([self.targets[layer], y])
            fresh, y = spill_x, spill_y
        if len(y):
            slots = torch.randperm(self.settings.size, generator=self.generator)[: len(y)]
            self.inputs[layer][slots], self.targets[layer][slots] = fresh, y

    def sample(self, layer: str, n: int) -> tuple[Tensor, Tensor]:
        """n random entries of `layer`'s pool: (inputs of the layers above it, true labels)."""
        idx = torch.randint(len(self.targets[layer]), (n,), generator=self.generator)
        return self.inputs[layer][idx], self.targets[layer][idx]

    @property
    def success_rate(self) -> float:
        """Share of the fresh examples whose attack reached its target label (nan before any)."""
        return self.succeeded / self.made if self.made else float("nan")

    def snapshot(self, model: nn.Module, count: int = 8) -> dict[str, Tensor]:
        """A few of the newest input-layer examples: originals, adversarial inputs, true labels, the model's answers."""
        if not self.latest:
            raise ValueError("no input-layer examples yet: the pool has 'input' among its layers after a refresh")
        x_adv = self.latest["x_adv"][:count]
        with torch.no_grad():
            predicted = model(x_adv).argmax(1)
        return {"x": self.latest["x"][:count].clone(), "x_adv": x_adv.clone(), "y": self.latest["y"][:count].clone(),
                "predicted": predicted}


def pool_loss(pool: AdversarialPool, penalty: Callable[[nn.Module], Tensor] | None = None,
              whole: bool = False) -> LossFn:
    """Clean cross-entropy plus `weight` x the mean over layers of that on half a batch from each layer's pool.

    whole=True (full-batch L-BFGS): every pool entry instead of a sample, and no refresh here (the
    training loop refreshes between its runs of iterations, so the objective is fixed within a run).
    """
    def loss(model: nn.Sequential, x: Tensor, y: Tensor) -> Tensor:
        if not whole:
            pool.step(model)
        value = F.cross_entropy(model(x), y)
        ready = [layer for layer in pool.settings.layers if layer in pool.targets]
        if ready:
            terms = []
            for layer in ready:
                inputs, labels = ((pool.inputs[layer], pool.targets[layer]) if whole
                                  else pool.sample(layer, max(1, len(x) // 2)))
                _, upper = split(model, layer)
                terms.append(F.cross_entropy(upper(inputs.to(x.dtype)), labels))
            value = value + pool.settings.weight * torch.stack(terms).mean()
        return value + penalty(model) if penalty is not None else value
    return loss


def fgsm(model: nn.Module, x: Tensor, y: Tensor, epsilon: float) -> Tensor:
    """The fast gradient sign method: x + epsilon sign(grad_x cross-entropy), clipped to [0,1]."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + epsilon * grad.sign()).clamp(0, 1).detach()


def fgsm_loss(epsilon: float, penalty: Callable[[nn.Module], Tensor] | None = None, alpha: float = 0.5) -> LossFn:
    """Goodfellow et al.'s adversarial objective: alpha x clean cross-entropy + (1 - alpha) x that on FGSM examples."""
    if not epsilon > 0 or not 0 <= alpha <= 1:
        raise ValueError(f"epsilon must be positive and alpha in [0, 1], got {epsilon}, {alpha}")

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_adv = fgsm(model, x, y, epsilon)
        value = alpha * F.cross_entropy(model(x), y) + (1 - alpha) * F.cross_entropy(model(x_adv), y)
        return value + penalty(model) if penalty is not None else value
    return loss
