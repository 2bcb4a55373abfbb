"""lib.spectral and lib.imagenet, checked against explicitly built matrices and numpy's SVD."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lib import imagenet
from lib.spectral import (
    certified_radius,
    conv_singular_values_fft,
    conv_upper_bound,
    fc_bounds,
    frequency_spectrum,
    global_upper_bound,
    grouped_conv_upper_bound,
    layer_bounds,
    local_lipschitz,
    power_iteration_norm,
    robustness_table,
)

torch.set_flush_denormal(True)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run far faster on one thread than on two contended cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_weight(seed: int, shape=(2, 3, 3, 3)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def circular_conv_matrix(weight: torch.Tensor, size: int, stride: int = 1) -> np.ndarray:
    """Strided circular cross-correlation on a size x size torus, built entry by entry."""
    w = weight.numpy()
    out, inp, k, _ = w.shape
    m = size // stride
    matrix = np.zeros((out * m * m, inp * size * size))
    for d in range(out):
        for i in range(m):
            for j in range(m):
                for c in range(inp):
                    for u in range(k):
                        for v in range(k):
                            col = c * size * size + ((i * stride + u) % size) * size + (j * stride + v) % size
                            matrix[d * m * m + i * m + j, col] += w[d, c, u, v]
    return matrix


def zero_padded_conv_matrix(weight: torch.Tensor, size: int, stride: int, padding: int) -> np.ndarray:
    """nn.Conv2d's linear map as a matrix: F.conv2d applied to every basis image."""
    inp = weight.shape[1]
    basis = torch.eye(inp * size * size, dtype=weight.dtype).reshape(-1, inp, size, size)
    return F.conv2d(basis, weight, stride=stride, padding=padding).reshape(len(basis), -1).T.numpy()


def conv_layer(weight: torch.Tensor, stride: int, padding: int) -> nn.Conv2d:
    layer = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[-1], stride=stride, padding=padding).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.normal_()  # power iteration must remove the bias
    return layer


def test_fc_bounds_match_numpy_svd():
    layer = nn.Linear(7, 5)
    sv = np.linalg.svd(layer.weight.detach().numpy().astype(np.float64), compute_uv=False)
    top, bottom = fc_bounds(layer)
    assert top == pytest.approx(sv[0], rel=1e-5)
    assert bottom == pytest.approx(sv[-1], rel=1e-5)


