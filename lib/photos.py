"""Natural photographs that ship inside packages the book depends on, as [N,3,224,224] batches in [0,1].

Each photo is resized and cropped the way timm's evaluation transform does for EfficientNet-Lite0
(crop fraction 0.875): the shorter side is resized to floor(224 / 0.875) = 256 pixels with PIL's
bicubic filter, then the central 224 x 224 square is cut out. PIL works on 8-bit images, so every
pixel of the result is a multiple of 1/255: the inputs lie on the 8-bit grid, as a saved image does.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

CROP_FRACTION = 0.875  # timm's default crop_pct for these networks
SIZE = 224
RESIZE = math.floor(SIZE / CROP_FRACTION)  # 256: the shorter side before the centre crop
SHIFT = (RESIZE - SIZE) // 2  # 16: how far the shifted crops of `VARIANTS` move from the centre, each way
VARIANTS = ("centre", "mirror", "up-left", "down-right")  # the crops `to_input` cuts: more photos to validate on


@dataclass(frozen=True)
class Photo:
    """One bundled photograph: where it comes from, its licence, and the ImageNet classes that count as correct."""
    name: str
    source: str  # the package and the call that returns it
    licence: str
    correct: tuple[int, ...]  # ImageNet class indices; the first is the one the photo shows best
    description: str


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
    return read


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    return read


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data(name) as file:
            return np.asarray(Image.open(file).convert("RGB"))
    return read


# correct: the classes a person would accept for what the photo shows (ImageNet indices, torchvision's names).
PHOTOS = (
    Photo("chelsea", "scikit-image: skimage.data.chelsea()", "public domain (Stefan van der Walt)",
          (285, 281, 282), "a tabby cat (Chelsea)"),
    Photo("coffee", "scikit-image: skimage.data.coffee()", "CC0 (Rachel Michetti)",
          (967, 968, 504), "a cup of coffee on a saucer"),
    Photo("rocket", "scikit-image: skimage.data.rocket()", "public domain (NASA)",
          (657, 744, 812), "a rocket on its launch pad"),
    Photo("motorcycle", "scikit-image: skimage.data.stereo_motorcycle()[0]", "CC0 (Middlebury stereo data set)",
          (670, 665), "a motorcycle in a workshop"),
    Photo("china", "scikit-learn: sklearn.datasets.load_sample_image('china.jpg')", "CC BY 2.0 (Mintaka, Flickr)",
          (698, 663, 832), "a Chinese palace tower by a lake"),
    Photo("flower", "scikit-learn: sklearn.datasets.load_sample_image('flower.jpg')", "CC BY 2.0 (Danny Steven, Flickr)",
          (985, 309), "a flower head with a bee"),
    Photo("grace_hopper", "matplotlib: matplotlib.cbook.get_sample_data('grace_hopper.jpg')",
          "public domain (U.S. Navy)", (652, 457, 834, 906), "Grace Hopper in uniform"),
)
_READERS = {
    "chelsea": _skimage("chelsea"), "coffee": _skimage("coffee"), "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"), "china": _sklearn("china.jpg"), "flower": _sklearn("flower.jpg"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}
NAMES = tuple(p.name for p in PHOTOS)


def photo(name: str) -> Photo:
    """The `Photo` record of `name`."""
    for p in PHOTOS:
        if p.name == name:
            return p
    raise ValueError(f"unknown photo {name!r}; choose from {NAMES}")


def to_input(image: np.ndarray, what: str = "image", variant: str = "centre") -> torch.Tensor:
    """An RGB uint8 image [H,W,3] as the networks' input [3,224,224] in [0,1] (resize 256, centre crop 224).

    variant: "centre" (the evaluation transform), "mirror" (its left-right mirror image), or the crop moved
    SHIFT pixels up and left ("up-left") or down and right ("down-right").
    """
    from PIL import Image, ImageOps

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be an RGB image [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be 8-bit (uint8), got {image.dtype}")
    if min(image.shape[:2]) < SIZE:
        raise ValueError(f"{what} is {image.shape[1]}x{image.shape[0]} pixels: both sides must be at least {SIZE}")
    pil = Image.fromarray(image)
    w, h = pil.size
    short, long = min(w, h), max(w, h)
    size = (RESIZE, int(RESIZE * long / short))  # torchvision's Resize(256): the longer side truncated
    pil = pil.resize(size if w <= h else size[::-1], Image.BICUBIC)
    w, h = pil.size
    left, top = int(round((w - SIZE) / 2.0)), int(round((h - SIZE) / 2.0))
    shift = {"up-left": -SHIFT, "down-right": SHIFT}.get(variant, 0)
    left, top = min(max(left + shift, 0), w - SIZE), min(max(top + shift, 0), h - SIZE)
    crop = pil.crop((left, top, left + SIZE, top + SIZE))
    crop = np.asarray(ImageOps.mirror(crop) if variant == "mirror" else crop)
    return torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255


def raw(name: str) -> np.ndarray:
    """The photo `name` as its package ships it, an RGB uint8 array [H,W,3]."""
    photo(name)
    return _READERS[name]()


def load(names: Sequence[str] = NAMES) -> tuple[torch.Tensor, list[Photo]]:
    """The photos `names` as a batch [N,3,224,224] in [0,1] (multiples of 1/255) and their records."""
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of photo names from {NAMES}, got {names!r}")
    records = [photo(n) for n in names]
    return torch.stack([to_input(raw(n), n) for n in names]), records


def variant_label(name: str, variant: str) -> str:
    """How a crop of `VARIANTS` is named in results: the photo's name, then the variant unless it is the centre."""
    return name if variant == "centre" else f"{name} ({variant})"


def load_variants(names: Sequence[str], variants: Sequence[str] = VARIANTS) -> tuple[torch.Tensor, list[str]]:
    """Every crop of `variants` of each photo of `names`, photo by photo: a batch [N*V,3,224,224] and their labels."""
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of photo names from {NAMES}, got {names!r}")
    if isinstance(variants, str) or not variants:
        raise ValueError(f"variants must be a non-empty list from {VARIANTS}, got {variants!r}")
    images = {n: raw(photo(n).name) for n in names}
    pairs = [(n, v) for n in names for v in variants]
    return (torch.stack([to_input(images[n], n, v) for n, v in pairs]),
            [variant_label(n, v) for n, v in pairs])
