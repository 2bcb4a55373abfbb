"""One training loop (used by the zoo and by adversarial training), and error rates."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def classification_loss(penalty: Callable[[nn.Module], torch.Tensor] | None = None) -> LossFn:
    """Mean cross-entropy, plus `penalty(model)` (e.g. the paper's weight decay) when given."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        value = F.cross_entropy(model(x), y)
        return value + penalty(model) if penalty is not None else value

    return loss


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    seed: int = 0,
    desc: str = "training",
    progress: bool = True,
    on_epoch: Callable[[int, nn.Module], dict] | None = None,
) -> list[dict]:
    """Adam (or SGD with momentum 0.9) with a cosine learning-rate decay over seeded shuffled mini-batches.

    Returns one log dict per epoch (mean loss, plus whatever `on_epoch` adds).
    """
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in length: {len(inputs)} vs {len(targets)}")
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    torch.set_flush_denormal(True)  # decayed weights of blank border pixels become denormals: 10-20x slower
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    steps_per_epoch = math.ceil(len(inputs) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / (epochs * steps_per_epoch)))
    )
    generator = torch.Generator().manual_seed(seed)
    history = []
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(inputs), batch_size):
            idx = order[start : start + batch_size]
            loss = loss_fn(model, inputs[idx], targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(idx)
        log = {"epoch": epoch + 1, "loss": total / len(inputs)}
        model.eval()
        if on_epoch is not None:
            log.update(on_epoch(epoch + 1, model))
        history.append(log)
        bar.set_postfix({k: round(v, 4) for k, v in log.items() if k != "epoch"})
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Predicted labels [N] (model in eval mode)."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification error in percent."""
    return 100.0 * (predict(model, images) != labels).double().mean().item()
