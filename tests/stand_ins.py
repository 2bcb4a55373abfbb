"""Small stand-ins for the zoo's models, trained in a few seconds and shared by the attack tests."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from lib.attack import predict
from lib.data import fixed_subset, load_mnist


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


@functools.cache
def stand_in_models() -> dict[str, nn.Module]:
    """Stand-ins for the zoo: a linear softmax, a 784-100-100-10 sigmoid net, a small conv net (trained once)."""
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


def random_linear(inputs: int, classes: int, generator: torch.Generator) -> nn.Sequential:
    """Flatten + a linear layer with standard normal weights and biases drawn from `generator`, in eval mode."""
    layer = nn.Linear(inputs, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, inputs, generator=generator))
        layer.bias.copy_(torch.randn(classes, generator=generator))
    return nn.Sequential(nn.Flatten(), layer).eval()


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """The attack's tensors are small: on a shared 2-core machine a second OpenMP thread costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    """The stand-ins, as a fixture for the test modules that import it."""
    return stand_in_models()
