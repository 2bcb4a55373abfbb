"""Section 4.2's transfer experiments (lib/transfer.py), checked against explicit per-image computations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib import attack, data, paper, transfer, zoo

SOURCES = ("softmax-1e-4", "N100-100-10")


@pytest.fixture(scope="module")
def models() -> dict:
    return {name: zoo.load(name) for name in SOURCES}


@pytest.fixture(scope="module")
def examples(models) -> dict:
    """Runner-up adversarial examples of 16 training images, made on each of two zoo models."""
    x, y = data.fixed_subset(16, train=True, seed=3)
    out = {}
    for name, model in models.items():
        result = attack.min_distortion(model, x, y, target="runner-up")
        out[name] = {"x": x, "y": y, "x_adv": result.x_adv, "success": result.success,
                     "distortion": result.distortion}
    return out


def explicit_error(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Error % counted one image at a time."""
    wrong = 0
    with torch.no_grad():
        for image, label in zip(images, labels):
            wrong += int(model(image[None]).argmax(1).item() != label.item())
    return 100.0 * wrong / len(labels)


def test_transfer_matrix_diagonal_is_100_and_cells_match_a_per_image_count(models, examples):
    matrix = transfer.cross_model_error(examples, models)
    assert list(matrix.index) == list(SOURCES) and list(matrix.columns) == list(SOURCES)
    for name in SOURCES:
        assert examples[name]["success"].all(), name
        assert matrix.loc[name, name] == 100.0  # each model's own successful examples fool it
    for source in SOURCES:
        ex = examples[source]
        ok = ex["success"]
        for target, model in models.items():
            assert matrix.loc[source, target] == pytest.approx(explicit_error(model, ex["x_adv"][ok], ex["y"][ok]))


def test_noise_rows_use_the_stated_stddev(models):
    x, y = data.fixed_subset(64, train=True, seed=1)
    stddev, seed = 0.3, 7
    result = transfer.noise_error(x, y, models, stddev, seed=seed)
    # the same noise drawn independently: a seeded standard normal scaled by the stddev
    noise = (torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * stddev).numpy().astype(np.float64)
    assert result.stddev == stddev
    assert result.drawn_stddev == pytest.approx(noise.std(ddof=1), rel=1e-5)
    assert abs(result.drawn_stddev - stddev) < 0.01  # 50,176 draws: the sample stddev is within ~0.3% of 0.3
    noisy = np.clip(x.numpy() + noise, 0, 1)
    assert result.distortion == pytest.approx(np.sqrt(((noisy - x.numpy()) ** 2).reshape(64, -1).mean(1)).mean(),
                                              rel=1e-5)
    for name, model in models.items():
        assert result.errors[name] == pytest.approx(explicit_error(model, torch.from_numpy(noisy).float(), y))


def test_halves_are_disjoint_and_the_table3_models_train_on_them():
    p1, p2 = data.split_halves()
    a, b = set(p1.tolist()), set(p2.tolist())
    assert len(a) == len(b) == 30_000 and not a & b and a | b == set(range(60_000))
    for name in paper.TABLE3_MODELS:
        assert zoo.spec(name).train_on == name.rsplit("@", 1)[1]


def test_magnify_gives_the_stated_stddev():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 28, 28, generator=generator)
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    x_adv[3] = x[3]  # nothing to magnify: left as it is
    stddev = 0.1
    xs, rs = x.double().numpy().reshape(5, -1), (x_adv - x).double().numpy().reshape(5, -1)
    rms = np.sqrt((rs**2).sum(1) / 784)
    expected = xs.copy()
    for i in range(5):
        if rms[i] > 0:
            expected[i] = xs[i] + stddev * rs[i] / rms[i]
    unclipped = transfer.magnify(x, x_adv, stddev, clip=False).double().numpy().reshape(5, -1)
    np.testing.assert_allclose(unclipped, expected, atol=1e-6)
    distortion = np.sqrt(((unclipped - xs) ** 2).sum(1) / 784)
    np.testing.assert_allclose(distortion[[0, 1, 2, 4]], stddev, rtol=1e-5)
    assert distortion[3] == 0
    clipped = transfer.magnify(x, x_adv, stddev).double().numpy().reshape(5, -1)
    np.testing.assert_allclose(clipped, np.clip(expected, 0, 1), atol=1e-6)
    # the formula read with the plain L2 norm would give a distortion of stddev / 28 on 28x28 images
    literal = stddev * rs[0] / np.linalg.norm(rs[0])
    assert np.sqrt((literal**2).sum() / 784) == pytest.approx(stddev / 28)


