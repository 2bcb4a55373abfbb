"""The paper's MNIST architectures (Section 2, Table 1) and its per-layer weight decay.

Every model is an `nn.Sequential` of standard layers: it takes images [N,1,28,28] in [0,1]
and returns logits [N,10]. Keeping to plain Sequentials lets `lib.spectral` walk the layers.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

N_PIXELS = 28 * 28
N_CLASSES = 10


def softmax_classifier() -> nn.Sequential:
    """FC10: a linear map 784 -> 10 (softmax lives in the loss)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(N_PIXELS, N_CLASSES))


def sigmoid_mlp(hidden: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """FC h1-h2-10: fully connected sigmoid layers, then a linear softmax layer."""
    if not hidden or any(h <= 0 for h in hidden):
        raise ValueError(f"hidden sizes must be positive integers, got {hidden}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = N_PIXELS
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Sigmoid()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, N_CLASSES))
    model = nn.Sequential(*layers)
    for layer in weight_layers(model):  # Glorot & Bengio's init, designed for sigmoid layers
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model


def autoencoder(hidden: int = 400) -> nn.Sequential:
    """A sigmoid autoencoder 784 -> hidden -> 784 (encoder = its first three layers)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(N_PIXELS, hidden),
        nn.Sigmoid(),
        nn.Linear(hidden, N_PIXELS),
        nn.Sigmoid(),
        nn.Unflatten(1, (1, 28, 28)),
    )


def encoder_classifier(encoder: nn.Sequential) -> nn.Sequential:
    """AE400-10: a (frozen) sigmoid encoder with a linear softmax layer on top."""
    hidden = encoder[1].out_features
    return nn.Sequential(*encoder[:3], nn.Linear(hidden, N_CLASSES))


def conv_net(channels: int = 32, kernel: int = 5, hidden: int = 128, dropout: float = 0.5) -> nn.Sequential:
    """Conv: one convolution layer, max pooling, a fully connected layer, dropout, softmax."""
    side = (28 - kernel + 1) // 2
    return nn.Sequential(
        nn.Conv2d(1, channels, kernel),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * side * side, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, N_CLASSES),
    )


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The layers carrying weights (Linear and Conv2d), in order."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


# How the paper's "lambda/k sum w^2, k = the number of units in the layer" can be read: k per layer.
DECAY_READINGS = {
    "outputs": "lambda/k * sum w^2, k = the layer's output units",
    "inputs": "lambda/k * sum w^2, k = the layer's input units",
    "none": "lambda * sum w^2 (no division)",
    "half": "lambda/2 * sum w^2 (the usual 1/2 convention)",
}


def decay_divisor(layer: nn.Module, reading: str) -> int:
    """k of one weight layer under a reading of the paper's decay (see DECAY_READINGS)."""
    if reading not in DECAY_READINGS:
        raise ValueError(f"unknown weight-decay reading {reading!r}; valid: {', '.join(DECAY_READINGS)}")
    conv = isinstance(layer, nn.Conv2d)
    if reading == "outputs":
        return layer.out_channels if conv else layer.out_features
    if reading == "inputs":
        return layer.weight[0].numel() if conv else layer.in_features
    return 1 if reading == "none" else 2


def weight_decay_penalty(model: nn.Module, lambdas: Sequence[float], reading: str = "outputs") -> torch.Tensor:
    """The paper's decay: sum over layers of lambda/k * sum(w^2), k = number of units in the layer.

    `reading` picks what k is (DECAY_READINGS; the default, the layer's output units, is our first
    reading of the paper). Biases are not decayed. With a mean-over-batch loss, lambda/k * |w|^2 has
    gradient 2*lambda/k * w, so it equals torch's usual `weight_decay=2*lambda/k` (plain SGD or Adam,
    not AdamW) for that layer.
    """
    layers = weight_layers(model)
    if len(lambdas) != len(layers):
        raise ValueError(f"need one lambda per weight layer: {len(layers)} layers, got {len(lambdas)} lambdas")
    total = torch.zeros((), dtype=layers[0].weight.dtype)
    for lam, layer in zip(lambdas, layers):
        if lam:
            total = total + lam / decay_divisor(layer, reading) * layer.weight.pow(2).sum()
    return total