@pytest.mark.parametrize("size", [5, 6])
def test_fft_singular_values_match_explicit_circulant(size):
    weight = random_weight(0)
    explicit = np.linalg.svd(circular_conv_matrix(weight, size), compute_uv=False)
    values = conv_singular_values_fft(weight, size)
    assert values.shape == (size, size, 2)
    np.testing.assert_allclose(np.sort(values.flatten().numpy())[::-1], explicit, atol=1e-10)
    assert values.max().item() == pytest.approx(explicit[0], rel=1e-12)
    assert frequency_spectrum(weight, size).max().item() == pytest.approx(explicit[0], rel=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
def test_power_iteration_matches_explicit_zero_padded_norm(stride, padding):
    weight = random_weight(1)
    explicit = np.linalg.norm(zero_padded_conv_matrix(weight, 6, stride, padding), 2)
    estimate = power_iteration_norm(conv_layer(weight, stride, padding), (3, 6, 6), iters=300)
    assert estimate == pytest.approx(explicit, rel=1e-6)


def test_power_iteration_on_linear_layer():
    layer = nn.Linear(6, 4).double()
    explicit = np.linalg.norm(layer.weight.detach().numpy(), 2)
    assert power_iteration_norm(layer, (6,), iters=300) == pytest.approx(explicit, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("size", [5, 6])
def test_paper_bound_never_below_zero_padded_norm(seed, stride, padding, size):
    weight = random_weight(seed, (3, 2, 3, 3))
    explicit = np.linalg.norm(zero_padded_conv_matrix(weight, size, stride, padding), 2)
    assert conv_upper_bound(weight, size, stride) >= explicit * (1 - 1e-12)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_paper_bound_is_exact_strided_circular_norm(stride):
    # On the torus of size m = multiple of stride >= n + k - 1 the aliased-block formula is exact.
    weight, size = random_weight(2), 5
    torus = math.ceil((size + 3 - 1) / stride) * stride
    explicit = np.linalg.norm(circular_conv_matrix(weight, torus, stride), 2)
    assert conv_upper_bound(weight, size, stride) == pytest.approx(explicit, rel=1e-12)


def test_stride_normalization_on_identity_kernel():
    identity = torch.ones(1, 1, 1, 1)
    assert conv_upper_bound(identity, 8, 2) == pytest.approx(1.0)  # subsampling keeps norm 1, not 1/stride


def grouped_weight(seed: int, out: int, inp: int, groups: int, k: int = 3) -> torch.Tensor:
    return random_weight(seed, (out, inp // groups, k, k))


def grouped_zero_padded_matrix(weight: torch.Tensor, size: int, stride: int, padding: int, groups: int) -> np.ndarray:
    """A grouped nn.Conv2d's linear map as a matrix: F.conv2d applied to every basis image."""
    inp = weight.shape[1] * groups
    basis = torch.eye(inp * size * size, dtype=weight.dtype).reshape(-1, inp, size, size)
    return F.conv2d(basis, weight, stride=stride, padding=padding, groups=groups).reshape(len(basis), -1).T.numpy()


def grouped_circular_matrix(weight: torch.Tensor, size: int, stride: int, groups: int) -> np.ndarray:
    """A grouped strided circular conv on a size x size torus: wrap-pad by k - 1, then a valid conv."""
    inp, k = weight.shape[1] * groups, weight.shape[-1]
    basis = torch.eye(inp * size * size, dtype=weight.dtype).reshape(-1, inp, size, size)
    wrapped = F.pad(basis, (0, k - 1, 0, k - 1), mode="circular")
    out = F.conv2d(wrapped, weight, groups=groups)[..., ::stride, ::stride]
    return out.reshape(len(basis), -1).T.numpy()


def test_grouped_circular_matrix_agrees_with_the_entrywise_one():
    weight = random_weight(7, (2, 3, 3, 3))
    np.testing.assert_allclose(grouped_circular_matrix(weight, 6, 2, 1), circular_conv_matrix(weight, 6, 2), atol=1e-12)


@pytest.mark.parametrize("out, inp, groups", [(4, 4, 4), (6, 4, 2), (3, 3, 3)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
def test_grouped_bound_never_below_zero_padded_norm(out, inp, groups, stride, padding):
    weight, size = grouped_weight(out + stride, out, inp, groups), 5
    explicit = np.linalg.norm(grouped_zero_padded_matrix(weight, size, stride, padding, groups), 2)
    bound = grouped_conv_upper_bound(weight, size, stride, groups)
    assert bound >= explicit * (1 - 1e-12)
    assert bound <= conv_upper_bound(block_diagonal_dense(weight, groups), size, stride) * (1 + 1e-12)


def block_diagonal_dense(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The same layer as an ungrouped conv: a weight [out, in, k, k] that is zero between groups."""
    out, per_group = weight.shape[0], weight.shape[1]
    dense = torch.zeros(out, per_group * groups, *weight.shape[-2:], dtype=weight.dtype)
    for g in range(groups):
        rows = slice(g * out // groups, (g + 1) * out // groups)
        dense[rows, g * per_group:(g + 1) * per_group] = weight[rows]
    return dense


@pytest.mark.parametrize("out, inp, groups", [(4, 4, 4), (6, 4, 2)])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_grouped_bound_is_exact_circular_norm_on_its_torus(out, inp, groups, stride):
    weight, size = grouped_weight(3, out, inp, groups), 5
    torus = math.ceil((size + 3 - 1) / stride) * stride
    explicit = np.linalg.norm(grouped_circular_matrix(weight, torus, stride, groups), 2)
    assert grouped_conv_upper_bound(weight, size, stride, groups) == pytest.approx(explicit, rel=1e-12)
    dense = block_diagonal_dense(weight, groups)
    assert conv_upper_bound(dense, size, stride) == pytest.approx(explicit, rel=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_one_by_one_kernel_bound_is_the_matrix_norm(stride):
    weight = random_weight(4, (5, 3, 1, 1))
    matrix_norm = np.linalg.norm(weight[..., 0, 0].numpy(), 2)
    assert conv_upper_bound(weight, 9, stride) == pytest.approx(matrix_norm, rel=1e-12)
    explicit = np.linalg.norm(grouped_zero_padded_matrix(weight, 6, stride, 0, 1), 2)
    assert explicit == pytest.approx(matrix_norm, rel=1e-10)


@pytest.mark.parametrize("out, inp, groups", [(4, 4, 4), (6, 4, 2), (5, 3, 1)])
@pytest.mark.parametrize("k", [1, 3])
def test_grouped_circular_singular_values_match_explicit(out, inp, groups, k):
    weight, size = grouped_weight(5, out, inp, groups, k), 5
    explicit = np.linalg.svd(grouped_circular_matrix(weight, size, 1, groups), compute_uv=False)
    values = conv_singular_values_fft(weight, size, groups)
    assert values.shape == (size, size, groups * min(out // groups, inp // groups))
    np.testing.assert_allclose(np.sort(values.flatten().numpy())[::-1], explicit, atol=1e-10)
    assert torch.all(values[..., :-1] >= values[..., 1:])  # descending along the last axis


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_layer_bounds_row_against_power_iteration(stride):
    layer = nn.Conv2d(4, 4, 3, stride=stride, padding=1, groups=4)  # float32, as layer_bounds runs models
    with torch.no_grad():
        layer.weight.copy_(grouped_weight(6, 4, 4, 4))
        layer.bias.normal_()
    table = layer_bounds(nn.Sequential(layer), (4, 6, 6), power_iters=2000)  # close top singular values
    explicit = np.linalg.norm(grouped_zero_padded_matrix(layer.weight.detach().double(), 6, stride, 1, 4), 2)
    assert table["power_norm"][0] == pytest.approx(explicit, rel=1e-5)
    assert table["paper_bound"][0] >= explicit * (1 - 1e-6)
    assert math.isnan(table["exact_norm"][0]) == (stride != 1)


@pytest.mark.parametrize("call", [
    lambda: grouped_conv_upper_bound(torch.randn(4, 1, 3, 3), 5, 1, groups=3),
    lambda: grouped_conv_upper_bound(torch.randn(4, 1, 3, 3), 5, 1, groups=0),
    lambda: conv_singular_values_fft(torch.randn(4, 1, 3, 3), 5, groups=True),
    lambda: layer_bounds(nn.Sequential(nn.Conv2d(2, 2, 3, dilation=2)), (2, 8, 8)),
])
def test_bad_groups_or_dilation_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10), nn.Sigmoid(), nn.Linear(10, 3),
    )


def test_layer_bounds_rows_and_factors():
    model = small_model()
    table = layer_bounds(model, (1, 8, 8), power_iters=200)
    assert list(table["layer"]) == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Sigmoid", "Linear"]
    assert list(table["paper_bound"][[1, 2, 3, 5]]) == [1.0, 1.0, 1.0, 0.25]
    for row, layer in [(4, model[4]), (6, model[6])]:
        sv = np.linalg.svd(layer.weight.detach().numpy().astype(np.float64), compute_uv=False)
        assert table["paper_bound"][row] == pytest.approx(sv[0], rel=1e-5)
        assert table["power_norm"][row] == pytest.approx(sv[0], rel=1e-3)
    assert table["lower_bound"][6] == 0.0  # 10 -> 3 has a null space
    conv = table.iloc[0]
    assert conv["output_shape"] == (4, 8, 8)
    assert conv["power_norm"] <= conv["paper_bound"] * (1 + 1e-6)
    assert global_upper_bound(table) == pytest.approx(math.prod(table["paper_bound"]))


def test_overlapping_max_pool_factor():
    table = layer_bounds(nn.Sequential(nn.MaxPool2d(3, stride=2)), (1, 9, 9))
    assert table["paper_bound"][0] == pytest.approx(2.0)  # a pixel can win 2 x 2 overlapping windows


def test_layer_bounds_rejects_unknown_layer():
    with pytest.raises(ValueError, match="no Lipschitz bound"):
        layer_bounds(nn.Sequential(nn.Softmax(dim=1)), (4,))


def test_margin_lipschitz_and_certified_radius_on_linear_model():
    model = nn.Linear(5, 3).double()
    x = torch.randn(8, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logits = model(x).detach().numpy()
    W = model.weight.detach().numpy()
    order = np.argsort(-logits, axis=1)
    expected = np.linalg.norm(W[order[:, 0]] - W[order[:, 1]], axis=1)
    np.testing.assert_allclose(local_lipschitz(model, x).numpy(), expected, rtol=1e-10)
    # Exact distance to the nearest decision boundary of a linear classifier, per example.
    top = order[:, 0]
    distance = np.full(len(x), np.inf)
    for i, a in enumerate(top):
        for j in range(3):
            if j != a:
                distance[i] = min(distance[i], (logits[i, a] - logits[i, j]) / np.linalg.norm(W[a] - W[j]))
    radius = certified_radius(model, x, np.linalg.norm(W, 2)).numpy()
    assert radius.shape == (8,)
    assert np.all(radius <= distance + 1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: conv_singular_values_fft(torch.randn(3, 3, 3), 5),
        lambda: conv_singular_values_fft(torch.randn(2, 3, 3, 3), 0),
        lambda: conv_singular_values_fft(torch.randn(2, 3, 7, 7), 5),
        lambda: conv_upper_bound(torch.randn(2, 3, 3, 3), 5, stride=0),
        lambda: conv_upper_bound(torch.randn(2, 3, 3, 3), -1, stride=1),
        lambda: conv_upper_bound(torch.randn(2, 3, 3), 5, stride=1),
        lambda: power_iteration_norm(nn.Linear(3, 2), (0,)),
        lambda: power_iteration_norm(nn.Linear(3, 2), (3,), iters=0),
        lambda: fc_bounds(nn.Conv2d(1, 1, 3)),
        lambda: layer_bounds(nn.Linear(3, 2), (3,)),
        lambda: certified_radius(nn.Linear(3, 2), torch.randn(4, 3), 0.0),
    ],
)
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_alexnet_absent_returns_none_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert imagenet.load_alexnet_pretrained() is None
    assert "Colab" in imagenet.ALEXNET_MISSING_NOTE


def test_alexnet_url_is_torchvisions():
    torchvision = pytest.importorskip("torchvision")
    assert imagenet.ALEXNET_URL == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url


def test_alexnet_table_on_a_small_alexnet_like_model():
    torch.manual_seed(0)
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                                   nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
    model.avgpool = nn.AdaptiveAvgPool2d((3, 3))
    model.classifier = nn.Sequential(nn.Dropout(), nn.Linear(6 * 3 * 3, 8), nn.ReLU(), nn.Linear(8, 5))
    table = imagenet.alexnet_table5_layers(model, (3, 15, 15), power_iters=50)
    assert list(table["layer_label"]) == ["Conv. 1", "Conv. 2", "FC 1", "FC 2"]
    assert np.all(table["power_norm"] <= table["paper_bound"] * (1 + 1e-4))


def test_robustness_table_on_linear_model():
    generator = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4)).double()
    x = torch.rand(10, 1, 2, 3, dtype=torch.float64, generator=generator)
    y = torch.randint(0, 4, (10,), generator=generator)
    x_adv = x + 0.3 * torch.randn(x.shape, dtype=torch.float64, generator=generator)
    L = 2.5
    table = robustness_table(model, x, y, x_adv, L)
    W, b = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    X, X_adv = x.reshape(10, -1).numpy(), x_adv.reshape(10, -1).numpy()
    logits, logits_adv = X @ W.T + b, X_adv @ W.T + b
    order = np.argsort(-logits, axis=1)
    a, c = order[:, 0], order[:, 1]
    margin = logits[np.arange(10), a] - logits[np.arange(10), c]
    slope = np.linalg.norm(W[a] - W[c], axis=1)
    r = np.linalg.norm(X_adv - X, axis=1)
    np.testing.assert_array_equal(table["correct"], a == y.numpy())
    np.testing.assert_array_equal(table["flipped"], logits_adv.argmax(1) != a)
    np.testing.assert_allclose(table["margin"], margin, rtol=1e-10)
    np.testing.assert_allclose(table["local_slope"], slope, rtol=1e-10)
    np.testing.assert_allclose(table["certified"], margin / (math.sqrt(2) * L), rtol=1e-10)
    np.testing.assert_allclose(table["local_estimate"], margin / slope, rtol=1e-10)  # distance to the a|c hyperplane
    np.testing.assert_allclose(table["attack_norm"], r, rtol=1e-10)
    np.testing.assert_allclose(table["secant_slope"], margin / r, rtol=1e-10)


def test_robustness_table_rejects_mismatched_shapes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(5, 1, 2, 2)
    with pytest.raises(ValueError, match="do not match"):
        robustness_table(model, x, torch.zeros(5, dtype=torch.long), x[:4], 1.0)
    with pytest.raises(ValueError, match="do not match"):
        robustness_table(model, x, torch.zeros(4, dtype=torch.long), x, 1.0)


# ----------------------------------------------------------------------------------------------
# spectral.findings: each verdict follows its inputs
# ----------------------------------------------------------------------------------------------

from lib import paper, spectral  # noqa: E402


def bounds_table(first=3.0, power_ratio=0.99):
    """A layer_bounds-like table: conv (bound `first`), relu, fc (bound 2); global bound first * 2."""
    import pandas as pd

    return pd.DataFrame({"kind": ["conv", "nonlinearity", "fc"], "paper_bound": [first, 1.0, 2.0],
                         "power_norm": [first * power_ratio, float("nan"), 2.0 * power_ratio]})


def robust_table(certified=(0.01, 0.02), attack=(0.5, 0.6), secant=(1.0, 2.0)):
    import pandas as pd

    return pd.DataFrame({"certified": certified, "attack_norm": attack, "secant_slope": secant})


def spectral_findings(tables=None, robust=None, strided=None, pooling=None, alexnet=None):
    return spectral.findings(tables or {"M": bounds_table()}, robust or {"M": robust_table()},
                             strided or spectral.StridedCheck(2, actual_norm=1.0, bound=1.5),
                             pooling or {"2x2": 1.0}, alexnet)


def test_spectral_findings_verdicts_on_hand_made_results():
    found = spectral_findings()
    assert [f.holds for f in found] == [True, False, True, None, True, True]
    assert "2 of 2" in found[0].ours and "0.750" in found[1].ours  # literal s^-2: 1.5 / 2
    assert found[3].note and found[3].paper.startswith("AlexNet")
    assert "the ICLR version's, arXiv v4" in found[3].paper
    assert all(row["source"].startswith("ICLR version (arXiv v4)") for row in paper.TABLE5)


def test_spectral_findings_each_verdict_flips():
    assert spectral_findings(tables={"M": bounds_table(power_ratio=1.01)})[0].holds is False  # power above bound
    assert spectral_findings(strided=spectral.StridedCheck(2, 1.0, 2.5))[1].holds is True  # 2.5 / 2 >= 1
    overlapping = spectral_findings(pooling={"2x2": 1.0, "3x3 stride 2": 2.0})[2]
    assert overlapping.holds is False and "3x3 stride 2" in overlapping.note
    assert spectral_findings(tables={"M": bounds_table(first=0.8)})[4].holds is False  # first layer contracts
    inside = spectral_findings(robust={"M": robust_table(certified=(0.01, 0.7))})[5]
    assert inside.holds is False and "1 of 2" in inside.ours  # the attack beat the certificate: impossible
    bound = math.sqrt(2) * 3.0 * 2.0
    assert spectral_findings(robust={"M": robust_table(secant=(1.0, bound * 1.1))})[5].holds is False


def test_spectral_findings_with_alexnet_bounds():
    table5 = [row["upper_bound"] for row in paper.TABLE5]
    same = spectral_findings(alexnet=[2 * v for v in table5])
    assert same[3].holds is True and same[4].holds is (2 * table5[0] > 1)
    far = spectral_findings(alexnet=[20 * table5[0]] + table5[1:])
    assert far[3].holds is False
    small_first = spectral_findings(alexnet=[0.5] + table5[1:])
    assert small_first[4].holds is False and "torchvision AlexNet 0.5" in small_first[4].ours


@pytest.mark.parametrize("call, message", [
    (lambda: spectral_findings(alexnet=[1.0, 2.0]), "alexnet_bounds"),
    (lambda: spectral_findings(robust={"other": robust_table()}), "tables lack"),
    (lambda: spectral_findings(tables={"M": bounds_table().drop(columns="power_norm")}), "columns"),
    (lambda: spectral_findings(robust={"M": robust_table(certified=(), attack=(), secant=())}), "no rows"),
    (lambda: spectral.findings({"M": bounds_table()}, {"M": robust_table()}, (2, 1.0, 1.5), {"p": 1.0}),
     "StridedCheck"),
    (lambda: spectral.findings({"M": bounds_table()}, {"M": robust_table()}, spectral.StridedCheck(2, 1.0, 1.5), {}),
     "pooling"),
    (lambda: spectral.StridedCheck(1, 1.0, 1.0), "stride"),
    (lambda: spectral.StridedCheck(2, float("nan"), 1.0), "actual_norm"),
])
def test_spectral_findings_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_alexnet_note_names_no_machine_path():
    import re

    note = imagenet.ALEXNET_MISSING_NOTE
    assert str(imagenet.alexnet_weights_path()) not in note
    assert torch.hub.get_dir() not in note
    assert not re.search(r"(^|\s)(/|~)\w", note)  # no absolute or home-relative path
    assert f"checkpoints/{imagenet.ALEXNET_WEIGHTS_FILE}" in note and "torch.hub.get_dir()" in note