def test_sweep_own_adversarial_error_matches_an_explicit_rescaling(models, examples):
    frame = transfer.sweep(examples, models, stddevs=(0.05,), seed=0)
    assert len(frame) == 4 * len(models)
    for name, model in models.items():
        ex = examples[name]
        r = (ex["x_adv"] - ex["x"]).double()
        rms = r.flatten(1).pow(2).mean(1).sqrt()
        rms = rms[:, None, None, None]
        scaled = (ex["x"] + torch.where(rms > 0, 0.05 * r / rms, r)).clamp(0, 1)
        own = frame[(frame["model"] == name) & (frame["perturbation"] == "own adversarial, rescaled")]["error %"]
        assert own.item() == pytest.approx(explicit_error(model, scaled.float(), ex["y"]))


def paper_tables() -> tuple[transfer.TransferTable, transfer.TransferTable]:
    """The paper's Tables 2 and 4 as TransferTables (ours = the paper's), with our row labels."""
    rows2 = {(f"noise stddev {k[6:]}" if k.startswith("noise-") else k): [*v[0], v[1]] for k, v in paper.TABLE2.items()}
    t2 = pd.DataFrame.from_dict(rows2, orient="index", columns=[*paper.TABLE2_COLUMNS, "distortion"])
    labels = [f"adversarial {m}" for m in paper.TABLE3_MODELS] + ["noise at the adversarial stddev"] + \
             [f"magnified {m}" for m in paper.TABLE3_MODELS] + ["noise stddev 0.1"]
    t4 = pd.DataFrame([[*v, 0.0] for v in paper.TABLE4.values()], index=labels,
                      columns=[*paper.TABLE4_COLUMNS, "distortion"])
    empty = pd.DataFrame()
    return transfer.TransferTable(t2, t2, empty), transfer.TransferTable(t4, t4, empty)


def test_claims_hold_in_the_papers_own_numbers():
    t2, t4 = paper_tables()
    table = transfer.claims(t2, t4)
    assert table["holds (paper's numbers)"].all()
    errors = np.array([v[0] for k, v in paper.TABLE2.items() if not k.startswith("noise")])
    off_diagonal = errors[~np.eye(6, dtype=bool)].mean()
    assert f"mean transferred error {off_diagonal:.1f}%" in table["paper's numbers"].iloc[0]
    t4_errors = np.array(list(paper.TABLE4.values())[:3])
    assert f"Table 4 mean {t4_errors[~np.eye(3, dtype=bool)].mean():.1f}%" in table["paper's numbers"].iloc[2]


def test_bad_input_raises_value_error(models, examples):
    x = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="stddev"):
        transfer.magnify(x, x, 0.0)
    with pytest.raises(ValueError, match="stddev"):
        transfer.magnify(x, x, float("nan"))
    with pytest.raises(ValueError, match="one shape"):
        transfer.magnify(x, x[:1], 0.1)
    with pytest.raises(ValueError, match="stddev"):
        transfer.noise_error(x, torch.zeros(2, dtype=torch.long), models, -0.1)
    with pytest.raises(ValueError, match="labels"):
        transfer.noise_error(x, torch.zeros(3, dtype=torch.long), models, 0.1)
    with pytest.raises(ValueError, match="non-empty"):
        transfer.cross_model_error({}, models)
    with pytest.raises(ValueError, match="non-empty"):
        transfer.cross_model_error(examples, {})
    with pytest.raises(ValueError, match="lacks"):
        transfer.cross_model_error({"a": {"x": x}}, models)
    failed = {**examples[SOURCES[0]], "success": torch.zeros(16, dtype=torch.bool)}
    with pytest.raises(ValueError, match="no successful"):
        transfer.cross_model_error({"a": failed}, models)
    other = {**examples[SOURCES[0]], "x": examples[SOURCES[0]]["x"].flip(0)}
    with pytest.raises(ValueError, match="other images"):
        transfer.sweep({"a": examples[SOURCES[0]], "b": other}, models)
    with pytest.raises(ValueError, match="n must be"):
        transfer.adversarial_sets(SOURCES, 0, train=True)
