"""AlexNet on ImageNet, only if its pretrained weights are already on disk (Section 4.3, Table 5).

Nothing here downloads unless asked to (`allow_download=True`), so the book builds offline: the
chapter shows `ALEXNET_MISSING_NOTE` instead of the table when the weights are absent.
torchvision's AlexNet is the "one weird trick" variant (64-192-384-256-256 filters, no local
response normalization, no two-GPU groups), not the exact network of the paper's Table 5.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .spectral import layer_bounds

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"  # AlexNet_Weights.IMAGENET1K_V1


def alexnet_weights_path() -> Path:
    """Where torch hub caches the AlexNet weights (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE


ALEXNET_WEIGHTS_FILE = ALEXNET_URL.rsplit("/", 1)[-1]

# Names the file relative to the torch hub cache, never by this machine's absolute path.
ALEXNET_MISSING_NOTE = (
    f"The pretrained AlexNet weights are not on this machine, so nothing that needs them is computed here. "
    f"To get them, run this chapter in Colab (or anywhere with internet) after calling "
    f"`load_alexnet_pretrained(allow_download=True)`, or download {ALEXNET_URL} "
    f"and put it at checkpoints/{ALEXNET_WEIGHTS_FILE} in the torch hub cache (the folder "
    f"`torch.hub.get_dir()` returns)."
)


def load_alexnet_pretrained(allow_download: bool = False) -> nn.Module | None:
    """torchvision's pretrained AlexNet in eval mode if its weights are cached (or may be downloaded); else None."""
    try:
        from torchvision.models import AlexNet_Weights, alexnet
    except ImportError:
        return None
    if not alexnet_weights_path().exists() and not allow_download:
        return None
    try:
        model = alexnet(weights=AlexNet_Weights.IMAGENET1K_V1)  # reads the cache first, downloads only if absent
    except Exception as error:  # no network, or a truncated file in the cache
        warnings.warn(f"could not load pretrained AlexNet: {error}")
        return None
    return model.eval()


def alexnet_table5_layers(model: nn.Module, input_shape: Sequence[int] = (3, 224, 224), power_iters: int = 50):
    """The layer_bounds table restricted to AlexNet's conv and FC layers, labelled like Table 5.

    Input 3x224x224 (after ImageNet normalization: in raw [0, 1] pixels the first bound grows by
    1/std). The FFT bound does not depend on the zero padding (torchvision pads conv1 by 2 and the
    others to keep their size), so it applies to the padded layers as they are.
    """
    if not all(hasattr(model, part) for part in ("features", "avgpool", "classifier")):
        raise ValueError("expected an AlexNet-like module with .features, .avgpool and .classifier")
    as_sequential = nn.Sequential(model.features, model.avgpool, nn.Flatten(), model.classifier)
    table = layer_bounds(as_sequential, input_shape, power_iters=power_iters)
    table = table[table["kind"].isin(["conv", "fc"])].reset_index(drop=True)
    counts = {"conv": 0, "fc": 0}
    labels = []
    for kind in table["kind"]:
        counts[kind] += 1
        labels.append(f"{'Conv.' if kind == 'conv' else 'FC'} {counts[kind]}")
    table.insert(0, "layer_label", labels)
    return table
