import numpy as np
import pytest
import torch

from lib import models


@pytest.mark.parametrize("build", [
    models.softmax_classifier,
    lambda: models.sigmoid_mlp((100, 100)),
    lambda: models.sigmoid_mlp((123, 456), dropout=0.5),
    lambda: models.encoder_classifier(models.autoencoder(400)),
    models.conv_net,
])
def test_output_shape(build):
    model = build().eval()
    logits = model(torch.rand(7, 1, 28, 28))
    assert logits.shape == (7, 10)


def test_autoencoder_reconstructs_image_shape():
    assert models.autoencoder(50)(torch.rand(3, 1, 28, 28)).shape == (3, 1, 28, 28)


def test_weight_decay_equals_explicit_sum():
    torch.manual_seed(0)
    model = models.sigmoid_mlp((100, 100))
    lambdas = (1e-5, 1e-5, 1e-6)
    weights = [m.weight.detach().double().numpy() for m in models.weight_layers(model)]
    # lambda / k * sum(w^2), with k the number of units (rows) of each layer; biases excluded.
    explicit = sum(lam / w.shape[0] * np.sum(w**2) for lam, w in zip(lambdas, weights))
    assert models.weight_decay_penalty(model, lambdas).item() == pytest.approx(explicit, rel=1e-6)


def test_weight_decay_gradient_matches_torch_weight_decay():
    torch.manual_seed(0)
    model = models.softmax_classifier()
    lam = 0.3
    models.weight_decay_penalty(model, (lam,)).backward()
    layer = model[1]
    # torch's weight_decay=wd adds wd * w to the gradient: here wd = 2 * lam / k, k = 10 units.
    assert torch.allclose(layer.weight.grad, 2 * lam / 10 * layer.weight.detach())
    assert layer.bias.grad is None or torch.all(layer.bias.grad == 0)


def test_weight_decay_needs_one_lambda_per_layer():
    with pytest.raises(ValueError, match="one lambda per weight layer"):
        models.weight_decay_penalty(models.sigmoid_mlp((10, 10)), (1e-5,))


def test_bad_hidden_sizes():
    with pytest.raises(ValueError, match="hidden"):
        models.sigmoid_mlp((100, 0))
